"""The dashboard in a real browser, on a real server process under traffic.

Headless Debian Chromium (``/usr/bin/chromium``) driven by Playwright for
Python (``pip install playwright``; no ``playwright install``: the system
browser is used). The server is ``blaze serve`` (``python -m blaze_ai.cli
serve``; ``create_app`` installs the dashboard) over fake models, in its own
process group on a free loopback port. A screenshot is saved to
``artifacts/dashboard.png``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
BROWSER_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ADMIN_KEY = "admin-e2e-key"
API_KEY = "user-e2e-key"
CONFIG = f"""
server:
  host: 127.0.0.1
  api_keys: [{API_KEY}]
  admin_keys: [{ADMIN_KEY}]
  drain_grace_s: 5
models:
  - name: alpha
    kind: fake
    fake: {{delay_s: 0.02, token_delay_s: 0.01}}
  - name: beta
    kind: fake
    fake: {{delay_s: 0.01}}
"""


@pytest.fixture
def server(tmp_path: Path, gateway: Any) -> Iterator[str]:
    """``blaze serve`` on the config; stopped (its whole process group) at teardown."""
    with gateway(CONFIG, tmp_path) as process:
        yield process.base_url


@contextlib.contextmanager
def traffic(base: str, max_requests: int = 2000, max_s: float = 90.0) -> Iterator[None]:
    """Chat requests (some streamed) in a thread, bounded in count and time, loopback only."""
    stop = threading.Event()

    def run() -> None:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        deadline = time.monotonic() + max_s
        with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
            for i in range(max_requests):
                if stop.is_set() or time.monotonic() > deadline:
                    return
                messages = [{"role": "user", "content": "the quick brown fox jumps over"}]
                body = {"model": ("alpha", "beta")[i % 2], "stream": i % 3 == 0, "messages": messages}
                with contextlib.suppress(httpx.HTTPError):
                    client.post("/v1/chat/completions", json=body)
                time.sleep(0.02)

    thread = threading.Thread(target=run, name="dashboard-traffic", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=15)


def test_dashboard_shows_engines_charts_and_restarts_an_engine(server: str) -> None:
    # No skip: `make test` installs Debian chromium and playwright; a missing one must fail here.
    assert CHROMIUM.exists(), "needs Debian chromium at /usr/bin/chromium (scripts/system-deps.sh)"
    from playwright import sync_api

    ARTIFACTS.mkdir(exist_ok=True)
    with traffic(server), sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.on("dialog", lambda dialog: dialog.accept())
            page.goto(f"{server}/dashboard?refresh_ms=1000")
            # keys are set: the page asks for the admin key before it shows anything
            page.locator("#key").wait_for(state="visible", timeout=10_000)
            page.fill("#key", ADMIN_KEY)
            page.click("#save-key")

            status = page.locator('tr[data-engine="alpha"] td[data-field="status"]')
            sync_api.expect(status).to_have_text("ready", timeout=15_000)
            sync_api.expect(page.locator('tr[data-engine="beta"]')).to_be_visible()
            page.wait_for_function(
                "Number(document.getElementById('chart-rps').dataset.points) > 0"
                " && Number(document.getElementById('chart-latency').dataset.points) > 0",
                timeout=20_000,
            )
            assert page.locator("#chart-rps polyline").count() >= 1

            page.click('button[data-action="drain"][data-engine="alpha"]')
            sync_api.expect(status).to_have_text("stopped", timeout=15_000)
            page.click('button[data-action="restart"][data-engine="alpha"]')
            sync_api.expect(status).to_have_text("ready", timeout=15_000)
            sync_api.expect(page.locator("#events")).to_contain_text("restarted", timeout=10_000)
            page.wait_for_timeout(1500)  # one more refresh so the charts show the latest points
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        finally:
            browser.close()
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000

"""schemathesis against the gateway's own /openapi.json (FakeEngine behind it): no 5xx, ever."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from blaze_ai.config import ServerConfig
from blaze_ai.engines import EngineManager, FakeEngine
from blaze_ai.server import create_app

pytestmark = pytest.mark.slow

EXAMPLES_PER_OPERATION = 30
# Run last: they stop or remove the model the other operations use.
DISRUPTIVE = ("/drain", "/restart", "DELETE")


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    manager = EngineManager()
    manager.register("fake", FakeEngine())
    app = create_app(ServerConfig(), manager)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):  # bounded wait for readiness
        try:
            if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    yield url
    server.should_exit = True
    thread.join(timeout=30)


def test_no_5xx_for_any_generated_request(base_url: str) -> None:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    operations.sort(key=lambda op: any(d in op.label for d in DISRUPTIVE))
    calls = 0
    for operation in operations:
        strategy = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)
        )

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def check(case: schemathesis.Case) -> None:
            nonlocal calls
            response = case.call(base_url=base_url, timeout=30)
            calls += 1
            assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text[:300]}"

        check()
    assert calls >= len(operations) * 5
    assert httpx.get(f"{base_url}/health/live", timeout=5).status_code == 200

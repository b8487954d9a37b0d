"""Real process: a disconnected stream stops generating; SIGTERM drains in-flight work and exits 0."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ADMIN = "sk-life-admin"
HEADERS = {"Authorization": f"Bearer {ADMIN}"}


def tiny_stats(base_url: str) -> dict[str, Any]:
    engines = httpx.get(f"{base_url}/admin/engines", headers=HEADERS, timeout=10).json()["engines"]
    return engines["tiny"]  # type: ignore[no-any-return]


def wait_for(predicate: Any, limit_s: float = 60.0) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError("condition not reached in time")


def test_disconnected_stream_stops_generation(tmp_path: Path, gateway: Any, tiny_llm_yaml: Any) -> None:
    with gateway(tiny_llm_yaml(ADMIN, ADMIN), tmp_path) as server:
        body = {
            "model": "tiny",
            "messages": [{"role": "user", "content": "Tell a long story."}],
            "max_tokens": 1000,
            "stream": True,
            "temperature": 1.0,
            "seed": 1,
        }
        url = f"{server.base_url}/v1/chat/completions"
        with (
            httpx.Client(timeout=60) as client,
            client.stream("POST", url, json=body, headers=HEADERS) as stream,
        ):
            assert stream.status_code == 200
            for i, _ in enumerate(stream.iter_lines()):
                if i >= 6:
                    break  # leaving the block closes the connection
        wait_for(lambda: tiny_stats(server.base_url)["in_flight"] == 0)
        time.sleep(0.5)  # a decode step already running when the abort came may finish
        steps = tiny_stats(server.base_url)["stats"]["steps"]
        time.sleep(1.5)  # many decode steps' worth: a still-running generation would add steps
        after = tiny_stats(server.base_url)["stats"]
        assert after["steps"] == steps
        assert after["generated_tokens"] < 100  # of the 1000 asked for


def test_sigterm_drains_in_flight_requests_and_exits_zero(
    tmp_path: Path, gateway: Any, tiny_llm_yaml: Any
) -> None:
    with gateway(tiny_llm_yaml(ADMIN, ADMIN), tmp_path) as server:
        results: list[httpx.Response] = []
        # Greedy from "Once" runs 480 tokens without EOS: long enough to be seen in flight.
        body = {"model": "tiny", "prompt": "Once", "max_tokens": 480, "temperature": 0}

        def call() -> None:
            url = f"{server.base_url}/v1/completions"
            results.append(httpx.post(url, json=body, headers=HEADERS, timeout=120))

        worker = threading.Thread(target=call)
        worker.start()
        wait_for(lambda: tiny_stats(server.base_url)["in_flight"] == 1)
        server.terminate()
        worker.join(timeout=120)
        assert server.wait(timeout_s=60) == 0
        assert len(results) == 1 and results[0].status_code == 200
        assert results[0].json()["usage"]["completion_tokens"] == 480
        assert "draining -> stopped" in server.log()

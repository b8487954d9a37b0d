"""Malformed bodies to every /v1 route: never a 5xx, never a crash, and the server answers afterwards.

In process (ASGITransport, FakeEngine) for the 1,000+ examples; a shorter run hits the real process.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blaze_ai.config import ServerConfig
from blaze_ai.engines import EngineManager, FakeEngine
from blaze_ai.server import create_app

ROUTES = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/images/generations")
VALID: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {"model": "fake", "messages": [{"role": "user", "content": "hi"}]},
    "/v1/completions": {"model": "fake", "prompt": "hi"},
    "/v1/embeddings": {"model": "fake", "input": "hi"},
    "/v1/images/generations": {"model": "fake", "prompt": "hi", "size": "8x8"},
}
HUGE = st.one_of(
    st.integers(min_value=2**31, max_value=10**40),
    st.integers(max_value=-1, min_value=-(10**40)),
    st.sampled_from([1e308, -1e308, 1e-320, 0.0]),
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | HUGE | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def _deep(depth: int, opener: str) -> bytes:
    closer = {"[": "]", "{": "}"}[opener]
    inner = '{"a":' * depth + "1" + "}" * depth if opener == "{" else opener * depth + closer * depth
    return inner.encode()


@st.composite
def bodies(draw: st.DrawFn, route: str) -> bytes:
    kind = draw(st.sampled_from(["json", "mutated", "deep", "bytes", "numbers"]))
    if kind == "json":
        return json.dumps(draw(JSON)).encode()
    if kind == "deep":
        return _deep(draw(st.integers(10, 20_000)), draw(st.sampled_from("[{")))
    if kind == "bytes":  # invalid UTF-8 and random binary
        return draw(st.binary(max_size=64)) + b"\xff\xfe\xc3\x28"
    body = dict(VALID[route])
    key = draw(
        st.sampled_from([*body, "n", "max_tokens", "seed", "stop", "temperature", "dimensions", "stream"])
    )
    body[key] = draw(HUGE if kind == "numbers" else JSON)
    return json.dumps(body).encode()


def fake_app() -> Any:
    manager = EngineManager()
    manager.register("fake", FakeEngine())
    return create_app(ServerConfig(max_body_bytes=256 * 1024), manager)


def test_fuzz_in_process_no_5xx() -> None:
    loop = asyncio.new_event_loop()
    app = fake_app()
    lifespan = app.router.lifespan_context(app)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
    sent = 0
    try:
        loop.run_until_complete(lifespan.__aenter__())
        loop.run_until_complete(app.state.start_task)

        @settings(max_examples=1100, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(data=st.data(), route=st.sampled_from(ROUTES))
        def post(data: st.DataObject, route: str) -> None:
            nonlocal sent
            body = data.draw(bodies(route))
            headers = {"content-type": "application/json"}
            response = loop.run_until_complete(client.post(route, content=body, headers=headers))
            sent += 1
            assert response.status_code < 500, (route, body[:200], response.text[:300])
            assert response.headers["x-request-id"]

        post()
        assert sent >= 1000
        alive = loop.run_until_complete(client.post(ROUTES[0], json=VALID[ROUTES[0]]))
        assert alive.status_code == 200
    finally:
        loop.run_until_complete(client.aclose())
        loop.run_until_complete(lifespan.__aexit__(None, None, None))
        loop.close()


FAKE_CONFIG = """
server: {host: 127.0.0.1}
models:
  - {name: fake, kind: fake}
"""


@pytest.mark.e2e
def test_fuzz_real_process_no_5xx(tmp_path: Path, gateway: Any) -> None:
    with (
        gateway(FAKE_CONFIG, tmp_path) as server,
        httpx.Client(base_url=server.base_url, timeout=30) as client,
    ):
        sent = 0

        @settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(data=st.data(), route=st.sampled_from(ROUTES))
        def post(data: st.DataObject, route: str) -> None:
            nonlocal sent
            body = data.draw(bodies(route))
            response = client.post(route, content=body, headers={"content-type": "application/json"})
            sent += 1
            assert response.status_code < 500, (route, body[:200], response.text[:300])

        post()
        assert sent >= 150
        assert client.get("/health/live").status_code == 200
        assert client.post(ROUTES[0], json=VALID[ROUTES[0]]).status_code == 200
        assert server.process is not None and server.process.poll() is None

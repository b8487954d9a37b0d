"""In-process gateway fixtures: the real app over FakeEngines, driven through ASGITransport."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from blaze_ai.config import ServerConfig
from blaze_ai.engines import EngineManager, FakeConfig, FakeEngine
from blaze_ai.server import create_app

MakeClient = Callable[..., Any]


def fake_manager(**engines: FakeEngine) -> EngineManager:
    manager = EngineManager()
    for name, engine in engines.items():
        manager.register(name, engine)
    return manager


@pytest.fixture
def fake() -> FakeEngine:
    return FakeEngine(FakeConfig())


@pytest.fixture
async def make_client(fake: FakeEngine) -> AsyncIterator[MakeClient]:
    """``await make_client(engines, **server_settings)`` -> a client on a started app; closed at teardown."""
    stack: list[tuple[FastAPI, Any, httpx.AsyncClient]] = []

    async def make(
        engines: dict[str, FakeEngine] | None = None, *, wait_ready: bool = True, **settings: Any
    ) -> httpx.AsyncClient:
        manager = fake_manager(**(engines if engines is not None else {"fake": fake}))
        app = create_app(dataclasses.replace(ServerConfig(), **settings), manager)
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        if wait_ready:
            await app.state.start_task
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
        stack.append((app, lifespan, client))
        return client

    yield make
    for _, lifespan, client in reversed(stack):
        await client.aclose()
        await lifespan.__aexit__(None, None, None)


@pytest.fixture
async def client(make_client: MakeClient) -> httpx.AsyncClient:
    c: httpx.AsyncClient = await make_client()
    return c


def chat_body(content: str = "hello there world", **extra: Any) -> dict[str, Any]:
    """A valid chat request body for the fake model, with ``extra`` fields."""
    return {"model": "fake", "messages": [{"role": "user", "content": content}], **extra}


class ScriptedEngine(FakeEngine):
    """A FakeEngine whose next call raises ``error`` (execute) or fails after one piece (stream)."""

    def __init__(self, error: BaseException | None = None, stream_error: BaseException | None = None) -> None:
        super().__init__(FakeConfig())
        self.error = error
        self.stream_error = stream_error
        self.cancelled = 0

    async def execute(self, request: Any) -> Any:
        if self.error is not None:
            raise self.error
        try:
            return await super().execute(request)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    async def stream(self, request: Any) -> AsyncIterator[Any]:
        async for piece in super().stream(request):
            yield piece
            if self.stream_error is not None:
                raise self.stream_error


def asgi_scope(path: str, body: bytes) -> dict[str, Any]:
    """A raw HTTP scope, for driving the app without a client (to disconnect at will)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }


class DisconnectingClient:
    """Send one request straight to the ASGI app; ``disconnect()`` makes the client go away."""

    def __init__(self, app: FastAPI, path: str, body: dict[str, Any]) -> None:
        self.app = app
        self.raw = json.dumps(body).encode()
        self.scope = asgi_scope(path, self.raw)
        self.gone = asyncio.Event()
        self.sent: list[dict[str, Any]] = []
        self._body_sent = False

    async def receive(self) -> dict[str, Any]:
        if not self._body_sent:
            self._body_sent = True
            return {"type": "http.request", "body": self.raw, "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def start(self) -> asyncio.Task[None]:
        return asyncio.create_task(self.app(self.scope, self.receive, self.send))

    def disconnect(self) -> None:
        self.gone.set()


async def wait_until(predicate: Callable[[], bool], limit_s: float = 10.0) -> None:
    """Poll ``predicate`` (bounded); fail the test when it never holds."""
    for _ in range(int(limit_s / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in time")

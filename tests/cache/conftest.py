"""Cache fixtures: a real ``redis-server`` on a free loopback port, and a dispatch that counts calls."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from blaze_ai.engines import EngineManager, FakeConfig, FakeEngine
from blaze_ai.server.dispatch import ManagerDispatch, RequestContext

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
CTX = RequestContext(request_id="test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisServer:
    """One redis-server process in ``folder``; ``start()`` again on the same port after ``kill()``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--dir", str(self.folder)]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not answer PING within 10 s")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


class CountingDispatch:
    """A dispatch over one started FakeEngine that counts calls that reach it."""

    def __init__(self, engine: FakeEngine, manager: EngineManager) -> None:
        self.engine = engine
        self.inner = ManagerDispatch(manager)
        self.executes = 0
        self.streams = 0

    async def execute(self, model: str, request: Any, ctx: RequestContext) -> Any:
        self.executes += 1
        return await self.inner.execute(model, request, ctx)

    def stream(self, model: str, request: Any, ctx: RequestContext) -> AsyncIterator[Any]:
        self.streams += 1
        return self.inner.stream(model, request, ctx)

    def models(self) -> dict[str, str]:
        return self.inner.models()


@pytest.fixture
async def counting() -> AsyncIterator[CountingDispatch]:
    engine = FakeEngine(FakeConfig())
    manager = EngineManager()
    manager.register("fake", engine)
    await manager.start()
    try:
        yield CountingDispatch(engine, manager)
    finally:
        await manager.shutdown(grace_s=0)


async def wait_for(predicate: Any, attempts: int = 500) -> None:
    """Yield to the loop until ``predicate()`` holds (bounded)."""
    for _ in range(attempts):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")

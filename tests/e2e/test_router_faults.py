"""Router fault tests with real replica processes on loopback (every loop bounded).

Three replica servers (``replica_server.py``; later ``blaze serve``) behind an in-process
``Router`` of ``RemoteReplica``s: kill one under load, hang one (SIGSTOP), make one fail half
its requests, kill them all, bring one back.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from blaze_ai.engines.breaker import BreakerConfig
from blaze_ai.engines.requests import GenerationRequest, SamplingParams, StreamDelta
from blaze_ai.engines.router import BLAZE_HEALTH_PATH, RemoteReplica, Router, RouterConfig
from blaze_ai.errors import UnavailableError

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
SERVER = Path(__file__).with_name("replica_server.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ReplicaProcess:
    """One replica server in its own process group."""

    def __init__(self, name: str, log_dir: Path) -> None:
        self.name, self.port, self.log_path = name, free_port(), log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            cmd = [sys.executable, str(SERVER), "--port", str(self.port), "--name", self.name]
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/health/ready", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not become ready within 30 s")

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # works on stopped processes too
        if self.proc is not None:
            self.proc.wait(timeout=10)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[ReplicaProcess]]:
    procs = [ReplicaProcess(f"r{i}", tmp_path) for i in range(3)]
    try:
        for proc in procs:
            proc.start()
        yield procs
    finally:
        for proc in procs:
            proc.kill()


def make_router(servers: list[ReplicaProcess], **options: Any) -> Router:
    config: dict[str, Any] = {
        "strategy": "power_of_two",
        "health_interval_s": 0.2,
        "health_timeout_s": 0.5,
        "try_timeout_s": 2.0,
        "breaker": BreakerConfig(open_base_s=30.0, open_max_s=60.0),
    }
    config.update(options)
    replicas = [
        RemoteReplica(s.url, model="echo", name=s.name, health_path=BLAZE_HEALTH_PATH, timeout=10.0)
        for s in servers
    ]
    return Router(replicas, RouterConfig(**config))


def ask(i: int = 0) -> GenerationRequest:
    return GenerationRequest(messages=[{"role": "user", "content": f"hello number {i}"}])


async def load(router: Router, total: int, workers: int, *, on_done: Any = None) -> list[str]:
    """Send ``total`` requests from ``workers`` tasks; return "ok" or the error name for each."""
    results: list[str] = []
    counter = iter(range(total))

    async def worker() -> None:
        for i in counter:
            try:
                result = await router.execute(ask(i))
                results.append("ok" if result.choices[0].text else "empty")
            except Exception as exc:
                results.append(type(exc).__name__)
            if on_done is not None:
                await on_done(len(results))

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(workers))), timeout=60)
    return results


async def test_streams_and_completions_through_remote_replicas(servers: list[ReplicaProcess]) -> None:
    router = make_router(servers)
    try:
        chat = await router.execute(ask())
        assert chat.choices[0].text.endswith("hello number 0") and chat.prompt_tokens == 3
        plain = await router.execute(GenerationRequest(prompt="a b c", params=SamplingParams(max_tokens=2)))
        assert plain.choices[0].text.split()[1:] == ["a", "b"]
        deltas = [d async for d in router.stream(GenerationRequest(prompt="one two three"))]
        assert all(isinstance(d, StreamDelta) for d in deltas)
        assert "".join(d.text for d in deltas).split()[1:] == ["one", "two", "three"]
        assert deltas[-1].finish_reason == "stop" and deltas[-1].completion_tokens == 4
    finally:
        await router.stop()


async def test_killing_one_replica_under_load_fails_no_request(servers: list[ReplicaProcess]) -> None:
    router = make_router(servers)
    await router.start()
    killed = False

    async def kill_after_some(done: int) -> None:
        nonlocal killed
        if done >= 60 and not killed:
            killed = True
            servers[1].kill()

    try:
        results = await load(router, total=400, workers=8, on_done=kill_after_some)
        stats = router.stats()["replicas"]["r1"]
    finally:
        await router.stop()
    assert killed and results.count("ok") == 400, [r for r in results if r != "ok"][:5]
    assert stats["breaker_state"] == "open" or not stats["healthy"]
    assert stats["errors"] <= 5 + 8  # five to trip, plus at most the requests in flight at the kill


async def test_a_hung_replica_costs_at_most_one_try_timeout(servers: list[ReplicaProcess]) -> None:
    router = make_router(servers, try_timeout_s=0.5)
    servers[2].signal(signal.SIGSTOP)
    try:
        slowest = 0.0
        for i in range(12):
            start = time.monotonic()
            result = await router.execute(ask(i))
            slowest = max(slowest, time.monotonic() - start)
            assert result.choices[0].text
    finally:
        servers[2].signal(signal.SIGCONT)
        await router.stop()
    assert slowest < 0.5 + 1.0  # one timed-out try plus one quick retry, with slack for a busy machine
    assert router.stats()["replicas"]["r2"]["errors"] >= 1


async def test_a_replica_failing_half_its_requests_trips_its_breaker(servers: list[ReplicaProcess]) -> None:
    async with httpx.AsyncClient() as client:
        await client.post(servers[0].url + "/admin/fail", json={"mode": "half"}, timeout=5)
    router = make_router(servers)
    try:
        results = await load(router, total=120, workers=4)
        stats = router.stats()["replicas"]["r0"]
    finally:
        await router.stop()
    assert results.count("ok") == 120
    assert stats["breaker"]["trips"] >= 1


async def test_all_dead_fails_with_unavailable_within_100_ms(servers: list[ReplicaProcess]) -> None:
    router = make_router(servers)
    await router.execute(ask())
    for server in servers:
        server.kill()
    try:
        for _ in range(50):  # connection refused trips the breakers quickly
            with pytest.raises(UnavailableError):
                await router.execute(ask())
            if not router.eligible():
                break
        assert not router.eligible()
        for _ in range(20):
            start = time.monotonic()
            with pytest.raises(UnavailableError):
                await router.execute(ask())
            assert time.monotonic() - start < 0.1
    finally:
        await router.stop()


async def test_a_killed_replica_rejoins_after_its_health_checks_pass(servers: list[ReplicaProcess]) -> None:
    router = make_router(servers)
    await router.start()
    try:
        servers[0].kill()
        for _ in range(200):  # up to 10 s for three failed probes
            if not router.health.is_healthy("r0"):
                break
            await asyncio.sleep(0.05)
        assert not router.health.is_healthy("r0")
        await asyncio.to_thread(servers[0].start)  # same port
        served_by: set[str] = set()
        for i in range(300):  # up to ~15 s for two passing probes
            served_by.add((await router.execute(ask(i))).choices[0].text.split(":")[0])
            if "r0" in served_by:
                break
            await asyncio.sleep(0.05)
        assert "r0" in served_by and router.health.is_healthy("r0")
    finally:
        await router.stop()

"""Router fault tests: three ``blaze serve`` replicas behind a ``blaze serve`` router, on loopback.

Each replica serves one ``kind: fake`` model. The router is a fourth ``blaze serve`` whose config
has the same model with ``replicas: 0`` and the three replicas as ``remotes``; the client talks
HTTP to it and reads the router's per-replica numbers from ``GET /admin/routers``. Kill one
replica under load, hang one (SIGSTOP), make one fail half its requests, kill them all, bring
one back. Every loop is bounded in count and time; every server runs in its own process group,
SIGKILLed as a whole at teardown (``blaze_servers`` in conftest.py).
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

MODEL = "echo"
WORKERS = 8
FAILURE_THRESHOLD = 5  # the router breaker's consecutive failures (the default)
SERVER = {"host": "127.0.0.1", "drain_grace_s": 2}
# A replica's own engine breaker never trips here, so a failing fake engine keeps answering 500.
REPLICA_BREAKER = {"failure_threshold": 1000, "window_size": 100, "min_calls": 100, "failure_rate": 1.0}
ROUTER = {
    "strategy": "power_of_two",
    "health_interval_s": 0.2,
    "health_timeout_s": 0.5,
    "try_timeout_s": 2.0,
    "breaker": {"open_base_s": 30.0, "open_max_s": 60.0},  # an ejection outlasts each test
}

Server = Any  # conftest.ServerProcess (test modules cannot import conftest)


def replica_yaml(fake: dict[str, Any]) -> str:
    model = {"name": MODEL, "kind": "fake", "fake": fake, "breaker": REPLICA_BREAKER}
    return json.dumps({"server": SERVER, "models": [model]})  # JSON is YAML


def router_yaml(replicas: list[Server], options: dict[str, Any]) -> str:
    remotes = [
        {"url": r.base_url, "name": f"r{i}", "health_path": "/health/ready", "timeout": 10.0}
        for i, r in enumerate(replicas)
    ]
    model = {"name": MODEL, "kind": "fake", "replicas": 0, "remotes": remotes, "router": options}
    return json.dumps({"server": SERVER, "models": [model]})


@dataclass
class Cluster:
    replicas: list[Server]
    router: Server


@pytest.fixture
def cluster(blaze_servers: Callable[..., Server]) -> Callable[..., Cluster]:
    """``cluster(fakes={i: FakeConfig fields}, **router_options)``: three replicas and a router."""

    def start(fakes: dict[int, dict[str, Any]] | None = None, **router_options: Any) -> Cluster:
        fakes = fakes or {}
        replicas = [blaze_servers(replica_yaml(fakes.get(i, {})), f"r{i}") for i in range(3)]
        for replica in replicas:
            replica.wait_ready(60)
        # A server of remotes only is ready once one of its replicas is eligible.
        config = router_yaml(replicas, {**ROUTER, **router_options})
        router = blaze_servers(config, "router")
        router.wait_ready(60)
        return Cluster(replicas, router)

    return start


def body(i: int = 0) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": f"hello number {i}"}]}


async def replica_stats(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    """The router server's per-replica numbers (healthy, breaker, errors, picks, ...)."""
    response = await client.get("/admin/routers")
    assert response.status_code == 200, response.text
    stats: dict[str, dict[str, Any]] = response.json()[MODEL]["replicas"]
    return stats


def ejected(stats: dict[str, Any]) -> bool:
    return stats["breaker_state"] == "open" or not stats["healthy"]


async def load(
    client: httpx.AsyncClient,
    total: int,
    workers: int,
    on_done: Callable[[int], Awaitable[None]] | None = None,
) -> list[int]:
    """Send ``total`` chat requests from ``workers`` tasks; the HTTP status of each (0: no answer)."""
    statuses: list[int] = []
    counter = iter(range(total))

    async def worker() -> None:
        for i in counter:
            try:
                response = await client.post("/v1/chat/completions", json=body(i))
                text = response.json()["choices"][0]["message"]["content"] if response.is_success else ""
                statuses.append(response.status_code if text == f"hello number {i}" else -1)
            except httpx.HTTPError:
                statuses.append(0)
            if on_done is not None:
                await on_done(len(statuses))

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(workers))), timeout=90)
    return statuses


def client_for(server: Server, timeout: float = 30.0) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=2 * WORKERS)
    return httpx.AsyncClient(base_url=server.base_url, timeout=timeout, limits=limits)


async def test_completions_and_streams_through_the_router_server(cluster: Callable[..., Cluster]) -> None:
    c = cluster()
    async with client_for(c.router) as client:
        chat = (await client.post("/v1/chat/completions", json=body())).json()
        assert chat["choices"][0]["message"]["content"] == "hello number 0"
        assert chat["usage"]["prompt_tokens"] == 3
        plain = await client.post(
            "/v1/completions", json={"model": MODEL, "prompt": "a b c", "max_tokens": 2}
        )
        assert plain.json()["choices"][0]["text"] == "a b"
        assert plain.json()["choices"][0]["finish_reason"] == "length"
        stream_body = {**body(), "stream": True, "messages": [{"role": "user", "content": "one two three"}]}
        async with client.stream("POST", "/v1/chat/completions", json=stream_body) as response:
            assert response.status_code == 200
            lines = [line async for line in response.aiter_lines() if line.startswith("data: ")]
        assert lines[-1] == "data: [DONE]"
        chunks = [json.loads(line[6:]) for line in lines[:-1]]
        text = "".join(ch["choices"][0]["delta"].get("content") or "" for ch in chunks if ch["choices"])
        assert text == "one two three"
        assert [ch["choices"][0]["finish_reason"] for ch in chunks if ch["choices"]][-1] == "stop"
        stats = await replica_stats(client)
    assert sorted(stats) == ["r0", "r1", "r2"] and sum(s["picks"] for s in stats.values()) == 3


async def test_killing_one_replica_under_load_fails_no_request(cluster: Callable[..., Cluster]) -> None:
    c = cluster()
    killed = False

    async def kill_after_some(done: int) -> None:
        nonlocal killed
        if done >= 60 and not killed:
            killed = True
            c.replicas[1].kill()  # SIGKILL

    async with client_for(c.router) as client:
        statuses = await load(client, total=400, workers=WORKERS, on_done=kill_after_some)
        stats = (await replica_stats(client))["r1"]
        picks_after = stats["picks"]
        assert await load(client, total=30, workers=1) == [200] * 30
        picks_later = (await replica_stats(client))["r1"]["picks"]
    assert killed and statuses == [200] * 400, sorted(set(statuses))
    assert ejected(stats), stats
    # Ejected within 5 failures: the breaker's threshold, plus the requests in flight at the kill.
    assert 1 <= stats["errors"] <= FAILURE_THRESHOLD + WORKERS, stats
    assert picks_later == picks_after  # an ejected replica gets no traffic


async def test_a_hung_replica_costs_at_most_one_try_timeout(cluster: Callable[..., Cluster]) -> None:
    try_timeout_s = 0.5
    c = cluster(strategy="round_robin", try_timeout_s=try_timeout_s)  # r2 is tried within 3 requests
    c.replicas[2].signal(signal.SIGSTOP)
    durations: list[float] = []
    try:
        async with client_for(c.router) as client:
            for i in range(12):
                start = time.monotonic()
                response = await client.post("/v1/chat/completions", json=body(i))
                durations.append(time.monotonic() - start)
                assert response.status_code == 200, response.text
            stats = (await replica_stats(client))["r2"]
    finally:
        c.replicas[2].signal(signal.SIGCONT)
    assert stats["errors"] >= 1, stats
    assert max(durations) >= try_timeout_s * 0.9  # a try did wait on the hung replica...
    assert max(durations) < try_timeout_s + 1.0, durations  # ...then one quick retry (busy-box slack)


async def test_a_replica_failing_half_its_requests_trips_its_breaker(cluster: Callable[..., Cluster]) -> None:
    # seed 1: 6 of the replica's first 10 requests fail, 11 of its first 20 (deterministic)
    c = cluster(fakes={0: {"fail_rate": 0.5, "seed": 1}})
    async with client_for(c.router) as client:
        statuses = await load(client, total=120, workers=4)
        stats = (await replica_stats(client))["r0"]
    assert statuses == [200] * 120, sorted(set(statuses))
    assert stats["breaker"]["trips"] >= 1 and stats["breaker_state"] == "open", stats
    assert stats["errors"] >= FAILURE_THRESHOLD, stats


async def test_all_dead_fails_with_503_within_100_ms(cluster: Callable[..., Cluster]) -> None:
    c = cluster()
    async with client_for(c.router) as client:
        assert (await client.post("/v1/chat/completions", json=body())).status_code == 200
        for replica in c.replicas:
            replica.kill()
        for _ in range(50):  # refused connections trip the breakers within a few requests
            assert (await client.post("/v1/chat/completions", json=body())).status_code == 503
            if all(ejected(s) for s in (await replica_stats(client)).values()):
                break
        assert all(ejected(s) for s in (await replica_stats(client)).values())
        durations = []
        for _ in range(20):  # measured at the client, over HTTP to the router server
            start = time.monotonic()
            response = await client.post("/v1/chat/completions", json=body())
            durations.append(time.monotonic() - start)
            assert response.status_code == 503 and "retry-after" in response.headers
            assert response.json()["error"]["message"]
    assert max(durations) < 0.1, durations


async def test_a_killed_replica_rejoins_after_its_health_checks_pass(cluster: Callable[..., Cluster]) -> None:
    c = cluster()
    async with client_for(c.router) as client:
        c.replicas[0].kill()
        for _ in range(200):  # up to ~10 s for three failed probes
            if not (await replica_stats(client))["r0"]["healthy"]:
                break
            await asyncio.sleep(0.05)
        assert not (await replica_stats(client))["r0"]["healthy"]
        before = (await replica_stats(client))["r0"]["successes"]
        await asyncio.to_thread(c.replicas[0].start, 60)  # the same port
        for i in range(300):  # up to ~15 s for two passing probes and a pick
            assert (await client.post("/v1/chat/completions", json=body(i))).status_code == 200
            if (await replica_stats(client))["r0"]["successes"] > before:
                break
            await asyncio.sleep(0.05)
        stats = (await replica_stats(client))["r0"]
        async with client_for(c.replicas[0]) as direct:
            served = (await direct.get("/admin/engines")).json()["engines"][MODEL]["stats"]["requests"]
    assert stats["healthy"] and stats["successes"] > before, stats
    assert served >= 1  # the restarted process itself answered

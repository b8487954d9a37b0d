"""The router with in-process fake replicas: retries, breakers, ejection, sessions, streams."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from blaze_ai.engines.breaker import BreakerState
from blaze_ai.engines.fake import FakeConfig, FakeEngine
from blaze_ai.engines.manager import EngineManager
from blaze_ai.engines.requests import GenerationRequest, GenerationResult, StreamDelta
from blaze_ai.engines.router import STRATEGIES, LocalReplica, Router, RouterConfig, RoutingContext
from blaze_ai.errors import (
    BadRequestError,
    ContextLengthError,
    EngineFailureError,
    NotFoundError,
    OverloadedError,
    TimedOutError,
    UnavailableError,
)


class FakeReplica:
    """Answers with its own name; ``behaviour`` is "ok", "fail", "half", "hang", or an exception."""

    def __init__(self, name: str, behaviour: object = "ok", *, weight: float = 1.0) -> None:
        self.name, self.behaviour, self.weight = name, behaviour, weight
        self.calls = 0
        self.healthy = True
        self.closed_streams = 0

    async def _misbehave(self) -> None:
        self.calls += 1
        if self.behaviour == "fail" or (self.behaviour == "half" and self.calls % 2 == 0):
            raise EngineFailureError(f"{self.name} failed")
        if self.behaviour == "hang":
            await asyncio.Event().wait()
        if isinstance(self.behaviour, BaseException):
            raise self.behaviour

    async def execute(self, request: Any) -> str:
        await self._misbehave()
        return self.name

    async def stream(self, request: Any) -> AsyncIterator[str]:
        try:
            await self._misbehave()
            yield f"{self.name}:1"
            if self.behaviour == "die_mid_stream":
                raise EngineFailureError("died after the first delta")
            yield f"{self.name}:2"
        finally:
            self.closed_streams += 1

    async def probe(self) -> bool:
        return self.healthy


def request() -> GenerationRequest:
    return GenerationRequest(prompt="hi")


def make_router(*replicas: FakeReplica, **options: Any) -> Router:
    options.setdefault("strategy", "round_robin")
    return Router(list(replicas), RouterConfig(**options), rng=random.Random(0))


async def test_a_failed_try_is_retried_on_another_replica() -> None:
    bad, good = FakeReplica("bad", "fail"), FakeReplica("good")
    router = make_router(bad, good)
    assert await router.execute(request()) == "good"
    stats = router.stats()
    assert stats["retries"] == 1
    assert stats["replicas"]["bad"]["errors"] == 1 and stats["replicas"]["good"]["successes"] == 1


@pytest.mark.parametrize("error", [BadRequestError("no"), ContextLengthError("long"), NotFoundError("gone")])
async def test_client_errors_are_not_retried_nor_counted(error: Exception) -> None:
    bad, good = FakeReplica("bad", error), FakeReplica("good")
    router = make_router(bad, good)
    with pytest.raises(type(error)):
        await router.execute(request())
    assert good.calls == 0
    assert router.stats()["replicas"]["bad"]["errors"] == 0


async def test_overloaded_replica_is_retried_but_not_counted_as_failure() -> None:
    busy, good = FakeReplica("busy", OverloadedError("full")), FakeReplica("good")
    router = make_router(busy, good)
    assert await router.execute(request()) == "good"
    assert router.stats()["replicas"]["busy"]["errors"] == 0


async def test_retries_stop_at_max_retries() -> None:
    replicas = [FakeReplica(f"r{i}", "fail") for i in range(5)]
    router = make_router(*replicas, max_retries=2)
    with pytest.raises(EngineFailureError):
        await router.execute(request())
    assert sum(r.calls for r in replicas) == 3


async def test_retry_budget_limits_retries() -> None:
    replicas = [FakeReplica("a", "fail"), FakeReplica("b", "fail"), FakeReplica("c")]
    router = make_router(*replicas, retry_budget=0.0, retry_burst=1, breaker={"failure_threshold": 100})
    results = []
    for _ in range(6):
        try:
            results.append(await router.execute(request()))
        except EngineFailureError:
            results.append("error")
    assert router.retries == 1  # one token in the bucket, none added
    assert results.count("error") >= 3


async def test_a_hung_replica_is_cut_at_the_per_try_timeout_and_retried() -> None:
    hung, good = FakeReplica("hung", "hang"), FakeReplica("good")
    router = make_router(hung, good, try_timeout_s=0.05)
    assert await router.execute(request()) == "good"
    assert router.stats()["replicas"]["hung"]["errors"] == 1
    assert router.stats()["replicas"]["hung"]["in_flight"] == 0


async def test_a_passed_deadline_fails_without_calling_a_replica() -> None:
    replica = FakeReplica("a")
    router = make_router(replica)
    late = GenerationRequest(prompt="hi", deadline=time.monotonic() - 1)
    with pytest.raises(TimedOutError):
        await router.execute(late)
    assert replica.calls == 0 and router.stats()["replicas"]["a"]["in_flight"] == 0


async def test_breaker_trips_on_a_replica_failing_half_the_time() -> None:
    flaky, good = FakeReplica("flaky", "half"), FakeReplica("good")
    router = make_router(flaky, good)
    answers = [await router.execute(request()) for _ in range(60)]
    assert set(answers) <= {"flaky", "good"}  # every client request succeeded
    assert router.stats()["replicas"]["flaky"]["breaker"]["trips"] >= 1


async def test_all_dead_fails_at_once_with_unavailable() -> None:
    replicas = [FakeReplica(f"r{i}", "fail") for i in range(3)]
    router = make_router(*replicas)
    for _ in range(10):
        with pytest.raises((EngineFailureError, UnavailableError)):
            await router.execute(request())
    assert {r["breaker_state"] for r in router.stats()["replicas"].values()} == {"open"}
    calls = sum(r.calls for r in replicas)
    with pytest.raises(UnavailableError) as info:
        await router.execute(request())
    assert sum(r.calls for r in replicas) == calls  # nobody was called
    assert info.value.retry_after > 0
    assert router.stats()["rejected"] >= 1


async def test_the_last_healthy_replica_is_never_ejected() -> None:
    replicas = [FakeReplica("a"), FakeReplica("b")]
    router = make_router(*replicas)
    for r in replicas:
        r.healthy = False
    for _ in range(5):
        await router.health.check_once()
    assert len(router.eligible()) == 1
    assert await router.execute(request()) in {"a", "b"}


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
async def test_an_ejected_replica_gets_no_picks(strategy: str) -> None:
    replicas = [FakeReplica("a"), FakeReplica("b"), FakeReplica("c")]
    router = make_router(*replicas, strategy=strategy)
    replicas[2].healthy = False
    for _ in range(3):
        await router.health.check_once()
    contexts = [
        RoutingContext(client_ip=f"10.0.0.{i}", api_key=f"k{i}", session_id=f"s{i}") for i in range(30)
    ]
    for i in range(300):
        await router.execute(request(), contexts[i % 30])
    assert replicas[2].calls == 0
    assert replicas[0].calls + replicas[1].calls == 300


async def test_a_replica_rejoins_when_its_health_checks_pass() -> None:
    a, b = FakeReplica("a", "fail"), FakeReplica("b")
    router = make_router(a, b)
    for _ in range(12):
        await router.execute(request())
    assert router.stats()["replicas"]["a"]["breaker_state"] == "open"
    a.healthy, a.behaviour = False, "ok"
    for _ in range(3):
        await router.health.check_once()
    a.healthy = True
    for _ in range(2):
        await router.health.check_once()
    assert router.stats()["replicas"]["a"]["breaker_state"] == BreakerState.CLOSED.value
    assert "a" in {await router.execute(request()) for _ in range(4)}


async def test_sessions_pin_to_a_replica_and_move_when_it_is_ejected() -> None:
    replicas = [FakeReplica(f"r{i}") for i in range(3)]
    router = make_router(*replicas, strategy="sticky", strategy_options={"fallback": "round_robin"})
    ctx = RoutingContext(session_id="conversation-1")
    first = {await router.execute(request(), ctx) for _ in range(10)}
    assert len(first) == 1
    pinned = next(r for r in replicas if r.name in first)
    pinned.healthy = False
    for _ in range(3):
        await router.health.check_once()
    moved = {await router.execute(request(), ctx) for _ in range(10)}
    assert len(moved) == 1 and moved != first


async def test_a_stream_is_retried_before_its_first_delta() -> None:
    bad, good = FakeReplica("bad", "fail"), FakeReplica("good")
    router = make_router(bad, good)
    assert [item async for item in router.stream(request())] == ["good:1", "good:2"]
    assert bad.closed_streams == 1


async def test_a_stream_is_never_retried_after_its_first_delta() -> None:
    dying, good = FakeReplica("dying", "die_mid_stream"), FakeReplica("good")
    router = make_router(dying, good)
    got = []
    with pytest.raises(EngineFailureError):
        async for item in router.stream(request()):
            got.append(item)
    assert got == ["dying:1"] and good.calls == 0
    assert router.stats()["replicas"]["dying"]["errors"] == 1


async def test_closing_a_stream_early_closes_the_replica_stream() -> None:
    replica = FakeReplica("a")
    router = make_router(replica)
    stream = router.stream(request())
    assert await anext(stream) == "a:1"
    await stream.aclose()  # type: ignore[attr-defined]
    assert replica.closed_streams == 1
    stats = router.stats()["replicas"]["a"]
    assert stats["in_flight"] == 0 and stats["errors"] == 0


async def test_cancelling_a_request_frees_the_replica_without_blame() -> None:
    replica = FakeReplica("a", "hang")
    router = make_router(replica)
    task = asyncio.create_task(router.execute(request()))
    for _ in range(100):  # let the task reach the replica
        if replica.calls:
            break
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    stats = router.stats()["replicas"]["a"]
    assert stats["in_flight"] == 0 and stats["errors"] == 0


async def test_stats_show_shares_weights_and_latency() -> None:
    router = make_router(FakeReplica("a", weight=3), FakeReplica("b"), strategy="weighted_round_robin")
    for _ in range(40):
        await router.execute(request())
    replicas = router.stats()["replicas"]
    assert replicas["a"]["share"] == pytest.approx(0.75) and replicas["b"]["weight"] == 1.0
    assert replicas["a"]["healthy"] and replicas["a"]["latency_ewma_ms"] >= 0


async def test_local_replicas_over_fake_engines() -> None:
    engines = [FakeEngine(FakeConfig()), FakeEngine(FakeConfig(fail_rate=1.0))]
    for engine in engines:
        await engine.start()
    router = Router([LocalReplica("ok", engines[0]), LocalReplica("broken", engines[1])], RouterConfig())
    await router.start()
    try:
        result = await router.execute(GenerationRequest(prompt="hello there"))
        assert isinstance(result, GenerationResult) and "hello" in result.choices[0].text
        deltas = [d async for d in router.stream(GenerationRequest(prompt="one two"))]
        assert all(isinstance(d, StreamDelta) for d in deltas) and deltas[-1].finish_reason is not None
        assert await router.health.check_once() is None
    finally:
        await router.stop()
        for engine in engines:
            await engine.stop()


def test_context_uses_the_configured_session_header_and_trusted_proxies() -> None:
    router = make_router(FakeReplica("a"), session_header="x-conversation", trusted_proxies=("127.0.0.1/32",))
    ctx = router.context({"x-conversation": "c1", "x-forwarded-for": "9.9.9.9"}, "127.0.0.1")
    assert ctx.session_id == "c1" and ctx.forwarded_for == ("9.9.9.9",)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"strategy": "fastest"}, "unknown"),
        ({"strategy": "consistent_hash", "strategy_options": {"colour": 1}}, "strategy_options"),
        ({"strategy": "consistent_hash", "strategy_options": {"key": "cookie"}}, "key must be"),
        ({"max_retries": -1}, "max_retries"),
        ({"trusted_proxies": ("not-an-ip",)}, "trusted_proxies"),
        ({"health_fall": 0}, "rise and fall"),
    ],
)
def test_config_is_validated(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RouterConfig(**options)


def test_config_accepts_a_breaker_mapping_and_unique_names() -> None:
    assert RouterConfig(breaker={"failure_threshold": 3}).breaker.failure_threshold == 3  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unique"):
        Router([FakeReplica("a"), FakeReplica("a")])


async def test_a_slow_in_process_replica_is_not_cut_at_the_per_try_timeout() -> None:
    # A long generation or a busy engine queue is not a replica failure: only the deadline bounds it.
    slow = FakeEngine(FakeConfig(delay_s=0.2))
    await slow.start()
    router = Router([LocalReplica("slow", slow)], RouterConfig(try_timeout_s=0.05))
    result = await router.execute(GenerationRequest(prompt="still here"))
    assert isinstance(result, GenerationResult) and result.choices[0].text == "still here"
    assert router.stats()["replicas"]["slow"]["errors"] == 0 and router.retries == 0
    late = GenerationRequest(prompt="too late", deadline=time.monotonic() + 0.05)
    with pytest.raises(TimedOutError):
        await router.execute(late)
    replica = router.stats()["replicas"]["slow"]
    assert replica["errors"] == 0 and replica["breaker_state"] == "closed"


async def test_an_in_process_engine_refused_by_its_manager_does_not_trip_the_router_breaker() -> None:
    # While a model loads (or drains), the manager answers 503; that is not a replica failure.
    manager = EngineManager()
    manager.register("loading", FakeEngine())  # registered, not started: the manager refuses it
    router = Router([LocalReplica.from_manager(manager, "loading")], RouterConfig())
    for _ in range(10):
        with pytest.raises(UnavailableError):
            await router.execute(GenerationRequest(prompt="early"))
    replica = router.stats()["replicas"]["loading"]
    assert replica["breaker_state"] == "closed" and replica["errors"] == 0
    await manager.start_engine("loading")
    result = await router.execute(GenerationRequest(prompt="now ready"))
    assert result.choices[0].text == "now ready"

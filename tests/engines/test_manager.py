"""EngineManager with FakeEngines: dispatch, health, recovery, quarantine and shutdown.

Most tests drive health rounds with ``check_all()`` and give the manager a fake
clock and a sleep that records its delay and returns at once, so recovery runs
without waiting. Waits in tests (``until``) are liveness guards, not timings.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from blaze_ai.engines import BreakerConfig, EngineManager, EngineStatus, FakeConfig, FakeEngine, HealthReport
from blaze_ai.engines.manager import ManagerConfig
from blaze_ai.engines.requests import GenerationRequest
from blaze_ai.errors import (
    EngineDeadError,
    EngineFailureError,
    NotFoundError,
    UnavailableError,
)

READY, UNHEALTHY, QUARANTINED = EngineStatus.READY, EngineStatus.UNHEALTHY, EngineStatus.QUARANTINED
STOPPED, INITIALIZING = EngineStatus.STOPPED, EngineStatus.INITIALIZING


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Sleeper:
    """Records each requested delay, moves the fake clock, and yields once."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        self.clock.advance(delay)
        await asyncio.sleep(0)


async def until(condition: Callable[[], bool], what: str, limit_s: float = 5.0) -> None:
    """Wait for ``condition`` (a liveness guard, not a timing assertion)."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + limit_s
    while not condition():
        if loop.time() > give_up:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.001)


def gen(prompt: str = "hello world") -> GenerationRequest:
    return GenerationRequest(prompt=prompt)


FAST = {"health_timeout_s": 0.05, "unhealthy_after": 1, "quarantine_after": 3, "drain_grace_s": 5.0}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sleeper(clock: Clock) -> Sleeper:
    return Sleeper(clock)


@pytest.fixture
async def make(clock: Clock, sleeper: Sleeper) -> AsyncIterator[Callable[..., EngineManager]]:
    made: list[EngineManager] = []

    def factory(**overrides: Any) -> EngineManager:
        config = ManagerConfig(**{**FAST, **overrides})
        manager = EngineManager(config, clock=clock, sleep=sleeper, rng=random.Random(3))
        made.append(manager)
        return manager

    yield factory
    for manager in made:
        await manager.shutdown(grace_s=1.0)


async def ready(manager: EngineManager, name: str = "a", fake: FakeEngine | None = None) -> FakeEngine:
    """Register a fake engine and start it (no monitor loop)."""
    fake = fake or FakeEngine()
    manager.register(name, fake)
    assert await manager.start_engine(name)
    assert manager.status(name) is READY
    return fake


def event_names(manager: EngineManager) -> list[str]:
    return [e["event"] for e in manager.events(limit=1000)]


def went(manager: EngineManager, change: str) -> bool:
    """Whether the event log shows the status change ``"old -> new"``."""
    return any(e["event"] == "status" and e["detail"] == change for e in manager.events(limit=1000))


# -- dispatch ----------------------------------------------------------------------------
async def test_execute_runs_through_the_breaker(make: Callable[..., EngineManager]) -> None:
    manager = make()
    fake = await ready(manager)
    result = await manager.execute("a", gen("hi there"))
    assert result.choices[0].text == "hi there"
    snap = manager.snapshot()["a"]
    assert (snap["in_flight"], snap["breaker"]["successes"], fake.requests) == (0, 1, 1)


async def test_stream_through_the_manager(make: Callable[..., EngineManager]) -> None:
    manager = make()
    await ready(manager)
    pieces = [d.text async for d in manager.stream("a", gen("one two three"))]
    assert pieces == ["one", " two", " three"]
    snap = manager.snapshot()["a"]
    assert (snap["in_flight"], snap["breaker"]["successes"]) == (0, 1)


async def test_stream_closed_early_frees_its_slot_and_is_not_an_outcome(
    make: Callable[..., EngineManager],
) -> None:
    manager = make()
    await ready(manager)
    stream = manager.stream("a", gen("one two three"))
    assert (await anext(stream)).text == "one"
    assert manager.snapshot()["a"]["in_flight"] == 1
    await stream.aclose()  # type: ignore[attr-defined]
    breaker = manager.snapshot()["a"]["breaker"]
    assert (manager.snapshot()["a"]["in_flight"], breaker["successes"], breaker["failures"]) == (0, 0, 0)


async def test_failure_mid_stream_counts_against_the_breaker(make: Callable[..., EngineManager]) -> None:
    manager = make()
    fake = await ready(manager)
    with pytest.raises(EngineFailureError):
        async for _ in manager.stream("a", gen("one two three")):
            fake.set_mode(crash=True)
    snap = manager.snapshot()["a"]
    assert (snap["in_flight"], snap["breaker"]["failures"]) == (0, 1)
    assert "crashed mid-stream" in snap["last_error"]


async def test_unknown_name_is_not_found(make: Callable[..., EngineManager]) -> None:
    manager = make()
    await ready(manager)
    with pytest.raises(NotFoundError, match="nope"):
        await manager.execute("nope", gen())
    with pytest.raises(NotFoundError):
        async for _ in manager.stream("nope", gen()):
            pass
    for call in (manager.get, manager.status):
        with pytest.raises(NotFoundError):
            call("nope")
    with pytest.raises(NotFoundError):
        await manager.restart("nope")


async def test_engine_not_started_rejects_without_reaching_it(make: Callable[..., EngineManager]) -> None:
    manager = make()
    fake = FakeEngine()
    manager.register("a", fake)
    with pytest.raises(UnavailableError, match="stopped"):
        await manager.execute("a", gen())
    assert fake.requests == 0


async def test_open_breaker_fails_fast_without_reaching_the_engine(
    make: Callable[..., EngineManager], clock: Clock
) -> None:
    manager = make()
    fake = FakeEngine()
    manager.register("a", fake, BreakerConfig(failure_threshold=2))
    await manager.start_engine("a")
    fake.set_mode(fail_rate=1.0)
    for _ in range(2):
        with pytest.raises(EngineFailureError):
            await manager.execute("a", gen())
    assert manager.snapshot()["a"]["breaker"]["state"] == "open"
    with pytest.raises(UnavailableError, match="circuit breaker is open") as info:
        await manager.execute("a", gen())
    with pytest.raises(UnavailableError):
        async for _ in manager.stream("a", gen()):
            pass
    assert fake.requests == 2  # neither rejected request reached the engine
    assert 4.5 <= info.value.retry_after <= 5.5
    assert manager.snapshot()["a"]["breaker"]["rejections"] == 2
    # After the open time, trial calls go through and close it again.
    fake.set_mode(fail_rate=0.0)
    clock.advance(6.0)
    for _ in range(2):
        await manager.execute("a", gen())
    assert manager.snapshot()["a"]["breaker"]["state"] == "closed"


async def test_foreign_exception_becomes_engine_failure(make: Callable[..., EngineManager]) -> None:
    class Broken(FakeEngine):
        async def execute(self, request: Any) -> Any:
            raise RuntimeError("kaboom")

    manager = make()
    await ready(manager, fake=Broken())
    with pytest.raises(EngineFailureError) as info:
        await manager.execute("a", gen())
    assert isinstance(info.value.__cause__, RuntimeError)
    snap = manager.snapshot()["a"]
    assert (snap["breaker"]["failures"], snap["in_flight"]) == (1, 0)
    assert "kaboom" in snap["last_error"]


async def test_cancelled_request_is_not_a_failure(make: Callable[..., EngineManager]) -> None:
    manager = make()
    fake = await ready(manager)
    fake.set_mode(delay_s=30.0)
    task = asyncio.create_task(manager.execute("a", gen()))
    await until(lambda: manager.snapshot()["a"]["in_flight"] == 1, "request in flight")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    snap = manager.snapshot()["a"]
    assert (snap["in_flight"], snap["breaker"]["failures"], snap["last_error"]) == (0, 0, None)


# -- health and recovery -------------------------------------------------------------------
async def test_crashing_engine_is_restarted_and_ready_again(
    make: Callable[..., EngineManager], sleeper: Sleeper
) -> None:
    manager = make(unhealthy_after=2)
    fake = await ready(manager)
    fake.set_mode(crash=True)
    await manager.check_all()
    assert manager.status("a") is READY  # one failed check is not enough
    assert manager.snapshot()["a"]["last_error"] == "fake engine is down"
    await manager.check_all()
    assert went(manager, "ready -> unhealthy")  # recovery may already have begun
    assert not manager.status("a").admits_requests
    with pytest.raises(UnavailableError, match=r"unhealthy|recovering"):
        await manager.execute("a", gen())
    await until(lambda: manager.status("a") is READY, "recovery")
    assert (fake.starts, manager.snapshot()["a"]["restarts"]) == (2, 1)
    assert len(sleeper.delays) == 1 and 0.9 <= sleeper.delays[0] <= 1.1  # restart_base_s with jitter
    assert (await manager.execute("a", gen("back"))).choices[0].text == "back"
    assert "restart" in event_names(manager)


async def test_monitor_loop_finds_and_restarts_a_crashed_engine() -> None:
    """The real background loop, with real (tiny) intervals."""
    config = ManagerConfig(
        health_interval_s=0.01, unhealthy_after=1, restart_base_s=0.001, restart_max_s=0.001
    )
    manager = EngineManager(config, rng=random.Random(1))
    fake = FakeEngine()
    manager.register("a", fake)
    await manager.start()
    try:
        fake.set_mode(crash=True)
        await until(lambda: fake.starts == 2 and manager.status("a") is READY, "monitor restart")
        assert manager.snapshot()["a"]["restarts"] == 1
    finally:
        assert await manager.shutdown(grace_s=1.0)


async def test_failed_first_start_is_retried(make: Callable[..., EngineManager]) -> None:
    manager = make()
    fake = FakeEngine(FakeConfig(fail_starts=1))
    manager.register("a", fake)
    assert not await manager.start_engine("a")
    assert went(manager, "initializing -> unhealthy")
    assert "failed to start" in manager.snapshot()["a"]["last_error"]
    await until(lambda: manager.status("a") is READY, "recovery")
    assert fake.starts == 2


async def test_restart_backoff_grows_and_is_capped(
    make: Callable[..., EngineManager], sleeper: Sleeper
) -> None:
    manager = make(quarantine_after=5, restart_base_s=1.0, restart_factor=1.6, restart_max_s=3.0)
    fake = await ready(manager)
    fake.set_mode(crash=True, fail_starts=100)
    await manager.check_all()
    await until(lambda: manager.status("a") is QUARANTINED, "quarantine")
    expected = [1.0, 1.6, 2.56, 3.0, 3.0]
    assert len(sleeper.delays) == len(expected)
    for delay, base in zip(sleeper.delays, expected, strict=True):
        assert abs(delay / base - 1.0) <= 0.1 + 1e-9


async def test_engine_that_keeps_crashing_is_quarantined_and_stays_so(
    make: Callable[..., EngineManager],
) -> None:
    manager = make(quarantine_after=3)
    fake = await ready(manager)
    fake.set_mode(crash=True, fail_starts=100)
    await manager.check_all()
    await until(lambda: manager.status("a") is QUARANTINED, "quarantine")
    assert (fake.starts, manager.snapshot()["a"]["restarts"]) == (4, 3)  # first start + 3 restarts
    assert event_names(manager).count("quarantined") == 1
    for _ in range(5):
        await manager.check_all()
        await asyncio.sleep(0.001)
    assert manager.status("a") is QUARANTINED
    assert fake.starts == 4
    with pytest.raises(EngineDeadError, match="quarantined"):
        await manager.execute("a", gen())
    assert manager.snapshot()["a"]["status"] == "quarantined"
    assert fake.requests == 0


async def test_operator_restart_lifts_quarantine(make: Callable[..., EngineManager]) -> None:
    manager = make(quarantine_after=1)
    fake = await ready(manager)
    fake.set_mode(crash=True, fail_starts=100)
    await manager.check_all()
    await until(lambda: manager.status("a") is QUARANTINED, "quarantine")
    fake.set_mode(fail_starts=0)
    assert await manager.restart("a")
    assert manager.status("a") is READY
    assert (await manager.execute("a", gen("ok"))).choices[0].text == "ok"
    # The restart history was cleared: the next crash is restarted, not quarantined.
    fake.set_mode(crash=True)
    await manager.check_all()
    await until(lambda: manager.status("a") is READY and fake.starts == 4, "recovery")


async def test_restarts_outside_the_window_are_forgotten(
    make: Callable[..., EngineManager], clock: Clock
) -> None:
    manager = make(quarantine_after=2, quarantine_window_s=100.0)
    fake = await ready(manager)
    for crash, starts in enumerate((2, 3, 4)):
        if crash == 1:
            clock.advance(200.0)  # the first restart leaves the window
        fake.set_mode(crash=True)
        await manager.check_all()
        await until(lambda: manager.status("a") is READY and fake.starts == starts, "recovery")  # noqa: B023
    fake.set_mode(crash=True)  # two restarts inside the window now: quarantine
    await manager.check_all()
    await until(lambda: manager.status("a") is QUARANTINED, "quarantine")


async def test_hanging_engine_is_unhealthy_within_its_check_timeout_and_recovered(
    make: Callable[..., EngineManager],
) -> None:
    manager = make(unhealthy_after=1, health_timeout_s=0.05)
    fake = await ready(manager)
    fake.set_mode(hang=True)
    hung = asyncio.create_task(manager.execute("a", gen()))
    await until(lambda: fake.requests == 1, "hung request")
    await manager.check_all()  # returns once the 0.05 s check timeout fires
    assert went(manager, "ready -> unhealthy")
    assert "timed out" in manager.snapshot()["a"]["last_error"]
    fake.set_mode(hang=False)  # what the restart will fix
    await until(lambda: manager.status("a") is READY, "recovery")
    with pytest.raises(UnavailableError):
        await hung  # the restart's stop released it
    assert (await manager.execute("a", gen("alive"))).choices[0].text == "alive"


async def test_degraded_engine_still_serves(make: Callable[..., EngineManager]) -> None:
    class Tired(FakeEngine):
        degraded = True

        async def health_check(self) -> HealthReport:
            return HealthReport(healthy=True, degraded=self.degraded, detail="slow")

    manager = make()
    fake = Tired()
    await ready(manager, fake=fake)
    await manager.check_all()
    assert manager.status("a") is EngineStatus.DEGRADED
    assert manager.is_ready
    await manager.execute("a", gen())
    fake.degraded = False
    await manager.check_all()
    assert manager.status("a") is READY


async def test_health_check_that_raises_counts_as_failed(make: Callable[..., EngineManager]) -> None:
    class Flaky(FakeEngine):
        async def health_check(self) -> HealthReport:
            raise RuntimeError("probe broke")

    manager = make(unhealthy_after=3)
    await ready(manager, fake=Flaky())
    await manager.check_all()  # never raises
    assert manager.status("a") is READY
    assert "probe broke" in manager.snapshot()["a"]["last_error"]


# -- drain and shutdown ------------------------------------------------------------------------
class Tracked(FakeEngine):
    """Logs when requests finish and when the engine stops."""

    def __init__(self, log: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.log = log

    async def execute(self, request: Any) -> Any:
        result = await super().execute(request)
        self.log.append("done")
        return result

    async def stop(self) -> None:
        self.log.append("stop")
        await super().stop()


async def test_shutdown_drains_in_flight_requests(make: Callable[..., EngineManager]) -> None:
    manager = make()
    log: list[str] = []
    fake = await ready(manager, fake=Tracked(log, config=FakeConfig(delay_s=0.2)))
    tasks = [asyncio.create_task(manager.execute("a", gen(f"r{i}"))) for i in range(3)]
    await until(lambda: manager.snapshot()["a"]["in_flight"] == 3, "three in flight")
    shutting = asyncio.create_task(manager.shutdown(grace_s=10.0))
    await until(lambda: manager.draining, "draining")
    assert not manager.is_ready
    with pytest.raises(UnavailableError, match="shutting down"):
        await manager.execute("a", gen())
    assert fake.requests == 3
    results = await asyncio.gather(*tasks)
    assert [r.choices[0].text for r in results] == ["r0", "r1", "r2"]
    assert await shutting is True
    assert log == ["done", "done", "done", "stop"]
    assert manager.status("a") is STOPPED


async def test_drain_timeout_is_reported(make: Callable[..., EngineManager]) -> None:
    manager = make()
    fake = await ready(manager)
    fake.set_mode(hang=True)
    hung = asyncio.create_task(manager.execute("a", gen()))
    await until(lambda: fake.requests == 1, "hung request")
    assert await manager.drain("a", grace_s=0.05) is False
    timeouts = [e for e in manager.events() if e["event"] == "drain_timeout"]
    assert len(timeouts) == 1 and "1 still in flight" in timeouts[0]["detail"]
    assert manager.status("a") is STOPPED
    with pytest.raises(UnavailableError):
        await hung  # stopping the engine released it


async def test_drain_with_nothing_in_flight_is_clean_even_with_zero_grace(
    make: Callable[..., EngineManager],
) -> None:
    manager = make()
    await ready(manager)
    assert await manager.drain("a", grace_s=0.0) is True
    assert "drain_timeout" not in event_names(manager)


async def test_drain_during_a_recovery_start_leaves_the_engine_stopped(
    make: Callable[..., EngineManager],
) -> None:
    manager = make()
    fake = await ready(manager)
    fake.set_mode(crash=True, start_delay_s=0.1)
    await manager.check_all()
    await until(lambda: manager.status("a") is INITIALIZING, "recovery start")
    assert await manager.drain("a")
    await asyncio.sleep(0.2)  # let an orphaned start (the bug) finish if there were one
    assert manager.status("a") is STOPPED
    assert not (await fake.health_check()).healthy  # not left running behind the manager's back


async def test_unregister_stops_and_forgets(make: Callable[..., EngineManager]) -> None:
    manager = make()
    fake = await ready(manager)
    await manager.unregister("a")
    assert manager.names() == []
    assert not (await fake.health_check()).healthy
    with pytest.raises(NotFoundError):
        await manager.execute("a", gen())


# -- reporting -----------------------------------------------------------------------------------
async def test_snapshot_fields(make: Callable[..., EngineManager]) -> None:
    manager = make()
    fake = await ready(manager)
    await manager.execute("a", gen())
    snap = manager.snapshot()
    assert set(snap) == {"a"}
    assert snap["a"] == {
        "kind": "fake",
        "status": "ready",
        "breaker": manager.snapshot()["a"]["breaker"],
        "in_flight": 0,
        "restarts": 0,
        "last_error": None,
        "recent_errors": [],
        "stats": fake.stats(),
    }
    assert snap["a"]["breaker"]["state"] == "closed"
    assert snap["a"]["stats"]["requests"] == 1


async def test_events_log_is_bounded_and_newest_last(make: Callable[..., EngineManager]) -> None:
    manager = make(event_log_size=5)
    for name in ("a", "b", "c"):
        await ready(manager, name)
    events = manager.events()
    assert len(events) == 5
    assert events[-1]["engine"] == "c" and events[-1]["detail"] == "initializing -> ready"
    assert manager.events(limit=2) == events[-2:]
    assert set(events[0]) == {"time", "engine", "event", "detail"}


async def test_is_ready_semantics(make: Callable[..., EngineManager]) -> None:
    manager = make()
    assert not manager.is_ready  # nothing registered
    slow = FakeEngine(FakeConfig(start_delay_s=0.1))
    manager.register("slow", slow)
    await ready(manager, "a")
    assert not manager.is_ready  # "slow" has not been loaded yet
    starting = asyncio.create_task(manager.start_engine("slow"))
    await until(lambda: manager.status("slow") is INITIALIZING, "loading")
    assert not manager.is_ready  # still loading for the first time
    assert await starting
    assert manager.is_ready
    restarting = asyncio.create_task(manager.restart("slow"))
    await until(lambda: manager.status("slow") is INITIALIZING, "reloading")
    assert manager.is_ready  # a later restart of one engine keeps the server in rotation
    assert await restarting
    await manager.shutdown(grace_s=1.0)
    assert not manager.is_ready


async def test_start_starts_every_engine_and_the_monitor() -> None:
    manager = EngineManager(ManagerConfig(health_interval_s=60.0), rng=random.Random(0))
    fakes = [FakeEngine(), FakeEngine()]
    for i, fake in enumerate(fakes):
        manager.register(f"e{i}", fake)
    await manager.start()
    assert [manager.status(n) for n in manager.names()] == [READY, READY]
    assert manager.is_ready
    assert await manager.shutdown(grace_s=1.0)
    assert [manager.status(n) for n in manager.names()] == [STOPPED, STOPPED]


async def test_register_twice_is_an_error(make: Callable[..., EngineManager]) -> None:
    manager = make()
    await ready(manager)
    with pytest.raises(ValueError, match="already registered"):
        manager.register("a", FakeEngine())


@pytest.mark.parametrize(
    "bad",
    [
        {"health_interval_s": 0},
        {"health_timeout_s": -1},
        {"unhealthy_after": 0},
        {"quarantine_after": 0},
        {"event_log_size": 0},
        {"restart_factor": 0.5},
        {"restart_max_s": 0.5},
        {"health_jitter": 1.0},
        {"stop_timeout_s": 0},
        {"quarantine_window_s": 0},
        {"drain_grace_s": -1},
    ],
)
def test_manager_config_rejects_bad_values(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="manager"):
        ManagerConfig(**bad)  # type: ignore[arg-type]

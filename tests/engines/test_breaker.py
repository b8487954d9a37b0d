"""CircuitBreaker: the RELIABILITY sequences with a fake clock and exact assertions."""

from __future__ import annotations

import asyncio
import random

import pytest

from blaze_ai import errors
from blaze_ai.engines.breaker import BreakerConfig, BreakerState, CircuitBreaker, Outcome, outcome_of

S, F, IGN = Outcome.SUCCESS, Outcome.FAILURE, Outcome.IGNORED
CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
MS = 0.001


class Clock:
    """A monotonic clock that moves only when told."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class EdgeRng(random.Random):
    """Always draws the given end of the jitter range."""

    def __init__(self, sign: float) -> None:
        super().__init__(0)
        self.sign = sign

    def uniform(self, a: float, b: float) -> float:
        return b if self.sign > 0 else a


def make(clock: Clock, **overrides: float) -> CircuitBreaker:
    """A breaker with the RELIABILITY defaults, no jitter unless asked."""
    config = BreakerConfig(**{"jitter": 0.0, **overrides})  # type: ignore[arg-type]
    return CircuitBreaker(config, clock=clock, rng=random.Random(7))


def run(breaker: CircuitBreaker, *outcomes: Outcome) -> None:
    """Make one call per outcome; every call must be admitted."""
    for outcome in outcomes:
        assert breaker.try_acquire(), f"rejected in {breaker.state}"
        breaker.record(outcome)


def trip(breaker: CircuitBreaker) -> None:
    run(breaker, *[F] * breaker.config.failure_threshold)
    assert breaker.state is OPEN


# -- consecutive failures -------------------------------------------------------------
def test_four_failures_one_success_four_failures_stays_closed_then_fifth_opens() -> None:
    clock = Clock()
    breaker = make(clock)
    run(breaker, F, F, F, F, S, F, F, F, F)
    assert breaker.state is CLOSED
    assert breaker.snapshot()["consecutive_failures"] == 4
    run(breaker, F)
    assert breaker.state is OPEN
    assert breaker.trips == 1
    assert breaker.snapshot()["failures"] == 9
    assert breaker.snapshot()["successes"] == 1


def test_open_waits_exactly_the_base_time_then_admits_exactly_the_trial_calls() -> None:
    clock = Clock()
    breaker = make(clock)
    trip(breaker)
    clock.advance(5.0 - MS)
    assert breaker.state is OPEN
    assert not breaker.allows_request()
    assert breaker.retry_after() == pytest.approx(MS)
    clock.advance(2 * MS)
    assert breaker.state is HALF_OPEN
    assert breaker.retry_after() == 0.0
    assert [breaker.try_acquire() for _ in range(3)] == [True, True, False]
    assert breaker.rejections == 1


def test_half_open_bounds_concurrent_trials_not_total_trials() -> None:
    clock = Clock()
    breaker = make(clock, success_threshold=3)
    trip(breaker)
    clock.advance(5.0 + MS)
    assert breaker.try_acquire() and breaker.try_acquire()
    assert not breaker.try_acquire()
    breaker.record(S)  # frees one permit
    assert breaker.state is HALF_OPEN
    assert breaker.try_acquire()
    assert not breaker.try_acquire()


def test_success_threshold_successes_close_and_reset_counters() -> None:
    clock = Clock()
    breaker = make(clock)
    run(breaker, F, S)  # leave something in the window
    trip(breaker)
    clock.advance(5.0 + MS)
    run(breaker, S)
    assert breaker.state is HALF_OPEN
    run(breaker, S)
    assert breaker.state is CLOSED
    snap = breaker.snapshot()
    assert (snap["consecutive_failures"], snap["window_calls"], snap["window_failures"]) == (0, 0, 0)
    # After closing, the next trip waits the base time again (consecutive trips reset).
    trip(breaker)
    clock.advance(5.0 - MS)
    assert breaker.state is OPEN
    clock.advance(2 * MS)
    assert breaker.state is HALF_OPEN


def test_trial_failure_reopens_with_doubled_wait_capped_at_max() -> None:
    clock = Clock()
    breaker = make(clock)
    trip(breaker)
    expected = [10.0, 20.0, 40.0, 60.0, 60.0]  # base 5 s doubled per consecutive trip, capped at 60 s
    clock.advance(5.0 + MS)
    for wait in expected:
        run(breaker, F)  # the trial fails
        assert breaker.state is OPEN
        assert breaker.retry_after() == pytest.approx(wait)
        clock.advance(wait - MS)
        assert breaker.state is OPEN
        clock.advance(2 * MS)
        assert breaker.state is HALF_OPEN
    assert breaker.trips == 1 + len(expected)


@pytest.mark.parametrize("sign", [-1.0, 1.0])
def test_open_time_jitter_stays_within_ten_percent(sign: float) -> None:
    clock = Clock()
    breaker = CircuitBreaker(BreakerConfig(), clock=clock, rng=EdgeRng(sign))
    trip(breaker)
    wait = 5.0 * (1 + sign * 0.1)
    clock.advance(wait - MS)
    assert breaker.state is OPEN
    clock.advance(2 * MS)
    assert breaker.state is HALF_OPEN
    for _ in range(6):  # walk up to the cap
        run(breaker, F)
        wait = breaker.retry_after()
        clock.advance(wait + MS)
    assert wait == pytest.approx(60.0 * (1 + sign * 0.1))


def test_seeded_jitter_varies_within_bounds() -> None:
    waits = []
    for seed in range(30):
        clock = Clock()
        breaker = CircuitBreaker(BreakerConfig(), clock=clock, rng=random.Random(seed))
        trip(breaker)
        waits.append(breaker.retry_after())
    assert all(4.5 <= w <= 5.5 for w in waits)
    assert len({round(w, 6) for w in waits}) > 20  # really jittered, not constant


def test_rejection_is_not_a_failure_and_does_not_extend_the_open_period() -> None:
    clock = Clock()
    breaker = make(clock)
    trip(breaker)
    before = breaker.snapshot()
    for _ in range(50):
        clock.advance(0.09)
        assert not breaker.try_acquire()
    after = breaker.snapshot()
    assert after["rejections"] == before["rejections"] + 50
    assert after["failures"] == before["failures"]
    assert after["trips"] == before["trips"] == 1
    clock.advance(5.0 - 50 * 0.09 - MS)
    assert breaker.state is OPEN
    clock.advance(2 * MS)
    assert breaker.state is HALF_OPEN


# -- failure rate over the sliding window ----------------------------------------------
def test_failure_rate_trips_only_once_min_calls_are_in_the_window() -> None:
    clock = Clock()
    breaker = make(clock)  # 50 % of the last 20, at least 10 calls
    run(breaker, F, S, F, S, F, S, F, S, F)  # 5 of 9 failed, never 5 in a row
    assert breaker.state is CLOSED
    run(breaker, S)  # 10 calls, 5 failed: 50 %
    assert breaker.state is OPEN


def test_failure_rate_below_threshold_stays_closed() -> None:
    clock = Clock()
    breaker = make(clock)
    run(breaker, *([F, S, S, F, S] * 4))  # 8 of 20 = 40 %
    assert breaker.state is CLOSED
    assert breaker.snapshot()["window_calls"] == 20


def test_failure_rate_window_slides() -> None:
    clock = Clock()
    breaker = make(clock, failure_threshold=10, window_size=4, min_calls=4)
    run(breaker, F, S, S, S, S)  # the early failure slides out: window S S S S
    assert breaker.snapshot()["window_failures"] == 0
    run(breaker, F)
    assert breaker.state is CLOSED  # 1 of 4
    run(breaker, F)  # S S F F: 2 of 4 (cumulative would be 3 of 7)
    assert breaker.state is OPEN


# -- ignored outcomes -------------------------------------------------------------------
def test_ignored_outcomes_change_nothing_when_closed() -> None:
    clock = Clock()
    breaker = make(clock)
    run(breaker, F, F, F, F)
    before = breaker.snapshot()
    run(breaker, IGN, IGN, IGN)
    assert breaker.snapshot() == before
    run(breaker, F)  # the ignored calls did not break the run of failures
    assert breaker.state is OPEN


def test_ignored_trial_frees_its_permit_but_is_not_a_success() -> None:
    clock = Clock()
    breaker = make(clock)
    trip(breaker)
    clock.advance(5.0 + MS)
    run(breaker, IGN, IGN, IGN, S)
    assert breaker.state is HALF_OPEN
    run(breaker, S)
    assert breaker.state is CLOSED


def test_late_outcome_of_a_call_admitted_before_the_trip_is_not_a_trial() -> None:
    clock = Clock()
    breaker = make(clock, failure_threshold=1)
    assert breaker.try_acquire()  # a slow call, still running
    run(breaker, F)
    assert breaker.state is OPEN
    clock.advance(5.0 + MS)
    assert breaker.state is HALF_OPEN
    breaker.record(S)  # the slow call ends after the open period
    assert breaker.state is HALF_OPEN
    run(breaker, S)
    assert breaker.state is HALF_OPEN  # only real trials count: one more needed
    run(breaker, S)
    assert breaker.state is CLOSED


@pytest.mark.parametrize("scraped", [False, True])
def test_late_outcome_counts_the_same_whether_or_not_state_was_read(scraped: bool) -> None:
    clock = Clock()
    breaker = make(clock, failure_threshold=1)
    assert breaker.try_acquire()
    run(breaker, F)
    clock.advance(5.0 + MS)
    if scraped:
        breaker.snapshot()  # a metrics scrape must not change what follows
    breaker.record(S)
    closed_after = 0
    while breaker.state is not CLOSED:
        run(breaker, S)
        closed_after += 1
    assert closed_after == 2


def test_late_outcome_while_open_changes_nothing() -> None:
    clock = Clock()
    breaker = make(clock, failure_threshold=1)
    assert breaker.try_acquire()
    run(breaker, F)
    breaker.record(F)  # the slow call fails while OPEN
    assert breaker.trips == 1
    clock.advance(5.0 + MS)
    assert breaker.state is HALF_OPEN  # the open period was not extended


# -- snapshot, reset, validation ------------------------------------------------------------
def test_snapshot_exposes_state_and_counters() -> None:
    clock = Clock()
    breaker = make(clock, failure_threshold=2)
    run(breaker, S, F, F)
    assert not breaker.try_acquire()
    clock.advance(1.0)
    assert breaker.snapshot() == {
        "state": "open",
        "consecutive_failures": 0,
        "window_failures": 2,
        "window_calls": 3,
        "trips": 1,
        "rejections": 1,
        "successes": 1,
        "failures": 2,
        "retry_after_s": 4.0,
    }


def test_reset_closes_and_forgets_history() -> None:
    clock = Clock()
    breaker = make(clock)
    trip(breaker)
    breaker.reset()
    assert breaker.state is CLOSED
    assert breaker.allows_request()
    trip(breaker)
    assert breaker.retry_after() == pytest.approx(5.0)  # not doubled: history forgotten


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("failure_threshold", 0),
        ("window_size", 0),
        ("min_calls", 0),
        ("half_open_max_calls", 0),
        ("success_threshold", 0),
        ("min_calls", 21),
        ("failure_rate", 0.0),
        ("failure_rate", 1.5),
        ("open_base_s", 0.0),
        ("open_base_s", 61.0),
        ("jitter", -0.1),
        ("jitter", 1.0),
    ],
)
def test_config_rejects_bad_values(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        BreakerConfig(**{field: value})  # type: ignore[arg-type]


# -- call() and classification ----------------------------------------------------------
async def test_call_raises_unavailable_when_open_and_never_calls_fn() -> None:
    clock = Clock()
    breaker = make(clock, failure_threshold=1)
    calls = 0

    async def backend() -> str:
        nonlocal calls
        calls += 1
        raise errors.EngineFailureError("boom")

    with pytest.raises(errors.EngineFailureError):
        await breaker.call(backend)
    assert (calls, breaker.state) == (1, OPEN)
    with pytest.raises(errors.UnavailableError) as info:
        await breaker.call(backend)
    assert calls == 1
    assert info.value.retry_after == pytest.approx(5.0)
    assert breaker.rejections == 1


async def test_call_records_success_and_classified_outcomes() -> None:
    clock = Clock()
    breaker = make(clock, failure_threshold=1)

    async def ok() -> int:
        return 42

    async def bad_request() -> int:
        raise errors.BadRequestError("nope")

    assert await breaker.call(ok) == 42
    with pytest.raises(errors.BadRequestError):
        await breaker.call(bad_request)
    assert (breaker.successes, breaker.failures, breaker.state) == (1, 0, CLOSED)
    with pytest.raises(errors.BadRequestError):
        await breaker.call(bad_request, classify=lambda exc: Outcome.FAILURE)
    assert breaker.state is OPEN


async def test_cancelled_call_is_ignored() -> None:
    clock = Clock()
    breaker = make(clock, failure_threshold=1)
    task = asyncio.create_task(breaker.call(lambda: asyncio.sleep(10)))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (breaker.state, breaker.failures, breaker.successes) == (CLOSED, 0, 0)


@pytest.mark.parametrize(
    ("exc", "outcome"),
    [
        (None, S),
        (errors.BadRequestError("x"), IGN),
        (errors.ContextLengthError("x"), IGN),
        (errors.AuthenticationError("x"), IGN),
        (errors.PermissionDeniedError("x"), IGN),
        (errors.NotFoundError("x"), IGN),
        (errors.PayloadTooLargeError("x"), IGN),
        (errors.OverloadedError("x"), IGN),
        (errors.RateLimitedError("x"), IGN),
        (errors.CancelledError("x"), IGN),
        (asyncio.CancelledError(), IGN),
        (GeneratorExit(), IGN),
        (errors.EngineFailureError("x"), F),
        (errors.TimedOutError("x"), F),
        (errors.UnavailableError("x"), F),
        (RuntimeError("x"), F),
        (TimeoutError(), F),
    ],
)
def test_outcome_of_classifies(exc: BaseException | None, outcome: Outcome) -> None:
    assert outcome_of(exc) is outcome

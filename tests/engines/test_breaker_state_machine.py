"""CircuitBreaker against a small reference model, driven by hypothesis.

The model is written from the rules in RELIABILITY.md, not from the code: a
state, a few counters and the open deadline. A seeded rng is shared in step
(the model draws the same jitter as the breaker), so wait times are predicted
exactly. Calls may be held open across other steps, so late outcomes (a call
admitted before a trip) are exercised too.
"""

from __future__ import annotations

import random
from collections import deque

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from blaze_ai.engines.breaker import BreakerConfig, BreakerState, CircuitBreaker, Outcome

CONFIG = BreakerConfig(
    failure_threshold=3,
    window_size=6,
    min_calls=4,
    failure_rate=0.5,
    open_base_s=5.0,
    open_max_s=30.0,
    jitter=0.1,
    half_open_max_calls=2,
    success_threshold=2,
)
SEED = 1234
OUTCOMES = st.sampled_from(list(Outcome))
# Steps in ms, biased to land on both sides of the open deadlines (4.5 s .. 33 s).
STEPS_MS = st.one_of(st.integers(0, 40_000), st.sampled_from([1, 499, 500, 4_499, 4_999, 5_001, 5_501]))


class Model:
    """What the breaker should do, as plainly as possible."""

    def __init__(self) -> None:
        self.rng = random.Random(SEED)
        self.state = BreakerState.CLOSED
        self.run_of_failures = 0
        self.window: deque[bool] = deque(maxlen=CONFIG.window_size)
        self.trials_out = 0
        self.trial_successes = 0
        self.trips_in_a_row = 0
        self.open_until = 0.0
        self.trips = self.rejections = self.successes = self.failures = 0

    def refresh(self, now: float) -> BreakerState:
        if self.state is BreakerState.OPEN and now >= self.open_until:
            self.state = BreakerState.HALF_OPEN
            self.trials_out = self.trial_successes = 0
        return self.state

    def acquire(self, now: float) -> bool:
        state = self.refresh(now)
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and self.trials_out < CONFIG.half_open_max_calls:
            self.trials_out += 1
            return True
        self.rejections += 1
        return False

    def record(self, now: float, outcome: Outcome) -> None:
        state = self.refresh(now)
        is_trial = state is BreakerState.HALF_OPEN and self.trials_out > 0
        if is_trial:
            self.trials_out -= 1
        if outcome is Outcome.IGNORED:
            return
        failed = outcome is Outcome.FAILURE
        self.failures += failed
        self.successes += not failed
        if is_trial:
            self.trial_successes += not failed
            if failed:
                self.open(now)
            elif self.trial_successes >= CONFIG.success_threshold:
                self.state = BreakerState.CLOSED
                self.trips_in_a_row = 0
                self.window.clear()
                self.run_of_failures = 0
        elif state is BreakerState.CLOSED:
            self.window.append(failed)
            self.run_of_failures = self.run_of_failures + 1 if failed else 0
            by_rate = len(self.window) >= CONFIG.min_calls and 2 * sum(self.window) >= len(self.window)
            if self.run_of_failures >= CONFIG.failure_threshold or by_rate:
                self.open(now)

    def open(self, now: float) -> None:
        wait = min(CONFIG.open_max_s, CONFIG.open_base_s * 2**self.trips_in_a_row)
        self.open_until = now + wait * (1.0 + self.rng.uniform(-CONFIG.jitter, CONFIG.jitter))
        self.trips_in_a_row += 1
        self.trips += 1
        self.state = BreakerState.OPEN
        self.run_of_failures = 0


class RecordingBreaker(CircuitBreaker):
    """Logs every state change made in the one place they happen."""

    moves: list[tuple[BreakerState, BreakerState]]

    def _move(self, new: BreakerState) -> None:
        self.moves.append((self._state, new))
        super()._move(new)


class BreakerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 100.0
        self.model = Model()
        self.breaker = RecordingBreaker(CONFIG, clock=lambda: self.now, rng=random.Random(SEED))
        self.breaker.moves = []
        self.held = 0  # calls admitted and still running
        self.backend_calls = 0

    def acquire(self) -> bool:
        state_before = self.breaker.state
        admitted = self.breaker.try_acquire()
        assert admitted == self.model.acquire(self.now)
        if admitted:
            assert state_before is not BreakerState.OPEN, "a call reached the backend while OPEN"
            self.backend_calls += 1
        return admitted

    def record(self, outcome: Outcome) -> None:
        self.breaker.record(outcome)
        self.model.record(self.now, outcome)

    @rule(outcome=OUTCOMES)
    def call(self, outcome: Outcome) -> None:
        if self.acquire():
            self.record(outcome)

    @rule()
    def start_call(self) -> None:
        if self.acquire():
            self.held += 1

    @precondition(lambda self: self.held > 0)
    @rule(outcome=OUTCOMES)
    def finish_call(self, outcome: Outcome) -> None:
        self.held -= 1
        self.record(outcome)

    @rule(ms=STEPS_MS)
    def advance(self, ms: int) -> None:
        self.now += ms / 1000

    @rule()
    def peek(self) -> None:
        assert self.breaker.allows_request() == (
            self.model.refresh(self.now) is BreakerState.CLOSED
            or (
                self.model.state is BreakerState.HALF_OPEN
                and self.model.trials_out < CONFIG.half_open_max_calls
            )
        )

    @invariant()
    def matches_model(self) -> None:
        snap = self.breaker.snapshot()
        model = self.model
        assert snap["state"] == model.refresh(self.now).value
        assert snap["trips"] == model.trips
        assert snap["rejections"] == model.rejections
        assert snap["successes"] == model.successes
        assert snap["failures"] == model.failures
        assert snap["consecutive_failures"] == model.run_of_failures
        assert snap["window_calls"] == len(model.window)
        assert snap["window_failures"] == sum(model.window)
        expected_retry = max(0.0, model.open_until - self.now) if model.state is BreakerState.OPEN else 0.0
        assert snap["retry_after_s"] == round(expected_retry, 3)

    @invariant()
    def counters_never_negative(self) -> None:
        snap = self.breaker.snapshot()
        for key in ("consecutive_failures", "window_failures", "window_calls", "trips", "rejections"):
            assert snap[key] >= 0, key
        assert snap["retry_after_s"] >= 0
        assert 0 <= self.model.trials_out <= CONFIG.half_open_max_calls

    @invariant()
    def open_never_goes_straight_to_closed(self) -> None:
        assert (BreakerState.OPEN, BreakerState.CLOSED) not in self.breaker.moves
        assert (BreakerState.CLOSED, BreakerState.HALF_OPEN) not in self.breaker.moves


BreakerMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)
TestBreakerMachine = BreakerMachine.TestCase


def test_the_machine_reaches_every_state() -> None:
    """Guard against a vacuous model run: a scripted walk visits all three states."""
    machine = BreakerMachine()
    for _ in range(3):
        machine.call(Outcome.FAILURE)
    assert machine.breaker.state is BreakerState.OPEN
    machine.advance(5_600)
    machine.matches_model()
    assert machine.breaker.snapshot()["state"] == "half_open"
    machine.call(Outcome.SUCCESS)
    machine.call(Outcome.SUCCESS)
    machine.matches_model()
    assert machine.breaker.snapshot()["state"] == "closed"
    assert machine.breaker.moves == [
        (BreakerState.CLOSED, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED),
    ]

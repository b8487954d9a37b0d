"""A circuit breaker: CLOSED -> OPEN -> HALF_OPEN -> CLOSED.

Defaults follow resilience4j, Envoy and Hystrix (see the reliability notes in
``docs/operations.md``):

- CLOSED trips to OPEN on ``failure_threshold`` consecutive counted failures,
  or when at least ``failure_rate`` of the last ``window_size`` calls failed
  once ``min_calls`` calls are in the window.
- OPEN rejects at once, without calling. A rejection is not a failure and
  does not extend the open period. The open time is ``open_base_s`` doubled
  on each consecutive trip, capped at ``open_max_s``, with +-``jitter``.
- HALF_OPEN admits at most ``half_open_max_calls`` trial calls at a time;
  ``success_threshold`` successes close it, any failure reopens it.

Usage: ``if breaker.try_acquire(): ... breaker.record(outcome)``, or
``await breaker.call(fn)``. Every state change happens in ``_move``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from blaze_ai import errors
from blaze_ai.errors import UnavailableError

T = TypeVar("T")


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Outcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    IGNORED = "ignored"  # client errors, disconnects, 429: neither success nor failure


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    failure_threshold: int = 5
    window_size: int = 20
    min_calls: int = 10
    failure_rate: float = 0.5
    open_base_s: float = 5.0
    open_max_s: float = 60.0
    jitter: float = 0.1
    half_open_max_calls: int = 2
    success_threshold: int = 2

    def __post_init__(self) -> None:
        for name in (
            "failure_threshold",
            "window_size",
            "min_calls",
            "half_open_max_calls",
            "success_threshold",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"breaker {name} must be at least 1")
        if self.min_calls > self.window_size:
            raise ValueError("breaker min_calls must not exceed window_size")
        if not 0.0 < self.failure_rate <= 1.0:
            raise ValueError("breaker failure_rate must be in (0, 1]")
        if not 0.0 < self.open_base_s <= self.open_max_s:
            raise ValueError("breaker open_base_s must be positive and at most open_max_s")
        if not 0.0 <= self.jitter < 1.0:
            raise ValueError("breaker jitter must be in [0, 1)")


class CircuitBreaker:
    """Guards one backend; see the module docstring for the rules."""

    def __init__(
        self,
        config: BreakerConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config or BreakerConfig()
        self._clock = clock
        self._rng = rng or random.Random()
        self._state = BreakerState.CLOSED
        self._window: deque[bool] = deque(maxlen=self.config.window_size)  # True = failure
        self._consecutive_failures = 0
        self._half_open_in_flight = 0
        self._half_open_successes = 0
        self._consecutive_trips = 0
        self._open_until = 0.0
        # Counters for metrics; they only grow.
        self.trips = 0
        self.rejections = 0
        self.successes = 0
        self.failures = 0

    # -- state ---------------------------------------------------------------
    @property
    def state(self) -> BreakerState:
        """The current state; OPEN becomes HALF_OPEN once its wait is over."""
        if self._state is BreakerState.OPEN and self._clock() >= self._open_until:
            self._move(BreakerState.HALF_OPEN)
        return self._state

    def retry_after(self) -> float:
        """Seconds until an OPEN breaker admits a trial call (0 otherwise)."""
        return max(0.0, self._open_until - self._clock()) if self.state is BreakerState.OPEN else 0.0

    def allows_request(self) -> bool:
        """Whether ``try_acquire`` would succeed now (does not take a permit)."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        return state is BreakerState.HALF_OPEN and self._half_open_in_flight < self.config.half_open_max_calls

    def try_acquire(self) -> bool:
        """Take a permit for one call; False means rejected (not a failure)."""
        if not self.allows_request():
            self.rejections += 1
            return False
        if self._state is BreakerState.HALF_OPEN:
            self._half_open_in_flight += 1
        return True

    def record(self, outcome: Outcome) -> None:
        """Report the outcome of a call that ``try_acquire`` admitted."""
        # Read ``state`` (not ``_state``) so an expired OPEN period is seen whether
        # or not anyone looked at the breaker since (a metrics scrape must not
        # change how an outcome counts).
        state = self.state
        # A late outcome (a call admitted before the trip) changes nothing while
        # OPEN, nor while HALF_OPEN with no trial permit out: it is not a trial.
        late = state is BreakerState.OPEN
        if state is BreakerState.HALF_OPEN:
            late = self._half_open_in_flight == 0
            self._half_open_in_flight = max(0, self._half_open_in_flight - 1)
        if outcome is Outcome.IGNORED:
            return
        failed = outcome is Outcome.FAILURE
        if failed:
            self.failures += 1
        else:
            self.successes += 1
        if late:
            return
        if state is BreakerState.HALF_OPEN:
            self._record_trial(failed)
        else:
            self._record_closed(failed)

    def _record_trial(self, failed: bool) -> None:
        if failed:
            self._move(BreakerState.OPEN)
            return
        self._half_open_successes += 1
        if self._half_open_successes >= self.config.success_threshold:
            self._move(BreakerState.CLOSED)

    def _record_closed(self, failed: bool) -> None:
        self._window.append(failed)
        self._consecutive_failures = self._consecutive_failures + 1 if failed else 0
        calls = len(self._window)
        rate_tripped = (
            calls >= self.config.min_calls and sum(self._window) >= self.config.failure_rate * calls
        )
        if self._consecutive_failures >= self.config.failure_threshold or rate_tripped:
            self._move(BreakerState.OPEN)

    def _move(self, new: BreakerState) -> None:
        """The one place where the state changes."""
        cfg = self.config
        if new is BreakerState.OPEN:
            wait = min(cfg.open_max_s, cfg.open_base_s * 2.0**self._consecutive_trips)
            wait *= 1.0 + self._rng.uniform(-cfg.jitter, cfg.jitter)
            self._open_until = self._clock() + wait
            self._consecutive_trips += 1
            self.trips += 1
        elif new is BreakerState.HALF_OPEN:
            self._half_open_in_flight = 0
            self._half_open_successes = 0
        else:  # CLOSED: a clean slate
            self._consecutive_trips = 0
            self._window.clear()
        self._consecutive_failures = 0
        self._state = new

    def reset(self) -> None:
        """Close the breaker and forget history (an operator restart)."""
        self._move(BreakerState.CLOSED)

    # -- convenience ---------------------------------------------------------
    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        classify: Callable[[BaseException], Outcome] | None = None,
    ) -> T:
        """Run ``fn`` under the breaker; raise UnavailableError when rejected."""
        if not self.try_acquire():
            raise UnavailableError("circuit breaker is open", retry_after=max(self.retry_after(), 0.1))
        try:
            result = await fn()
        except BaseException as exc:
            self.record((classify or outcome_of)(exc))
            raise
        self.record(Outcome.SUCCESS)
        return result

    def snapshot(self) -> dict[str, Any]:
        """State and counters as plain data for metrics and the admin API."""
        return {
            "state": self.state.value,
            "consecutive_failures": self._consecutive_failures,
            "window_failures": sum(self._window),
            "window_calls": len(self._window),
            "trips": self.trips,
            "rejections": self.rejections,
            "successes": self.successes,
            "failures": self.failures,
            "retry_after_s": round(self.retry_after(), 3),
        }


_IGNORED = (
    errors.BadRequestError,
    errors.AuthenticationError,
    errors.PermissionDeniedError,
    errors.NotFoundError,
    errors.PayloadTooLargeError,
    errors.OverloadedError,
    errors.CancelledError,
    asyncio.CancelledError,
    GeneratorExit,
)


def outcome_of(exc: BaseException | None) -> Outcome:
    """Classify a call's ending: client errors, disconnects and 429s are ignored."""
    if exc is None:
        return Outcome.SUCCESS
    return Outcome.IGNORED if isinstance(exc, _IGNORED) else Outcome.FAILURE

"""The router: balances one model's requests over its replicas, with breakers, health and retries.

The request path: resolve the client -> eligible set (healthy, breaker admits, not tried yet)
-> strategy picks -> breaker permit -> replica, under the per-try timeout -> outcome recorded.
A failed try is retried on another replica while nothing has reached the client, within the
request's deadline, ``max_retries`` and the retry budget; never for client (4xx) errors and never
once a stream has yielded its first delta. With no eligible replica the request fails at once
with :class:`~blaze_ai.errors.UnavailableError` (503).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from blaze_ai.engines.breaker import BreakerConfig, CircuitBreaker, Outcome, outcome_of
from blaze_ai.engines.router.context import RoutingContext, context_from_headers, parse_networks, resolve
from blaze_ai.engines.router.health import HealthChecker, HealthConfig
from blaze_ai.engines.router.replicas import Replica
from blaze_ai.engines.router.strategies import STRATEGIES, PeakEwma, ReplicaState
from blaze_ai.errors import (
    AuthenticationError,
    BadRequestError,
    BlazeError,
    CancelledError,
    EngineFailureError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    TimedOutError,
    UnavailableError,
)

# Errors that are the caller's doing: never retried, never counted against a replica.
CLIENT_ERRORS = (
    BadRequestError,
    NotFoundError,
    AuthenticationError,
    PermissionDeniedError,
    PayloadTooLargeError,
    CancelledError,
)


@dataclass(frozen=True)
class RouterConfig:
    """How one model's router balances, guards and retries. YAML mappings are accepted for ``breaker``."""

    strategy: str = "power_of_two"
    strategy_options: Mapping[str, Any] = field(default_factory=dict)
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    health_interval_s: float = 5.0
    health_timeout_s: float = 2.0
    health_rise: int = 2
    health_fall: int = 3
    try_timeout_s: float = 30.0  # per try; for streams, until the first delta
    max_retries: int = 2
    retry_budget: float = 0.2  # retries may add at most this share of requests...
    retry_burst: int = 20  # ...after an allowance of this many
    session_header: str = "x-session-id"
    trusted_proxies: tuple[str, ...] = ()
    ewma_tau_s: float = 10.0

    def __post_init__(self) -> None:
        if isinstance(self.breaker, Mapping):
            object.__setattr__(self, "breaker", BreakerConfig(**self.breaker))
        object.__setattr__(self, "trusted_proxies", tuple(self.trusted_proxies))
        object.__setattr__(self, "strategy_options", dict(self.strategy_options))
        if self.strategy not in STRATEGIES:
            raise ValueError(f"router strategy {self.strategy!r} is unknown; use one of {sorted(STRATEGIES)}")
        try:
            STRATEGIES[self.strategy](**self.strategy_options)
        except TypeError as exc:
            raise ValueError(f"router strategy_options for {self.strategy!r}: {exc}") from exc
        if self.try_timeout_s <= 0 or self.ewma_tau_s <= 0:
            raise ValueError("router try_timeout_s and ewma_tau_s must be positive (seconds)")
        if self.max_retries < 0 or self.retry_burst < 0 or not 0 <= self.retry_budget <= 1:
            raise ValueError("router max_retries and retry_burst must be >= 0, retry_budget in [0, 1]")
        if not self.session_header:
            raise ValueError("router session_header must name a header, e.g. x-session-id")
        parse_networks(self.trusted_proxies)
        self.health()  # validates the health fields

    def health(self) -> HealthConfig:
        return HealthConfig(self.health_interval_s, self.health_timeout_s, self.health_rise, self.health_fall)


class RetryBudget:
    """A token bucket: each request adds ``ratio`` tokens (up to ``burst``); a retry spends one."""

    def __init__(self, ratio: float, burst: int) -> None:
        self._ratio, self._cap = ratio, float(burst)
        self._tokens = float(burst)

    def deposit(self) -> None:
        self._tokens = min(self._cap, self._tokens + self._ratio)

    def try_spend(self) -> bool:
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


@dataclass(slots=True)
class _Slot:
    replica: Replica
    breaker: CircuitBreaker
    state: ReplicaState


_END = object()  # a stream that ended before its first item


class Router:
    """Balances requests over replicas; see the module docstring for the request path."""

    def __init__(
        self,
        replicas: Sequence[Replica],
        config: RouterConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.config = cfg = config or RouterConfig()
        names = [r.name for r in replicas]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"a router needs at least one replica and unique names, got {names}")
        self._clock, rng = clock, rng or random.Random()
        self._slots = [self._slot(r, cfg, rng) for r in replicas]
        self._by_name = {slot.state.name: slot for slot in self._slots}
        self.strategy = STRATEGIES[cfg.strategy](rng=rng, clock=clock, **cfg.strategy_options)
        probes = {slot.state.name: slot.replica.probe for slot in self._slots}
        self.health = HealthChecker(
            probes, cfg.health(), on_change=self._on_health_change, sleep=sleep, rng=rng, clock=clock
        )
        self._trusted = parse_networks(cfg.trusted_proxies)
        self._budget = RetryBudget(cfg.retry_budget, cfg.retry_burst)
        self.requests = self.retries = self.rejected = 0

    def _slot(self, replica: Replica, cfg: RouterConfig, rng: random.Random) -> _Slot:
        weight = float(getattr(replica, "weight", 1.0))
        state = ReplicaState(replica.name, weight=weight, latency=PeakEwma(cfg.ewma_tau_s))
        return _Slot(replica, CircuitBreaker(cfg.breaker, clock=self._clock, rng=rng), state)

    # -- lifecycle -----------------------------------------------------------
    async def start(self) -> None:
        await self.health.start()

    async def stop(self) -> None:
        """Stop health checks and close replicas that hold connections."""
        await self.health.stop()
        for slot in self._slots:
            aclose = getattr(slot.replica, "aclose", None)
            if aclose is not None:
                await aclose()

    def _on_health_change(self, name: str, healthy: bool) -> None:
        if healthy:  # passing active checks un-ejects a replica (Envoy's default)
            self._by_name[name].breaker.reset()

    # -- choosing ------------------------------------------------------------
    def context(self, headers: Mapping[str, str], client_ip: str | None) -> RoutingContext:
        """The routing context of an HTTP request (session header from the config)."""
        return context_from_headers(headers, client_ip, session_header=self.config.session_header)

    def eligible(self, exclude: Sequence[str] = ()) -> list[ReplicaState]:
        """Replicas that may take a request now: healthy, breaker admits, not excluded."""
        return [
            slot.state
            for slot in self._slots
            if slot.state.name not in exclude
            and self.health.is_healthy(slot.state.name)
            and slot.breaker.allows_request()
        ]

    def _acquire(self, ctx: RoutingContext, tried: Sequence[str]) -> _Slot | None:
        eligible = self.eligible(tried)
        if not eligible:
            return None
        slot = self._by_name[self.strategy.pick(eligible, ctx).name]
        slot.breaker.try_acquire()  # cannot fail: allows_request held and nothing awaited since
        slot.state.in_flight += 1
        slot.state.picks += 1
        return slot

    def _finish(self, slot: _Slot, outcome: Outcome, latency_s: float) -> None:
        state = slot.state
        state.in_flight -= 1
        slot.breaker.record(outcome)
        if outcome is Outcome.SUCCESS:
            state.successes += 1
            state.busy_s += latency_s
            state.latency.observe(latency_s, self._clock())
        elif outcome is Outcome.FAILURE:
            state.failures += 1

    def _unavailable(self) -> UnavailableError:
        self.rejected += 1
        waits = [s.breaker.retry_after() for s in self._slots if s.breaker.retry_after() > 0]
        message = "no eligible replica: all unhealthy or breakers open"
        return UnavailableError(message, retry_after=min(waits, default=1.0))

    def _try_timeout(self, replica: Replica, request: Any) -> tuple[float | None, bool]:
        """Seconds for this try (None: unbounded) and whether the request's own deadline bounds it.

        The per-try timeout catches a hung remote replica. An in-process replica has none: its
        engine's queue and generation time is bounded by the request's deadline alone, and a
        hang is caught by the engine manager's health checks, so a long generation or a busy
        queue is never mistaken for a failed replica.
        """
        per_try = None if getattr(replica, "in_process", False) else self.config.try_timeout_s
        deadline = getattr(request, "deadline", None)
        if deadline is None:
            return per_try, False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimedOutError("the request's deadline passed before a replica could take it")
        if per_try is None or remaining < per_try:
            return remaining, True
        return per_try, False

    def _timeout_for(self, slot: _Slot, request: Any) -> tuple[float | None, bool]:
        """``_try_timeout``, releasing the slot (not the replica's fault) when the deadline passed."""
        try:
            return self._try_timeout(slot.replica, request)
        except TimedOutError:
            self._finish(slot, Outcome.IGNORED, 0.0)
            raise

    def _judge(
        self, slot: _Slot, exc: BaseException, timeout: tuple[float | None, bool]
    ) -> tuple[Outcome, BaseException]:
        """The breaker outcome of a failed try and the error to raise for it."""
        if isinstance(exc, TimeoutError):
            error = TimedOutError(f"replica {slot.state.name} did not answer within {timeout[0] or 0:.3g}s")
            return (Outcome.IGNORED if timeout[1] else Outcome.FAILURE), error
        if isinstance(exc, UnavailableError) and getattr(slot.replica, "in_process", False):
            # The engine manager refused it (loading, draining, its own breaker open): the manager
            # owns an in-process engine's availability, so this is not a failure of the replica.
            return Outcome.IGNORED, exc
        if isinstance(exc, BlazeError | asyncio.CancelledError | GeneratorExit):
            return outcome_of(exc), exc
        return Outcome.FAILURE, EngineFailureError(f"replica {slot.state.name} failed: {type(exc).__name__}")

    def _may_retry(self, exc: BaseException, attempt: int, request: Any) -> bool:
        if attempt >= self.config.max_retries or not isinstance(exc, BlazeError):
            return False
        if isinstance(exc, CLIENT_ERRORS):
            return False
        deadline = getattr(request, "deadline", None)
        if deadline is not None and deadline <= time.monotonic():
            return False
        if not self._budget.try_spend():
            return False
        self.retries += 1
        return True

    def _resolve(self, ctx: RoutingContext | None) -> RoutingContext:
        self.requests += 1
        self._budget.deposit()
        return RoutingContext() if ctx is None else resolve(ctx, self._trusted)

    # -- running -------------------------------------------------------------
    async def execute(self, request: Any, ctx: RoutingContext | None = None) -> Any:
        """Run ``request`` on a replica, retrying elsewhere on failure (see the module docstring)."""
        routing = self._resolve(ctx)
        tried: list[str] = []
        for attempt in range(self.config.max_retries + 1):
            slot = self._acquire(routing, tried)
            if slot is None:
                raise self._unavailable()
            tried.append(slot.state.name)
            try:
                return await self._execute_on(slot, request)
            except BlazeError as exc:
                if not self.eligible(tried) or not self._may_retry(exc, attempt, request):
                    raise
        raise AssertionError("unreachable: the last attempt raises")

    async def _execute_on(self, slot: _Slot, request: Any) -> Any:
        start, outcome = self._clock(), Outcome.FAILURE
        timeout = self._timeout_for(slot, request)
        try:
            async with asyncio.timeout(timeout[0]):
                result = await slot.replica.execute(request)
        except BaseException as exc:
            outcome, error = self._judge(slot, exc, timeout)
            if error is exc:
                raise
            raise error from exc
        else:
            outcome = Outcome.SUCCESS
        finally:
            self._finish(slot, outcome, self._clock() - start)
        return result

    async def stream(self, request: Any, ctx: RoutingContext | None = None) -> AsyncIterator[Any]:
        """Stream ``request`` from a replica; retried elsewhere only until the first delta arrives."""
        routing = self._resolve(ctx)
        tried: list[str] = []
        for attempt in range(self.config.max_retries + 1):
            slot = self._acquire(routing, tried)
            if slot is None:
                raise self._unavailable()
            tried.append(slot.state.name)
            source = slot.replica.stream(request)
            try:
                first, ttft = await self._first(slot, source, request)
            except BlazeError as exc:
                if not self.eligible(tried) or not self._may_retry(exc, attempt, request):
                    raise
                continue
            relay = cast(AsyncGenerator[Any, None], self._relay(slot, source, first, ttft))
            try:
                async for item in relay:
                    yield item
            finally:  # our consumer closing us must close the relay now, not at garbage collection
                await relay.aclose()
            return

    async def _first(self, slot: _Slot, source: AsyncIterator[Any], request: Any) -> tuple[Any, float]:
        """The first item of a replica's stream (or _END); on failure the try is closed and recorded."""
        start = self._clock()
        try:
            timeout = self._timeout_for(slot, request)
        except TimedOutError:
            await _close(source)
            raise
        try:
            async with asyncio.timeout(timeout[0]):
                first = await anext(source)
        except StopAsyncIteration:
            return _END, self._clock() - start
        except BaseException as exc:
            outcome, error = self._judge(slot, exc, timeout)
            await _close(source)
            self._finish(slot, outcome, 0.0)
            if error is exc:
                raise
            raise error from exc
        return first, self._clock() - start

    async def _relay(
        self, slot: _Slot, source: AsyncIterator[Any], first: Any, ttft: float
    ) -> AsyncIterator[Any]:
        """Pass the stream through; an error now ends it (no retry: the client has bytes)."""
        outcome = Outcome.FAILURE
        try:
            if first is not _END:
                yield first
                async for item in source:
                    yield item
            outcome = Outcome.SUCCESS
        except BaseException as exc:
            outcome, error = self._judge(slot, exc, (self.config.try_timeout_s, False))
            if error is exc:
                raise
            raise error from exc
        finally:
            await _close(source)
            self._finish(slot, outcome, ttft)

    # -- statistics ----------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Per-replica numbers for the admin API and metrics."""
        now, total = self._clock(), sum(slot.state.picks for slot in self._slots) or 1
        replicas = {}
        for slot in self._slots:
            s = slot.state
            replicas[s.name] = {
                "healthy": self.health.is_healthy(s.name),
                "breaker_state": slot.breaker.state.value,
                "breaker": slot.breaker.snapshot(),
                "in_flight": s.in_flight,
                "latency_ewma_ms": round(s.latency.value(now) * 1000, 3),
                "successes": s.successes,
                "errors": s.failures,
                "weight": s.weight,
                "effective_weight": s.effective_weight if s.effective_weight >= 0 else s.weight,
                "picks": s.picks,
                "share": round(s.picks / total, 4),
            }
        counts = {"requests": self.requests, "retries": self.retries, "rejected": self.rejected}
        return {"strategy": self.config.strategy, **counts, "replicas": replicas}


async def _close(source: AsyncIterator[Any]) -> None:
    aclose = getattr(source, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):  # a failing cleanup must not mask the real outcome
            await aclose()

"""The engine manager: owns engines, their status, breakers, health and recovery.

Every request goes ``manager.execute(name, request)`` (or ``stream``): the
manager checks the engine admits requests, takes a permit from its circuit
breaker, counts it in flight and records the outcome. A background task checks
every engine's health; an engine that fails ``unhealthy_after`` checks in a row
(or fails to start) becomes UNHEALTHY and is restarted with growing backoff,
and quarantined after ``quarantine_after`` restarts within
``quarantine_window_s``. Status changes go through
:func:`blaze_ai.engines.base.transition` in ``_set_status``, the one place
where they happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from blaze_ai.engines.base import Engine, EngineStatus, transition
from blaze_ai.engines.breaker import BreakerConfig, CircuitBreaker, Outcome, outcome_of
from blaze_ai.errors import BlazeError, EngineDeadError, EngineFailureError, NotFoundError, UnavailableError

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ManagerConfig:
    """Health, recovery and shutdown settings (defaults: RELIABILITY notes)."""

    health_interval_s: float = 5.0
    health_jitter: float = 0.1
    health_timeout_s: float = 2.0
    unhealthy_after: int = 3
    restart_base_s: float = 1.0
    restart_factor: float = 1.6
    restart_max_s: float = 30.0
    quarantine_after: int = 5
    quarantine_window_s: float = 600.0
    start_timeout_s: float = 900.0
    stop_timeout_s: float = 30.0
    drain_grace_s: float = 30.0
    event_log_size: int = 500

    def __post_init__(self) -> None:
        positive = ("health_interval_s", "health_timeout_s", "restart_base_s", "start_timeout_s")
        for name in (*positive, "stop_timeout_s", "quarantine_window_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"manager {name} must be positive")
        if self.drain_grace_s < 0:
            raise ValueError("manager drain_grace_s must be >= 0 (0 stops without waiting)")
        if self.unhealthy_after < 1 or self.quarantine_after < 1 or self.event_log_size < 1:
            raise ValueError("manager unhealthy_after, quarantine_after and event_log_size must be >= 1")
        if self.restart_factor < 1.0 or self.restart_max_s < self.restart_base_s:
            raise ValueError("manager restart_factor must be >= 1 and restart_max_s >= restart_base_s")
        if not 0.0 <= self.health_jitter < 1.0:
            raise ValueError("manager health_jitter must be in [0, 1)")


@dataclass(eq=False)
class _Slot:
    """Everything the manager knows about one engine."""

    name: str
    engine: Engine
    breaker: CircuitBreaker
    status: EngineStatus = EngineStatus.STOPPED
    in_flight: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    failed_checks: int = 0
    restart_times: deque[float] = field(default_factory=deque)
    restarts: int = 0
    last_error: str | None = None
    errors: deque[str] = field(default_factory=lambda: deque(maxlen=20))
    recovery: asyncio.Task[None] | None = None
    attempted_start: bool = False  # the first start has finished, well or not


class EngineManager:
    """Registers, starts, dispatches to, monitors, recovers and stops engines."""

    def __init__(
        self,
        config: ManagerConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config or ManagerConfig()
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._slots: dict[str, _Slot] = {}
        self._events: deque[dict[str, Any]] = deque(maxlen=self.config.event_log_size)
        self._monitor: asyncio.Task[None] | None = None
        self.draining = False

    # -- registry --------------------------------------------------------------
    def register(self, name: str, engine: Engine, breaker: BreakerConfig | None = None) -> None:
        """Add an engine (stopped); ``start()`` or ``start_engine(name)`` starts it."""
        if name in self._slots:
            raise ValueError(f"an engine named {name!r} is already registered")
        slot = _Slot(name, engine, CircuitBreaker(breaker, clock=self._clock, rng=self._rng))
        slot.idle.set()
        self._slots[name] = slot
        self._event(name, "registered", engine.kind)

    async def unregister(self, name: str) -> None:
        """Drain and stop an engine, then forget it (unload a model)."""
        await self.drain(name)
        del self._slots[name]
        self._event(name, "unregistered")

    def names(self) -> list[str]:
        return list(self._slots)

    def get(self, name: str) -> Engine:
        return self._slot(name).engine

    def status(self, name: str) -> EngineStatus:
        return self._slot(name).status

    def _slot(self, name: str) -> _Slot:
        try:
            return self._slots[name]
        except KeyError:
            raise NotFoundError(f"no model or engine named {name!r}", param="model") from None

    # -- lifecycle ---------------------------------------------------------------
    async def start(self) -> None:
        """Start every registered engine, one at a time, then the health monitor."""
        for name in list(self._slots):
            await self.start_engine(name)
        if self._monitor is None:
            self._monitor = asyncio.create_task(self._monitor_loop(), name="blaze-health-monitor")

    async def start_engine(self, name: str) -> bool:
        """INITIALIZING -> READY; a failed start schedules recovery. Returns success."""
        slot = self._slot(name)
        self._set_status(slot, EngineStatus.INITIALIZING)
        try:
            await asyncio.wait_for(slot.engine.start(), self.config.start_timeout_s)
        except Exception as exc:
            slot.attempted_start = True
            self._note_error(slot, f"start failed: {exc!r}")
            self._set_status(slot, EngineStatus.UNHEALTHY)
            self._schedule_recovery(slot)
            return False
        slot.attempted_start = True
        slot.failed_checks = 0
        slot.breaker.reset()
        self._set_status(slot, EngineStatus.READY)
        return True

    async def restart(self, name: str) -> bool:
        """Operator restart: also lifts a quarantine and its restart history."""
        slot = self._slot(name)
        self._cancel_recovery(slot)
        slot.restart_times.clear()
        self._set_status(slot, EngineStatus.RECOVERING)
        await self._stop_engine(slot)
        self._event(name, "restarted", "by operator")
        return await self.start_engine(name)

    async def drain(self, name: str, grace_s: float | None = None) -> bool:
        """Stop admitting, wait for in-flight work (up to grace), stop. True if drained cleanly."""
        slot = self._slot(name)
        self._cancel_recovery(slot)
        if slot.status is EngineStatus.STOPPED:
            return True
        self._set_status(slot, EngineStatus.DRAINING)
        grace = self.config.drain_grace_s if grace_s is None else grace_s
        clean = True
        # Only wait when something is in flight: on Python 3.11, wait_for with a
        # zero timeout times out even when the event is already set.
        if slot.in_flight:
            try:
                await asyncio.wait_for(slot.idle.wait(), grace)
            except TimeoutError:
                clean = False
                self._event(name, "drain_timeout", f"{slot.in_flight} still in flight after {grace:.1f}s")
        await self._stop_engine(slot)
        self._set_status(slot, EngineStatus.STOPPED)
        return clean

    async def shutdown(self, grace_s: float | None = None) -> bool:
        """Graceful shutdown: stop admitting, drain every engine in parallel, stop them."""
        self.draining = True
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
            self._monitor = None
        results = await asyncio.gather(*(self.drain(n, grace_s) for n in self._slots))
        return all(results)

    async def _stop_engine(self, slot: _Slot) -> None:
        try:
            await asyncio.wait_for(slot.engine.stop(), self.config.stop_timeout_s)
        except Exception as exc:
            self._note_error(slot, f"stop failed: {exc!r}")

    # -- dispatch ----------------------------------------------------------------
    def _admit(self, name: str) -> _Slot:
        slot = self._slot(name)
        if self.draining:
            raise UnavailableError("the server is shutting down", retry_after=5.0)
        if slot.status is EngineStatus.QUARANTINED:
            raise EngineDeadError(f"engine {name!r} is quarantined after repeated failures")
        if not slot.status.admits_requests:
            raise UnavailableError(f"engine {name!r} is {slot.status.value}", retry_after=2.0)
        if not slot.breaker.try_acquire():
            raise UnavailableError(
                f"engine {name!r} circuit breaker is open", retry_after=max(slot.breaker.retry_after(), 0.5)
            )
        slot.in_flight += 1
        slot.idle.clear()
        return slot

    def _finish(self, slot: _Slot, exc: BaseException | None) -> None:
        outcome = outcome_of(exc)
        slot.breaker.record(outcome)
        if outcome is Outcome.FAILURE:
            self._note_error(slot, repr(exc))
        slot.in_flight -= 1
        if slot.in_flight == 0:
            slot.idle.set()

    async def execute(self, name: str, request: Any) -> Any:
        """Run one request on the named engine through its breaker."""
        slot = self._admit(name)
        try:
            result = await slot.engine.execute(request)
        except BaseException as exc:
            self._finish(slot, exc)
            if isinstance(exc, Exception) and not isinstance(exc, BlazeError):
                raise EngineFailureError(f"engine {name!r} failed") from exc
            raise
        self._finish(slot, None)
        return result

    async def stream(self, name: str, request: Any) -> AsyncIterator[Any]:
        """Stream one request's pieces from the named engine through its breaker."""
        slot = self._admit(name)
        error: BaseException | None = None
        pieces = slot.engine.stream(request)
        try:
            async for piece in pieces:
                yield piece
        except BaseException as exc:
            error = exc
            if isinstance(exc, Exception) and not isinstance(exc, BlazeError):
                raise EngineFailureError(f"engine {name!r} failed") from exc
            raise
        finally:
            with contextlib.suppress(Exception):
                await pieces.aclose()  # type: ignore[attr-defined]
            self._finish(slot, error)

    # -- health and recovery -------------------------------------------------------
    async def _monitor_loop(self) -> None:
        await self._sleep(self._rng.uniform(0.0, self.config.health_interval_s))  # spread first checks
        while True:
            try:
                await self.check_all()
            except Exception:  # a probe error never kills the checking loop
                log.exception("health check round failed")
            jitter = self.config.health_jitter
            await self._sleep(self.config.health_interval_s * (1.0 + self._rng.uniform(-jitter, jitter)))

    async def check_all(self) -> None:
        """Run one health check on every engine that is up; never raises."""
        watched = (EngineStatus.READY, EngineStatus.DEGRADED, EngineStatus.UNHEALTHY)
        slots = [s for s in self._slots.values() if s.status in watched and s.recovery is None]
        await asyncio.gather(*(self._check(slot) for slot in slots))

    async def _check(self, slot: _Slot) -> None:
        try:
            report = await asyncio.wait_for(slot.engine.health_check(), self.config.health_timeout_s)
            healthy, degraded, detail = report.healthy, report.degraded, report.detail
        except TimeoutError:
            detail = f"health check timed out ({self.config.health_timeout_s}s)"
            healthy, degraded = False, False
        except Exception as exc:
            healthy, degraded, detail = False, False, f"health check raised {exc!r}"
        if slot.status not in (EngineStatus.READY, EngineStatus.DEGRADED, EngineStatus.UNHEALTHY):
            return  # drained or restarted while we waited
        if healthy:
            slot.failed_checks = 0
            self._set_status(slot, EngineStatus.DEGRADED if degraded else EngineStatus.READY)
            return
        slot.failed_checks += 1
        self._note_error(slot, detail)
        if slot.failed_checks >= self.config.unhealthy_after:
            self._set_status(slot, EngineStatus.UNHEALTHY)
            self._schedule_recovery(slot)

    def _schedule_recovery(self, slot: _Slot) -> None:
        if slot.recovery is None and not self.draining:
            slot.recovery = asyncio.create_task(self._recover(slot), name=f"blaze-recover-{slot.name}")

    def _cancel_recovery(self, slot: _Slot) -> None:
        if slot.recovery is not None and slot.recovery is not asyncio.current_task():
            slot.recovery.cancel()
        slot.recovery = None

    async def _recover(self, slot: _Slot) -> None:
        """One restart round with backoff; a failed start schedules the next round."""
        cfg = self.config
        try:
            now = self._clock()
            while slot.restart_times and now - slot.restart_times[0] > cfg.quarantine_window_s:
                slot.restart_times.popleft()
            if len(slot.restart_times) >= cfg.quarantine_after:
                self._set_status(slot, EngineStatus.QUARANTINED)
                self._event(slot.name, "quarantined", f"{len(slot.restart_times)} restarts")
                log.error("engine %s quarantined after repeated failures", slot.name)
                return
            self._set_status(slot, EngineStatus.RECOVERING)
            await self._stop_engine(slot)
            attempt = len(slot.restart_times)
            delay = min(cfg.restart_max_s, cfg.restart_base_s * cfg.restart_factor**attempt)
            await self._sleep(delay * (1.0 + self._rng.uniform(-0.1, 0.1)))
            slot.restart_times.append(self._clock())
            slot.restarts += 1
            self._event(slot.name, "restart", f"attempt {attempt + 1} after {delay:.2f}s")
            # The task stays in slot.recovery while the engine starts, so drain()
            # and restart() can cancel it; a failed start schedules the next round.
            if not await self.start_engine(slot.name):
                slot.recovery = None
                self._schedule_recovery(slot)
        finally:
            if slot.recovery is asyncio.current_task():
                slot.recovery = None

    # -- reporting -------------------------------------------------------------------
    def _set_status(self, slot: _Slot, new: EngineStatus) -> None:
        """The one place where an engine's status changes."""
        old = slot.status
        slot.status = transition(old, new)
        if new is not old:
            self._event(slot.name, "status", f"{old.value} -> {new.value}")
            log.info("engine %s: %s -> %s", slot.name, old.value, new.value)

    def _note_error(self, slot: _Slot, message: str) -> None:
        slot.last_error = message
        slot.errors.append(message)

    def _event(self, engine: str, event: str, detail: str = "") -> None:
        self._events.append({"time": time.time(), "engine": engine, "event": event, "detail": detail})

    def events(self, limit: int = 100) -> list[dict[str, Any]]:
        """The most recent events, oldest first."""
        return list(self._events)[-limit:]

    @property
    def is_ready(self) -> bool:
        """Not draining, every engine past its first start, and at least one admitting requests.

        An engine being restarted later does not take the whole server out of rotation.
        """
        if self.draining or not self._slots:
            return False
        slots = self._slots.values()
        return all(s.attempted_start for s in slots) and any(s.status.admits_requests for s in slots)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Per engine: status, breaker, in flight, restarts, errors and engine stats."""
        return {
            name: {
                "kind": slot.engine.kind,
                "status": slot.status.value,
                "breaker": slot.breaker.snapshot(),
                "in_flight": slot.in_flight,
                "restarts": slot.restarts,
                "last_error": slot.last_error,
                "recent_errors": list(slot.errors),
                "stats": slot.engine.stats(),
            }
            for name, slot in self._slots.items()
        }

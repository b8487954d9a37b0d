"""What every engine offers: the protocols, the status enum and its transitions.

An engine is anything that runs requests (:class:`Executable`), reports its
health (:class:`HealthCheckable`) and can be started and stopped
(:class:`Lifecycle`). The :class:`~blaze_ai.engines.manager.EngineManager`
owns the status of each engine and changes it only through :func:`transition`.

Statuses and the transitions allowed between them::

    INITIALIZING ──► READY ◄──────────► DEGRADED
         │            │  ▲                 │
         │            ▼  │                 ▼
         │         UNHEALTHY ◄─────────────┘
         │            │
         ▼            ▼
     RECOVERING ◄─────┘ ──► QUARANTINED ──► RECOVERING (operator restart)
         │
         └──► INITIALIZING

    any status except STOPPED ──► DRAINING ──► STOPPED
    any status ──► STOPPED

- INITIALIZING: starting (loading weights); admits no requests.
- READY: healthy; admits requests.
- DEGRADED: answers, but a health check reported trouble (slow, memory tight);
  still admits requests.
- UNHEALTHY: health checks failed ``unhealthy_after`` times in a row, or the
  engine crashed; admits no requests; recovery is scheduled.
- RECOVERING: being restarted after a failure (with backoff).
- QUARANTINED: restarted too often within the window; left stopped and
  reported until an operator restarts it.
- DRAINING: admits no new requests, finishes those in flight.
- STOPPED: stopped on purpose; the end of the line unless restarted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable


class EngineStatus(StrEnum):
    """The lifecycle status of one engine."""

    INITIALIZING = "initializing"
    READY = "ready"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    RECOVERING = "recovering"
    QUARANTINED = "quarantined"
    DRAINING = "draining"
    STOPPED = "stopped"

    @property
    def admits_requests(self) -> bool:
        """Whether an engine in this status takes new requests."""
        return self in (EngineStatus.READY, EngineStatus.DEGRADED)


_S = EngineStatus
ALLOWED_TRANSITIONS: dict[EngineStatus, frozenset[EngineStatus]] = {
    _S.INITIALIZING: frozenset({_S.READY, _S.UNHEALTHY, _S.RECOVERING, _S.DRAINING, _S.STOPPED}),
    _S.READY: frozenset({_S.DEGRADED, _S.UNHEALTHY, _S.RECOVERING, _S.DRAINING, _S.STOPPED}),
    _S.DEGRADED: frozenset({_S.READY, _S.UNHEALTHY, _S.RECOVERING, _S.DRAINING, _S.STOPPED}),
    _S.UNHEALTHY: frozenset({_S.READY, _S.RECOVERING, _S.QUARANTINED, _S.DRAINING, _S.STOPPED}),
    _S.RECOVERING: frozenset({_S.INITIALIZING, _S.QUARANTINED, _S.DRAINING, _S.STOPPED}),
    _S.QUARANTINED: frozenset({_S.RECOVERING, _S.DRAINING, _S.STOPPED}),
    _S.DRAINING: frozenset({_S.STOPPED}),
    _S.STOPPED: frozenset({_S.INITIALIZING, _S.RECOVERING}),
}


class InvalidTransitionError(RuntimeError):
    """A status change the lifecycle does not allow (a bug, not a user error)."""


def transition(current: EngineStatus, new: EngineStatus) -> EngineStatus:
    """Return ``new`` if the lifecycle allows ``current -> new``, else raise."""
    if new is current:
        return current
    if new not in ALLOWED_TRANSITIONS[current]:
        raise InvalidTransitionError(f"engine status cannot go from {current.value} to {new.value}")
    return new


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The answer to one health check."""

    healthy: bool
    degraded: bool = False
    detail: str = ""


@runtime_checkable
class Executable(Protocol):
    """Runs requests, whole or as a stream of pieces."""

    async def execute(self, request: Any) -> Any:
        """Run one request to completion and return its result."""
        ...

    def stream(self, request: Any) -> AsyncIterator[Any]:
        """Run one request, yielding its pieces as they are made."""
        ...


@runtime_checkable
class HealthCheckable(Protocol):
    """Reports its own health."""

    async def health_check(self) -> HealthReport:
        """Check health; raising or hanging counts as a failed check."""
        ...


@runtime_checkable
class Lifecycle(Protocol):
    """Can be started and stopped explicitly (no ``__del__`` cleanup)."""

    async def start(self) -> None:
        """Acquire resources (load weights, start loops)."""
        ...

    async def stop(self) -> None:
        """Release every resource; the engine may be started again."""
        ...


@runtime_checkable
class Engine(Executable, HealthCheckable, Lifecycle, Protocol):
    """What the engine manager drives: run, check and start/stop.

    ``kind`` is ``"llm"``, ``"diffusion"``, ``"embedding"`` or ``"fake"``;
    ``stats()`` returns plain per-engine statistics for metrics.
    """

    kind: str

    def stats(self) -> dict[str, Any]:
        """Plain statistics (numbers and strings) for metrics and the admin API."""
        ...

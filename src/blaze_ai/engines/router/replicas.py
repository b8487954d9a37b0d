"""Replicas: what the router balances over. One protocol, an in-process and a remote kind.

A replica runs requests (``execute``, ``stream``) and answers a readiness probe (``probe``). The
in-process kind wraps an engine, or one engine of an ``EngineManager``; the remote kind
(:class:`~blaze_ai.engines.router.remote.RemoteReplica`) speaks the OpenAI HTTP API.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol, runtime_checkable

from blaze_ai.engines.base import EngineStatus, Executable, HealthCheckable, HealthReport


@runtime_checkable
class Replica(Protocol):
    """One copy of a model the router can send requests to.

    ``weight`` (a positive float, default 1.0 when absent) feeds the weighted strategies.
    """

    name: str

    async def execute(self, request: Any) -> Any:
        """Run one request to completion."""
        ...

    def stream(self, request: Any) -> AsyncIterator[Any]:
        """Run one request, yielding its pieces (StreamDelta for generations)."""
        ...

    async def probe(self) -> bool:
        """True when the replica is ready for traffic; raising or hanging counts as not ready."""
        ...


class LocalEngine(Executable, HealthCheckable, Protocol):
    """An in-process engine: runs requests and reports its health."""


class EngineDispatcher(Protocol):
    """The part of ``EngineManager`` a replica needs."""

    async def execute(self, name: str, request: Any) -> Any: ...

    def stream(self, name: str, request: Any) -> AsyncIterator[Any]: ...

    def status(self, name: str) -> EngineStatus: ...


class ManagedEngine:
    """One engine of an ``EngineManager`` seen as a plain engine (dispatch goes through the manager)."""

    def __init__(self, manager: EngineDispatcher, engine_name: str) -> None:
        self.manager = manager
        self.engine_name = engine_name

    async def execute(self, request: Any) -> Any:
        return await self.manager.execute(self.engine_name, request)

    def stream(self, request: Any) -> AsyncIterator[Any]:
        return self.manager.stream(self.engine_name, request)

    async def health_check(self) -> HealthReport:
        status = self.manager.status(self.engine_name)  # the manager runs the engine's own checks
        return HealthReport(healthy=status.admits_requests, detail=status.value)


class LocalReplica:
    """A replica over an in-process engine (anything with execute, stream and health_check)."""

    in_process = True  # no per-try timeout: see Router._try_timeout

    def __init__(self, name: str, engine: LocalEngine, *, weight: float = 1.0) -> None:
        self.name = name
        self.engine = engine
        self.weight = weight

    @classmethod
    def from_manager(
        cls, manager: EngineDispatcher, engine_name: str, *, name: str | None = None, weight: float = 1.0
    ) -> LocalReplica:
        """A replica over engine ``engine_name`` of an ``EngineManager`` (its breaker and restarts apply)."""
        return cls(name or engine_name, ManagedEngine(manager, engine_name), weight=weight)

    async def execute(self, request: Any) -> Any:
        return await self.engine.execute(request)

    def stream(self, request: Any) -> AsyncIterator[Any]:
        return self.engine.stream(request)

    async def probe(self) -> bool:
        return (await self.engine.health_check()).healthy

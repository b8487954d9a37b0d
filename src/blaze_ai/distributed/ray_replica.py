"""Engine replicas as Ray actors: ``EngineActor`` hosts one engine, ``RayReplica`` is the router's view.

The actor builds its engine from ``kind`` and the engine config and starts it on first use (a probe
or a request), so a Ray restart brings the replica back on its own: the router's health checks
trigger the start, see it pass and let traffic back in. Ray errors are translated here, where they
enter: a restarting or unschedulable actor is :class:`~blaze_ai.errors.UnavailableError`, an actor
that died while running is :class:`~blaze_ai.errors.EngineFailureError`, and Blaze errors raised
inside the actor (``BadRequestError``...) arrive as themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

from blaze_ai.distributed.config import RAY_MISSING
from blaze_ai.engines.base import HealthReport
from blaze_ai.errors import (
    BlazeError,
    CancelledError,
    ConfigError,
    EngineFailureError,
    TimedOutError,
    UnavailableError,
)

try:
    import ray
    from ray.exceptions import (
        ActorDiedError,
        ActorUnavailableError,
        ActorUnschedulableError,
        GetTimeoutError,
        RayActorError,
        RayError,
        RayTaskError,
        TaskCancelledError,
    )
except ImportError as exc:
    raise ConfigError(RAY_MISSING) from exc


class EngineActor:
    """One engine inside a Ray worker process (wrap with ``ray.remote`` and Ray's options)."""

    def __init__(self, kind: str, engine_config: Any) -> None:
        from blaze_ai.config import engine_class  # the worker imports only the engine kind it hosts

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.kind = kind
        self.engine = engine_class(kind)(engine_config)
        self._starting: asyncio.Task[None] | None = None
        self._started = False

    def _start_task(self) -> asyncio.Task[None]:
        """The engine's start: one at a time, a fresh one after a failed one."""
        task = self._starting
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            task = self._starting = asyncio.create_task(self.engine.start())
        return task

    async def _ready(self) -> Any:
        """The started engine; the first caller starts it."""
        if not self._started:
            await asyncio.shield(self._start_task())  # a cancelled request must not cancel the start
            self._started = True
        return self.engine

    async def start(self) -> None:
        await self._ready()

    async def stop(self) -> None:
        if self._started:
            self._started, self._starting = False, None
            await self.engine.stop()

    async def execute(self, request: Any) -> Any:
        return await (await self._ready()).execute(request)

    async def stream(self, request: Any) -> AsyncIterator[Any]:
        """Yield the engine's deltas one by one (a Ray streaming generator on the caller's side)."""
        engine = await self._ready()
        async with contextlib.aclosing(engine.stream(request)) as deltas:
            async for delta in deltas:
                yield delta

    async def health_check(self) -> HealthReport:
        """Healthy once the engine runs; starts it in the background after a (re)start of the actor."""
        if not self._started:
            task = self._start_task()
            if not task.done():
                return HealthReport(healthy=False, detail="starting")
            await task  # raises a failed start's error: this probe fails, the next one starts again
            self._started = True
        report: HealthReport = await self.engine.health_check()
        return report

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = dict(self.engine.stats())
        node_id = ray.get_runtime_context().get_node_id()
        return {**stats, "pid": os.getpid(), "node_id": node_id, "started": self._started}


def translate(exc: RayError, replica: str) -> BlazeError:
    """The Blaze error for a Ray error (the caller raises it ``from exc``)."""
    if isinstance(exc, RayTaskError):
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BlazeError):
            return cause  # raised on purpose inside the actor: keep its type and fields
        return EngineFailureError(f"replica {replica} failed: {type(cause).__name__}: {cause}")
    if isinstance(exc, ActorUnavailableError | ActorUnschedulableError):
        return UnavailableError(f"replica {replica} is unavailable (restarting or unreachable)")
    if isinstance(exc, ActorDiedError | RayActorError):
        return EngineFailureError(f"replica {replica} died while running the request")
    if isinstance(exc, GetTimeoutError):
        return TimedOutError(f"replica {replica} did not answer in time")
    if isinstance(exc, TaskCancelledError):
        return CancelledError(f"the request on replica {replica} was cancelled")
    return EngineFailureError(f"replica {replica} failed in Ray: {type(exc).__name__}")


def _cancel(ref: Any) -> None:
    with contextlib.suppress(Exception):  # the task may have finished, or its actor may be gone
        ray.cancel(ref)


class RayReplica:
    """A router replica over an ``EngineActor`` handle; see the module docstring."""

    def __init__(self, name: str, actor: Any, *, weight: float = 1.0, probe_timeout_s: float = 2.0) -> None:
        if probe_timeout_s <= 0:
            raise ValueError("RayReplica probe_timeout_s must be positive (seconds)")
        self.name = name
        self.actor = actor
        self.weight = weight
        self.probe_timeout_s = probe_timeout_s

    def _submit(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self.actor, method).remote(*args)
        except RayError as exc:
            raise translate(exc, self.name) from exc

    async def _call(self, method: str, *args: Any) -> Any:
        """Call an actor method; cancelling the caller cancels the call inside the actor."""
        ref = self._submit(method, *args)
        try:
            return await ref
        except asyncio.CancelledError:
            _cancel(ref)
            raise
        except RayError as exc:
            raise translate(exc, self.name) from exc

    async def start(self) -> None:
        """Wait until the actor's engine runs (optional: the first probe or request starts it too)."""
        await self._call("start")

    async def execute(self, request: Any) -> Any:
        return await self._call("execute", request)

    async def stream(self, request: Any) -> AsyncIterator[Any]:
        """Deltas as the actor yields them; closing this generator cancels the actor's stream."""
        refs, done = self._submit("stream", request), False
        try:
            async for ref in refs:
                yield await ref
            done = True
        except RayError as exc:
            done = True
            raise translate(exc, self.name) from exc
        finally:
            if not done:  # closed early by the consumer (GeneratorExit) or cancelled
                _cancel(refs)

    async def probe(self) -> bool:
        """A health check within ``probe_timeout_s``; a dead, restarting or starting actor is not ready."""
        try:
            async with asyncio.timeout(self.probe_timeout_s):
                report = await self._call("health_check")
        except (BlazeError, TimeoutError):
            return False
        return bool(report.healthy)

    async def stats(self) -> dict[str, Any]:
        """The engine's stats plus the actor's pid and Ray node id."""
        result: dict[str, Any] = await self._call("stats")
        return result

    async def aclose(self) -> None:
        """Stop the engine and end the actor for good (``Router.stop`` calls this)."""
        with contextlib.suppress(BlazeError, TimeoutError):
            async with asyncio.timeout(10.0):
                await self._call("stop")
        with contextlib.suppress(Exception):
            ray.kill(self.actor, no_restart=True)

"""The one seam between route handlers and whatever runs the model.

Route handlers never touch the engine manager directly: they call
``app.state.dispatch``, an object with

- ``await execute(model, request, ctx) -> result``: run one request whole;
- ``stream(model, request, ctx) -> AsyncIterator``: run it as a stream of pieces
  (admission errors are raised by the first ``__anext__``, before any byte is sent);
- ``models() -> dict[name, kind]``: what ``GET /v1/models`` lists and how routes
  check that a model can serve them.

:class:`ManagerDispatch` sends every request straight to
``EngineManager.execute/stream``. The router (a per-model ``Router`` fed a
``RoutingContext`` built from :class:`RequestContext`) and the response cache
plug in by replacing ``app.state.dispatch`` with another object of this shape,
for example one that wraps a ``ManagerDispatch``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from blaze_ai.engines.manager import EngineManager


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Who asked: what routing (hashing, stickiness) and the cache may key on. Never logged."""

    request_id: str
    client_ip: str | None = None
    forwarded_for: str | None = None  # X-Forwarded-For, only when the peer is a trusted proxy
    api_key: str | None = None
    session_id: str | None = None  # X-Session-Id header, else the body's ``user``
    headers: Mapping[str, str] = field(default_factory=dict)  # for a router's own session_header


class Dispatch(Protocol):
    """What route handlers call to run a request on a model."""

    async def execute(self, model: str, request: Any, ctx: RequestContext) -> Any: ...

    def stream(self, model: str, request: Any, ctx: RequestContext) -> AsyncIterator[Any]: ...

    def models(self) -> dict[str, str]: ...


class ManagerDispatch:
    """Dispatch straight to the engine manager (one engine per model name)."""

    def __init__(self, manager: EngineManager) -> None:
        self.manager = manager

    async def execute(self, model: str, request: Any, ctx: RequestContext) -> Any:
        return await self.manager.execute(model, request)

    def stream(self, model: str, request: Any, ctx: RequestContext) -> AsyncIterator[Any]:
        return self.manager.stream(model, request)

    def models(self) -> dict[str, str]:
        return {name: self.manager.get(name).kind for name in self.manager.names()}


def context_for(request: Any, user: str | None = None) -> RequestContext:
    """Build the routing context of a Starlette request (``X-Forwarded-For`` only from trusted proxies)."""
    client_ip = request.client.host if request.client else None
    trusted: tuple[str, ...] = request.app.state.server_config.trusted_proxies
    forwarded = request.headers.get("x-forwarded-for") if client_ip in trusted else None
    return RequestContext(
        request_id=request.state.request_id,
        client_ip=client_ip,
        forwarded_for=forwarded,
        api_key=getattr(request.state, "api_key", None),
        session_id=request.headers.get("x-session-id") or user,
        headers=request.headers,
    )

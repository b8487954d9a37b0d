"""The HTTP side of the cache: ``Cache-Control`` in, ``x-blaze-cache`` out, through a ContextVar.

Route handlers never see the cache. :class:`CacheHeaderMiddleware` (plain
ASGI, so streaming responses pass untouched) puts a fresh :class:`CacheStatus`
in a ContextVar for each request, with the client's ``no-cache`` / ``no-store``
directives. ``CachedDispatch`` reads the directives and writes the outcome
into that same object (tasks copy the context, so the object is shared even
when routes run requests in tasks of their own), and the middleware stamps the
outcome on the response when its headers go out. For a stream, headers go out
after the first piece, when the outcome is known.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "x-blaze-cache"

_RANK = {"hit": 0, "bypass": 1, "miss": 2}


@dataclass(eq=False)
class CacheStatus:
    """What the client asked of the cache, and what the cache did (the worst of several requests)."""

    no_cache: bool = False  # do not answer from the cache (a fresh answer is still stored)
    no_store: bool = False  # do not read or store anything
    outcome: str | None = None

    def note(self, outcome: str) -> None:
        if self.outcome is None or _RANK[outcome] > _RANK[self.outcome]:
            self.outcome = outcome


current_status: ContextVar[CacheStatus | None] = ContextVar("blaze_cache_status", default=None)


def parse_directives(headers: Headers) -> CacheStatus:
    """``Cache-Control: no-cache`` (or ``Pragma: no-cache``) and ``no-store`` from request headers."""
    directives = {d.strip().split("=")[0].lower() for d in headers.get("cache-control", "").split(",")}
    no_store = "no-store" in directives
    no_cache = no_store or "no-cache" in directives or "no-cache" in headers.get("pragma", "").lower()
    return CacheStatus(no_cache=no_cache, no_store=no_store)


class CacheHeaderMiddleware:
    """Read the client's cache directives and add ``x-blaze-cache: hit|miss|bypass`` to the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = parse_directives(Headers(scope=scope))

        async def stamped_send(message: Message) -> None:
            if message["type"] == "http.response.start" and status.outcome is not None:
                MutableHeaders(scope=message)[HEADER] = status.outcome
            await send(message)

        token = current_status.set(status)
        try:
            await self.app(scope, receive, stamped_send)
        finally:
            current_status.reset(token)

"""``CachedDispatch``: the response cache at the dispatch seam, invisible to route handlers.

It has the shape of :class:`blaze_ai.server.dispatch.Dispatch` and wraps
another one. A request the mode caches (see :func:`blaze_ai.cache.keys.cacheable`)
goes through :class:`ResponseCache`; any other request, or one whose client
sent ``Cache-Control: no-cache``, goes straight to the inner dispatch and is
reported as ``bypass``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

from blaze_ai.cache import codec
from blaze_ai.cache.cache import Outcome, ResponseCache
from blaze_ai.cache.keys import MODES, cache_key, cacheable
from blaze_ai.cache.middleware import CacheStatus, current_status
from blaze_ai.server.dispatch import Dispatch, RequestContext


class CachedDispatch:
    """Answer from ``cache`` what ``mode`` allows; send the rest to ``inner``."""

    def __init__(self, inner: Dispatch, cache: ResponseCache, mode: str = "deterministic") -> None:
        if mode not in MODES:
            raise ValueError(f"cache mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.inner = inner
        self.cache = cache
        self.mode = mode

    def models(self) -> dict[str, str]:
        return self.inner.models()

    async def execute(self, model: str, request: Any, ctx: RequestContext) -> Any:
        status = current_status.get()
        if not cacheable(request, self.mode):
            self.cache.counts.bypasses += 1
            _note(status, "bypass")
            return await self.inner.execute(model, request, ctx)
        key = cache_key(model, request, "execute")
        assert key is not None  # cacheable requests have a key

        async def compute() -> Any:
            return await self.inner.execute(model, request, ctx)

        if status is not None and status.no_cache:
            _note(status, "bypass")
            return await self.cache.refresh(None if status.no_store else key, compute, codec.encode_result)
        result = await self.cache.fetch(
            key, compute, codec.encode_result, codec.decode_result, lambda o: _note(status, o)
        )
        return _with_request_id(result, getattr(request, "request_id", None))

    def stream(self, model: str, request: Any, ctx: RequestContext) -> AsyncIterator[Any]:
        status = current_status.get()
        if not cacheable(request, self.mode):
            self.cache.counts.bypasses += 1
            return _noting(status, "bypass", self.inner.stream(model, request, ctx))
        key = cache_key(model, request, "stream")
        assert key is not None
        if status is not None and status.no_cache:
            source = self.inner.stream(model, request, ctx)
            refreshed = self.cache.refresh_stream(
                None if status.no_store else key, source, codec.encode_pieces
            )
            return _noting(status, "bypass", refreshed)
        return self.cache.stream(
            key,
            lambda: self.inner.stream(model, request, ctx),
            codec.encode_pieces,
            codec.decode_pieces,
            lambda o: _note(status, o),
        )


def _note(status: CacheStatus | None, outcome: Outcome) -> None:
    if status is not None:
        status.note(outcome)


async def _noting(
    status: CacheStatus | None, outcome: Outcome, source: AsyncIterator[Any]
) -> AsyncIterator[Any]:
    """``source`` unchanged, noting ``outcome`` when it is first read (before the response starts)."""
    _note(status, outcome)
    try:
        async for piece in source:
            yield piece
    finally:
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()


def _with_request_id(result: Any, request_id: str | None) -> Any:
    """A stored or shared result under this request's id (a shallow copy; the shared one is not touched)."""
    if (
        request_id is None
        or not dataclasses.is_dataclass(result)
        or getattr(result, "request_id", None) is None
    ):
        return result
    return dataclasses.replace(result, request_id=request_id)  # type: ignore[type-var]

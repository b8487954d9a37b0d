"""The response cache: bytes in a backend, single-flight, counters.

:meth:`ResponseCache.fetch` answers a whole result and :meth:`ResponseCache.stream`
a stream of pieces. Either way a key is looked up in the backend (a hit),
else joined to the identical request already running (shared), else computed
once (a miss) and stored. Work runs in a task of its own, so one caller going
away does not fail the others; it is cancelled (aborting the engine request)
only when every caller has gone. Backend failures count as errors and misses:
the request is served without the cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from blaze_ai.cache.backends import Backend, CacheUnavailableError
from blaze_ai.cache.codec import CodecError

log = logging.getLogger("blaze_ai.cache")

T = TypeVar("T")
Outcome = Literal["hit", "miss", "bypass"]
Report = Callable[[Outcome], None]


def _ignore(outcome: Outcome) -> None:
    return None


@dataclass
class Stats:
    """Counters for metrics; ``shared`` requests joined one in flight (counted as hits too)."""

    hits: int = 0
    misses: int = 0
    shared: int = 0
    bypasses: int = 0
    errors: int = 0
    stores: int = 0
    bytes_stored: int = 0  # total written since start


@dataclass(eq=False)
class _Flight(Generic[T]):
    """One computation that several identical requests wait on."""

    task: asyncio.Task[T]
    waiters: int = 0


@dataclass(eq=False)
class _StreamFlight:
    """One stream being produced; readers replay ``pieces`` from the start as they arrive."""

    pieces: list[Any] = field(default_factory=list)
    done: bool = False
    error: BaseException | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    readers: int = 0
    task: asyncio.Task[None] | None = None

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


class ResponseCache:
    """Results by key in ``backend`` for ``ttl_s`` seconds; none over ``max_entry_bytes`` is stored."""

    def __init__(self, backend: Backend, ttl_s: float, *, max_entry_bytes: int | None = None) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self.backend = backend
        self.ttl_s = ttl_s
        self.max_entry_bytes = max_entry_bytes
        self.counts = Stats()
        self._flights: dict[str, _Flight[Any]] = {}
        self._streams: dict[str, _StreamFlight] = {}

    # -- whole results --------------------------------------------------------------
    async def fetch(
        self,
        key: str,
        compute: Callable[[], Awaitable[T]],
        encode: Callable[[T], bytes],
        decode: Callable[[bytes], T],
        report: Report = _ignore,
    ) -> T:
        """The cached result for ``key``, the one being computed, or ``compute()``'s (then stored)."""
        flight = self._flights.get(key)
        if flight is None:
            cached = await self._read(key, decode)
            if cached is not None:
                self.counts.hits += 1
                report("hit")
                return cached
            flight = self._flights.get(key)  # another caller may have started while we read
        if flight is None:
            self.counts.misses += 1
            report("miss")
            flight = _Flight(asyncio.create_task(self._compute(key, compute, encode)))
            self._flights[key] = flight
            flight.task.add_done_callback(lambda _: self._flights.pop(key, None))
        else:
            self.counts.hits += 1
            self.counts.shared += 1
            report("hit")
        return await self._wait(flight)

    async def _compute(
        self, key: str, compute: Callable[[], Awaitable[T]], encode: Callable[[T], bytes]
    ) -> T:
        result = await compute()
        await self._write(key, lambda: encode(result))
        return result

    async def _wait(self, flight: _Flight[T]) -> T:
        flight.waiters += 1
        try:
            return await asyncio.shield(flight.task)
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.task.done():
                flight.task.cancel()  # nobody wants it any more: abort the engine request

    # -- streams --------------------------------------------------------------------
    async def stream(
        self,
        key: str,
        open_stream: Callable[[], AsyncIterator[Any]],
        encode: Callable[[list[Any]], bytes],
        decode: Callable[[bytes], list[Any]],
        report: Report = _ignore,
    ) -> AsyncIterator[Any]:
        """The pieces of a stream: replayed from the backend, shared with one in flight, or produced."""
        flight = self._streams.get(key)
        if flight is None:
            cached = await self._read(key, decode)
            if cached is not None:
                self.counts.hits += 1
                report("hit")
                for piece in cached:
                    yield piece
                return
            flight = self._streams.get(key)
        if flight is None:
            self.counts.misses += 1
            report("miss")
            flight = self._start_stream(key, open_stream, encode)
        else:
            self.counts.hits += 1
            self.counts.shared += 1
            report("hit")
        async for piece in self._replay(flight):
            yield piece

    def _start_stream(
        self, key: str, open_stream: Callable[[], AsyncIterator[Any]], encode: Callable[[list[Any]], bytes]
    ) -> _StreamFlight:
        flight = _StreamFlight()
        self._streams[key] = flight
        flight.task = asyncio.create_task(self._produce(key, flight, open_stream, encode))
        return flight

    async def _produce(
        self,
        key: str,
        flight: _StreamFlight,
        open_stream: Callable[[], AsyncIterator[Any]],
        encode: Callable[[list[Any]], bytes],
    ) -> None:
        try:
            source = open_stream()
            try:
                async for piece in source:
                    flight.pieces.append(piece)
                    flight.notify()
            finally:
                aclose = getattr(source, "aclose", None)
                if aclose is not None:
                    await aclose()  # closing the engine stream aborts the request
            await self._write(key, lambda: encode(flight.pieces))
        except Exception as exc:  # handed to the readers, not raised into the void
            flight.error = exc
        except asyncio.CancelledError as exc:
            flight.error = exc
            raise
        finally:
            flight.done = True
            self._streams.pop(key, None)
            flight.notify()

    async def _replay(self, flight: _StreamFlight) -> AsyncIterator[Any]:
        flight.readers += 1
        try:
            index = 0
            while True:
                changed = flight.changed
                while index < len(flight.pieces):
                    yield flight.pieces[index]
                    index += 1
                if flight.done:
                    if flight.error is not None:
                        raise _reraisable(flight.error)
                    return
                await changed.wait()
        finally:
            flight.readers -= 1
            if flight.readers == 0 and flight.task is not None and not flight.task.done():
                flight.task.cancel()

    # -- bypass ---------------------------------------------------------------------
    async def refresh(
        self, key: str | None, compute: Callable[[], Awaitable[T]], encode: Callable[[T], bytes]
    ) -> T:
        """Compute without reading the cache; store the fresh result when ``key`` is given."""
        self.counts.bypasses += 1
        result = await compute()
        if key is not None:
            await self._write(key, lambda: encode(result))
        return result

    async def refresh_stream(
        self, key: str | None, source: AsyncIterator[Any], encode: Callable[[list[Any]], bytes]
    ) -> AsyncIterator[Any]:
        """Pass ``source`` through unread by the cache; store it if it ends well and ``key`` is given."""
        self.counts.bypasses += 1
        pieces: list[Any] = []
        try:
            async for piece in source:
                pieces.append(piece)
                yield piece
        finally:
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                await aclose()
        if key is not None:
            await self._write(key, lambda: encode(pieces))

    # -- backend --------------------------------------------------------------------
    async def _read(self, key: str, decode: Callable[[bytes], T]) -> T | None:
        try:
            blob = await self.backend.get(key)
            return None if blob is None else decode(blob)
        except CacheUnavailableError:
            self.counts.errors += 1
        except CodecError as exc:
            self.counts.errors += 1
            log.warning("unreadable cache entry %s (%s); recomputing", key, exc)
        return None

    async def _write(self, key: str, encode: Callable[[], bytes]) -> None:
        try:
            blob = encode()
        except CodecError as exc:
            log.debug("not caching %s: %s", key, exc)
            return
        if self.max_entry_bytes is not None and len(blob) > self.max_entry_bytes:
            return
        try:
            await self.backend.set(key, blob, self.ttl_s)
        except CacheUnavailableError:
            self.counts.errors += 1
            return
        self.counts.stores += 1
        self.counts.bytes_stored += len(blob)

    # -- outside --------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Counters and the backend's own numbers, for metrics."""
        c = self.counts
        return {
            "hits": c.hits,
            "misses": c.misses,
            "shared": c.shared,
            "bypasses": c.bypasses,
            "errors": c.errors,
            "stores": c.stores,
            "bytes_stored": c.bytes_stored,
            "in_flight": len(self._flights) + len(self._streams),
            **{f"backend_{k}": v for k, v in self.backend.stats().items()},
        }

    async def aclose(self) -> None:
        """Cancel work in flight and close the backend."""
        tasks = [f.task for f in self._flights.values()]
        tasks += [f.task for f in self._streams.values() if f.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        await self.backend.aclose()


def _reraisable(error: BaseException) -> BaseException:
    """A producer's cancellation reaches readers as an Exception they can report."""
    if isinstance(error, asyncio.CancelledError):
        from blaze_ai.errors import UnavailableError

        return UnavailableError("the shared stream was cancelled")
    return error

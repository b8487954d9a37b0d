"""A request's life: its deadline, its client going away, and streams run in their own task.

- :func:`run_guarded` runs one awaitable until it finishes, the client
  disconnects (then it is cancelled, which aborts the generation in the engine:
  the cancellation convention of ``blaze_ai.engines``), or the deadline passes
  (cancelled too, then :class:`~blaze_ai.errors.TimedOutError`, HTTP 504).
- :class:`Pump` drives one or more engine streams, each in its own task,
  handing pieces over a queue. Reading is bounded by the stream's deadline
  (one timer for the whole stream, not one per piece), pieces already queued
  are taken without waiting, and closing the pump cancels the tasks, which
  closes the engine streams (``aclose``) so the engines stop spending compute
  on them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from starlette.requests import Request

from blaze_ai.errors import CancelledError, TimedOutError

T = TypeVar("T")

# Keep references to tasks being cancelled so they are not collected mid-cancel.
_closing: set[asyncio.Task[Any]] = set()


def deadline_in(timeout_s: float) -> float:
    """A ``time.monotonic()`` deadline ``timeout_s`` from now (queue time counts)."""
    return time.monotonic() + timeout_s


def remaining(deadline: float) -> float:
    """Seconds left before ``deadline``; raises TimedOutError when none are."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimedOutError("the request's deadline passed (server.request_timeout_s)")
    return left


async def wait_disconnect(request: Request) -> None:
    """Return when the client goes away (the body has been read by then)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def run_guarded(request: Request, work: Awaitable[T], deadline: float) -> T:
    """Await ``work``; cancel it if the client disconnects or the deadline passes."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(wait_disconnect(request))
    try:
        done, _ = await asyncio.wait(
            {task, watcher}, timeout=remaining(deadline), return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        watcher.cancel()
        if not task.done():
            _abandon(task)
    if task in done:
        return task.result()
    if watcher in done:
        raise CancelledError("the client disconnected")
    raise TimedOutError("the request's deadline passed (server.request_timeout_s)")


def _abandon(task: asyncio.Task[Any]) -> None:
    """Cancel a task we no longer wait for, keeping it referenced until it ends."""
    task.cancel()
    _closing.add(task)
    task.add_done_callback(_forget)


def _forget(task: asyncio.Task[Any]) -> None:
    _closing.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: an abandoned task's error is not worth a warning


_END = object()
_EXPIRED = (-1, _END, None)  # wakes a reader waiting on an empty queue when the deadline passes

#: Pieces a source may run ahead of the reader (a slow client's pieces then leave in one write).
_AHEAD = 64


class Pump:
    """Run streams in their own tasks; :meth:`next` and :meth:`ready` give ``(source index, piece)``."""

    def __init__(self, sources: list[AsyncIterator[Any]], deadline: float) -> None:
        self._queue: asyncio.Queue[tuple[int, Any, BaseException | None]] = asyncio.Queue(
            _AHEAD * len(sources)
        )
        self._open = len(sources)
        self._error: BaseException | None = None
        self._expired = False
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(loop.time() + (deadline - time.monotonic()), self._expire)
        self._tasks = [asyncio.create_task(self._run(i, s)) for i, s in enumerate(sources)]

    async def _run(self, index: int, source: AsyncIterator[Any]) -> None:
        try:
            async for piece in source:
                await self._queue.put((index, piece, None))
            await self._queue.put((index, _END, None))
        except Exception as exc:
            await self._queue.put((index, _END, exc))
        finally:
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                await aclose()

    def _expire(self) -> None:
        self._expired = True
        if self._queue.empty():  # a full queue has no reader waiting
            self._queue.put_nowait(_EXPIRED)

    async def next(self) -> tuple[int, Any] | None:
        """The next piece from any source, None when all have ended; raises their errors."""
        while True:
            if self._expired:
                raise TimedOutError("the request's deadline passed (server.request_timeout_s)")
            if self._error is not None:
                raise self._error
            if not self._open:
                return None
            queue = self._queue
            item = queue.get_nowait() if queue.qsize() else await queue.get()
            piece = self._take(item)
            if piece is not None:
                return piece

    def ready(self) -> list[tuple[int, Any]]:
        """The pieces already queued, without waiting; an error among them is raised by :meth:`next`."""
        pieces: list[tuple[int, Any]] = []
        queue = self._queue
        while queue.qsize() and self._error is None and not self._expired:
            piece = self._take(queue.get_nowait())
            if piece is not None:
                pieces.append(piece)
        return pieces

    def _take(self, item: tuple[int, Any, BaseException | None]) -> tuple[int, Any] | None:
        """The piece in ``item``, or None for an end, an error (kept for :meth:`next`) or a wake-up."""
        index, piece, error = item
        if piece is not _END:
            return index, piece
        if error is not None:
            self._error = error
        elif item is not _EXPIRED:
            self._open -= 1
        return None

    def close(self) -> None:
        """Cancel every source task and the deadline (synchronous, so it works in a cancelled scope)."""
        self._timer.cancel()
        for task in self._tasks:
            if not task.done():
                _abandon(task)

"""Where a request's step outputs wait for their reader on the event loop.

``LLMEngine`` hands each step's outputs to the event loop in one ``call_soon_threadsafe`` call
and puts each output into its request's sink (``put_nowait``, on the event loop):

- :class:`OutputStream` (a streamed request) wakes its reader at most once however many outputs
  arrive before the reader runs again, and :meth:`~OutputStream.deltas` hands over all of them
  merged per choice (:func:`~blaze_ai.engines.deltas.coalesce`), so a reader that fell behind
  pays one wake-up, and its consumers one piece, for several steps;
- :class:`Collector` (a whole request) keeps the deltas and wakes its caller once, at the end.
"""

from __future__ import annotations

import asyncio

from blaze_ai.engines.deltas import coalesce
from blaze_ai.engines.llm.sequence import StepOutput
from blaze_ai.engines.requests import StreamDelta
from blaze_ai.errors import BlazeError


class OutputStream:
    """A streamed request's outputs not yet taken; one reader at a time."""

    __slots__ = ("_error", "_loop", "_outputs", "_waiter", "ended")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._outputs: list[StepOutput] = []
        self._waiter: asyncio.Future[None] | None = None
        self._error: BlazeError | None = None
        self.ended = False  # the request's last output (or its failure) was taken

    @property
    def finished(self) -> bool:
        """Whether everything the request made, its failure included, was handed out."""
        return self.ended and self._error is None

    def put_nowait(self, output: StepOutput) -> None:
        """Keep one step's output; wake the reader if it is waiting (the first output since it slept)."""
        self._outputs.append(output)
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():  # done: the reader was cancelled
            waiter.set_result(None)

    async def deltas(self) -> list[StreamDelta]:
        """The deltas made since the last call, merged per choice; waits while there are none.

        A failure is raised by the call after the one that returns the deltas made before it.
        """
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        if not self._outputs:
            self._waiter = self._loop.create_future()
            await self._waiter
        outputs, self._outputs = self._outputs, []
        pieces: list[tuple[int, StreamDelta]] = []
        for output in outputs:
            self.ended = self.ended or output.finished
            if output.error is not None:
                self._error = output.error
                break
            if output.delta is not None:
                pieces.append((0, output.delta))
        if not pieces and self._error is not None:
            error, self._error = self._error, None
            raise error
        return [delta for _, delta in coalesce(pieces)]


class Collector:
    """Holds a whole request's deltas; ``done`` resolves once, when the request ends or fails."""

    __slots__ = ("deltas", "done", "finished")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.deltas: list[StreamDelta] = []
        self.done: asyncio.Future[list[StreamDelta]] = loop.create_future()
        self.finished = False

    def put_nowait(self, output: StepOutput) -> None:
        """Take one step's output (the same call as :meth:`OutputStream.put_nowait`)."""
        if self.done.done():  # the waiter was cancelled
            return
        self.finished = output.finished
        if output.error is not None:
            self.done.set_exception(output.error)
        else:
            if output.delta is not None:
                self.deltas.append(output.delta)
            if output.finished:
                self.done.set_result(self.deltas)

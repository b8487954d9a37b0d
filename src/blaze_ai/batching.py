"""Dynamic batching: gather single requests into batches for one synchronous model call.

A :class:`DynamicBatcher` takes items one at a time (``await submit(item)``),
groups those with the same ``key`` and hands each group to ``run_batch`` as one
list. A group runs when it is full (``max_batch_size``) or when its FIRST
queued item has waited ``max_wait_s``, whichever comes first; the wait is
counted from when that item was queued, not from when the collector looks, so
items that queued up behind a long batch run as soon as it finishes.

``run_batch`` is synchronous (a model forward pass) and runs in a worker thread,
one batch at a time, so the event loop stays free. It must return exactly one
output per input, in order. The batcher imports neither torch nor HTTP code.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from blaze_ai.compute import run_in_thread
from blaze_ai.errors import (
    BlazeError,
    EngineFailureError,
    OverloadedError,
    TimedOutError,
    UnavailableError,
)

_RECHECK_S = 0.05  # longest real sleep between looks at the clock while items wait

I = TypeVar("I")  # noqa: E741 - the conventional name for an input type
O = TypeVar("O")  # noqa: E741


@dataclass(slots=True, eq=False)  # identity equality: items may be arrays
class _Pending(Generic[I, O]):
    """One queued item and the future its submitter awaits."""

    item: I
    key: Hashable
    future: asyncio.Future[O]
    queued_at: float
    deadline: float | None


@dataclass(slots=True)
class _Stats:
    batches: int = 0
    items: int = 0
    last_batch_size: int = 0
    histogram: Counter[int] = field(default_factory=Counter)
    wait_total_s: float = 0.0
    wait_max_s: float = 0.0
    run_total_s: float = 0.0
    rejected: int = 0
    timed_out: int = 0
    cancelled: int = 0
    failed_batches: int = 0


class DynamicBatcher(Generic[I, O]):
    """Batch items submitted one at a time into calls of ``run_batch``.

    Example::

        batcher = DynamicBatcher(lambda xs: [x * 2 for x in xs], max_batch_size=8)
        await batcher.start()
        assert await batcher.submit(21) == 42
        await batcher.stop()

    Errors: a full queue raises :class:`OverloadedError` at once; an item whose
    deadline (on ``clock``) passed before its batch ran fails with
    :class:`TimedOutError`; an exception in ``run_batch`` fails every item of
    that batch with :class:`EngineFailureError` (a :class:`BlazeError` raised on
    purpose by ``run_batch`` is passed through unchanged), and so does a result
    list of the wrong length. ``submit`` before ``start`` or after ``stop``
    raises :class:`UnavailableError`.
    """

    def __init__(
        self,
        run_batch: Callable[[list[I]], list[O]],
        *,
        max_batch_size: int = 8,
        max_wait_s: float = 0.01,
        max_queue: int = 256,
        key: Callable[[I], Hashable] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        if max_wait_s < 0:
            raise ValueError("max_wait_s must be 0 (no waiting) or positive")
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        self._run_batch = run_batch
        self._max_batch_size = max_batch_size
        self._max_wait_s = max_wait_s
        self._max_queue = max_queue
        self._key = key
        self._clock = clock
        self._groups: dict[Hashable, deque[_Pending[I, O]]] = {}
        self._queued = 0
        self._running = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._drain = False
        self._stats = _Stats()

    # -- lifecycle ---------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the batcher takes items (started and not stopping)."""
        return self._task is not None and not self._stopping

    async def start(self) -> None:
        """Start the collector task; calling it twice is harmless."""
        if self._task is not None and not self._task.done():
            return
        self._stopping = False
        self._drain = False
        self._wakeup = asyncio.Event()
        self._task = asyncio.create_task(self._collect(), name="dynamic-batcher")

    async def stop(self, *, drain: bool = False) -> None:
        """Stop taking items and wait for the running batch to finish.

        With ``drain`` the queued items still run; without it they fail with
        :class:`UnavailableError`.
        """
        task = self._task
        if task is None:
            return
        self._stopping = True
        self._drain = drain
        if not drain:
            self._fail_all_queued(UnavailableError("the batcher was stopped before this item ran"))
        self._wakeup.set()
        await task
        self._task = None

    # -- submitting --------------------------------------------------------

    async def submit(self, item: I, *, deadline: float | None = None) -> O:
        """Queue ``item`` and wait for its output.

        ``deadline`` is an instant on the batcher's clock (``time.monotonic``
        by default). Cancelling the waiting task removes the item from the
        queue if its batch has not started; a started batch is not interrupted.
        """
        if not self.running:
            raise UnavailableError("the batcher is not running; call start() first")
        if self._queued >= self._max_queue:
            self._stats.rejected += 1
            raise OverloadedError(
                f"the batch queue is full ({self._max_queue} items); retry later",
                retry_after=self._retry_after(),
            )
        key = self._key(item) if self._key is not None else None
        pending: _Pending[I, O] = _Pending(
            item, key, asyncio.get_running_loop().create_future(), self._clock(), deadline
        )
        self._groups.setdefault(key, deque()).append(pending)
        self._queued += 1
        self._wakeup.set()
        try:
            return await pending.future
        except asyncio.CancelledError:
            if self._remove(pending):
                self._stats.cancelled += 1
            raise

    # -- statistics --------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Plain counters for metrics: queue, batch sizes and waits."""
        s = self._stats
        return {
            "queued": self._queued,
            "running": self._running,
            "batches": s.batches,
            "items": s.items,
            "mean_batch_size": s.items / s.batches if s.batches else 0.0,
            "last_batch_size": s.last_batch_size,
            "batch_size_histogram": dict(sorted(s.histogram.items())),
            "mean_queue_wait_s": s.wait_total_s / s.items if s.items else 0.0,
            "max_queue_wait_s": s.wait_max_s,
            "mean_batch_run_s": s.run_total_s / s.batches if s.batches else 0.0,
            "rejected": s.rejected,
            "timed_out": s.timed_out,
            "cancelled": s.cancelled,
            "failed_batches": s.failed_batches,
            "max_batch_size": self._max_batch_size,
            "max_wait_s": self._max_wait_s,
            "max_queue": self._max_queue,
        }

    # -- the collector -----------------------------------------------------

    async def _collect(self) -> None:
        while True:
            # 1) pick a group that is full or whose first item waited long enough
            self._wakeup.clear()
            if self._stopping and (not self._drain or self._queued == 0):
                return
            ready, wait_s = self._pick_ready()
            if not ready:
                await self._sleep(wait_s)
                continue
            # 2) take at most one batch from it, dropping expired items
            batch = self._take(ready[0])
            # 3) run it in a worker thread and deliver the outputs
            if batch:
                await self._run(batch)

    def _pick_ready(self) -> tuple[tuple[Hashable, ...], float | None]:
        """``((key,), None)`` for the ready group with the oldest head, else ``((), seconds until due)``.

        Keys may be ``None`` (no key function), hence the tuple.
        """
        now = self._clock()
        ready: list[tuple[float, Hashable]] = []
        earliest_due: float | None = None
        for key, group in self._groups.items():
            head = group[0].queued_at
            due = head + self._max_wait_s
            if len(group) >= self._max_batch_size or due <= now or self._stopping:
                ready.append((head, key))
            elif earliest_due is None or due < earliest_due:
                earliest_due = due
        if ready:
            return (min(ready, key=lambda pair: pair[0])[1],), None
        if earliest_due is None:
            return (), None
        return (), earliest_due - now

    async def _sleep(self, wait_s: float | None) -> None:
        """Sleep until an item arrives or ``wait_s`` passes (never longer than max wait)."""
        if wait_s is not None:
            # The clock may be injected (and moved by hand in tests): re-check now and then.
            wait_s = min(max(wait_s, 0.001), _RECHECK_S)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout=wait_s)

    def _take(self, key: Hashable) -> list[_Pending[I, O]]:
        group = self._groups[key]
        now = self._clock()
        batch: list[_Pending[I, O]] = []
        while group and len(batch) < self._max_batch_size:
            pending = group.popleft()
            self._queued -= 1
            if pending.future.done():
                continue
            if pending.deadline is not None and pending.deadline <= now:
                self._stats.timed_out += 1
                pending.future.set_exception(TimedOutError("the deadline passed while the item was queued"))
                continue
            batch.append(pending)
        if not group:
            del self._groups[key]
        return batch

    async def _run(self, batch: list[_Pending[I, O]]) -> None:
        self._record_start(batch)
        started = self._clock()
        self._running = len(batch)
        try:
            outputs = await run_in_thread(self._run_batch, [p.item for p in batch])
        except Exception as exc:
            self._fail_batch(batch, f"the batch of {len(batch)} failed: {exc!r}", exc)
            return
        finally:
            self._running = 0
            self._stats.run_total_s += self._clock() - started
        if not isinstance(outputs, list) or len(outputs) != len(batch):
            got = len(outputs) if isinstance(outputs, list) else type(outputs).__name__
            self._fail_batch(batch, f"run_batch returned {got} outputs for {len(batch)} inputs", None)
            return
        for pending, output in zip(batch, outputs, strict=True):
            if not pending.future.done():
                pending.future.set_result(output)

    # -- helpers -----------------------------------------------------------

    def _record_start(self, batch: list[_Pending[I, O]]) -> None:
        now = self._clock()
        s = self._stats
        s.batches += 1
        s.items += len(batch)
        s.last_batch_size = len(batch)
        s.histogram[len(batch)] += 1
        for pending in batch:
            waited = max(0.0, now - pending.queued_at)
            s.wait_total_s += waited
            s.wait_max_s = max(s.wait_max_s, waited)

    def _fail_batch(self, batch: list[_Pending[I, O]], message: str, cause: Exception | None) -> None:
        """Fail every waiting item: a BlazeError passes through, anything else becomes EngineFailureError."""
        self._stats.failed_batches += 1
        for pending in batch:
            if pending.future.done():
                continue
            if isinstance(cause, BlazeError):
                pending.future.set_exception(cause)
            else:  # one exception object per item: each waiting task gets its own traceback
                error = EngineFailureError(message)
                error.__cause__ = cause
                pending.future.set_exception(error)

    def _fail_all_queued(self, error: BlazeError) -> None:
        for group in self._groups.values():
            for pending in group:
                if not pending.future.done():
                    pending.future.set_exception(error)
        self._groups.clear()
        self._queued = 0

    def _remove(self, pending: _Pending[I, O]) -> bool:
        group = self._groups.get(pending.key)
        if group is None or not any(p is pending for p in group):
            return False
        group.remove(pending)
        self._queued -= 1
        if not group:
            del self._groups[pending.key]
        return True

    def _retry_after(self) -> float:
        """A rough time until the queue has room: the batches ahead times the mean batch time."""
        s = self._stats
        mean_run = s.run_total_s / s.batches if s.batches else self._max_wait_s
        batches_ahead = self._queued / self._max_batch_size
        return max(0.1, round(batches_ahead * mean_run, 3))

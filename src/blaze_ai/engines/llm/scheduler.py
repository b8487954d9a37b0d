"""Admission for continuous batching: a bounded priority queue and a token budget.

The scheduler knows nothing about models: it sees requests as a row count
(``n`` sequences), a token cost (``n * (prompt + max_tokens)``), a priority
and a deadline. Each engine step asks :meth:`Scheduler.schedule` which waiting
requests join the running batch and which expired in the queue.

Rules:

- ``add`` refuses at once with :class:`OverloadedError` when the queue holds
  ``max_queued_requests``; a request that could never fit the batch
  (``n > max_batch_size`` or cost over ``max_tokens_in_flight``) is a
  :class:`BadRequestError`.
- The queue is ordered by priority (lower first), then arrival.
- Admission takes requests from the head while the running rows stay within
  ``max_batch_size`` and the running token cost within ``max_tokens_in_flight``;
  it stops at the first head that does not fit, so a large request is never
  starved by smaller ones behind it.
- A queued request whose deadline passed is returned in ``expired``.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from blaze_ai.errors import BadRequestError, OverloadedError


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """Limits of one engine's queue and running batch."""

    max_batch_size: int = 32
    max_tokens_in_flight: int = 65536
    max_queued_requests: int = 256

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1 (rows decoded together)")
        if self.max_tokens_in_flight < 1:
            raise ValueError("max_tokens_in_flight must be at least 1 (prompt + new tokens of running rows)")
        if self.max_queued_requests < 0:
            raise ValueError("max_queued_requests must be 0 or more (0: no queue, admit only)")


@dataclass(slots=True)
class Ticket:
    """What the scheduler knows of one request."""

    request_id: str
    prompt_tokens: int
    max_tokens: int
    n: int = 1
    priority: int = 0
    arrival: float = 0.0
    deadline: float | None = None

    @property
    def cost(self) -> int:
        """Tokens this request may hold in the KV cache at its longest."""
        return self.n * (self.prompt_tokens + self.max_tokens)


@dataclass(slots=True)
class Decision:
    """The outcome of one :meth:`Scheduler.schedule` call."""

    admitted: list[Ticket] = field(default_factory=list)
    expired: list[Ticket] = field(default_factory=list)


class Scheduler:
    """Bounded priority queue plus the running set, with a row and token budget."""

    def __init__(self, config: SchedulerConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._heap: list[tuple[int, float, int, Ticket]] = []
        self._queued: dict[str, Ticket] = {}
        self._running: dict[str, Ticket] = {}
        self._order = itertools.count()
        self._rows = 0
        self._tokens = 0

    @property
    def waiting(self) -> int:
        """Requests in the queue."""
        return len(self._queued)

    @property
    def running(self) -> int:
        """Requests admitted and not yet finished."""
        return len(self._running)

    @property
    def running_rows(self) -> int:
        """Sequences (rows) admitted: a request with ``n`` choices holds ``n``."""
        return self._rows

    @property
    def tokens_in_flight(self) -> int:
        """Token budget held by running requests."""
        return self._tokens

    def add(self, ticket: Ticket) -> None:
        """Queue a request, or refuse it at once."""
        cfg = self.config
        if ticket.request_id in self._queued or ticket.request_id in self._running:
            raise BadRequestError(f"request id {ticket.request_id!r} is already in use")
        if ticket.n > cfg.max_batch_size:
            raise BadRequestError(f"n={ticket.n} exceeds this model's max_batch_size {cfg.max_batch_size}")
        if ticket.cost > cfg.max_tokens_in_flight:
            raise BadRequestError(
                f"the request needs {ticket.cost} tokens (n x (prompt + max_tokens)) but the model allows "
                f"{cfg.max_tokens_in_flight} in flight; lower max_tokens or n"
            )
        if len(self._queued) >= cfg.max_queued_requests and not self._fits_now(ticket):
            raise OverloadedError(f"queue full ({cfg.max_queued_requests} waiting); retry later")
        self._queued[ticket.request_id] = ticket
        heapq.heappush(self._heap, (ticket.priority, ticket.arrival, next(self._order), ticket))

    def _fits_now(self, ticket: Ticket) -> bool:
        # With an empty queue a request that fits the batch now never waits, even if max_queued_requests is 0.
        return not self._queued and self._fits(ticket)

    def _fits(self, ticket: Ticket) -> bool:
        cfg = self.config
        rows_ok = self._rows + ticket.n <= cfg.max_batch_size
        return rows_ok and self._tokens + ticket.cost <= cfg.max_tokens_in_flight

    def schedule(self) -> Decision:
        """Drop expired queued requests, then admit from the head while the budget allows."""
        decision = Decision()
        now = self._clock()
        for ticket in list(self._queued.values()):
            if ticket.deadline is not None and ticket.deadline <= now:
                del self._queued[ticket.request_id]
                decision.expired.append(ticket)
        while self._heap:
            ticket = self._heap[0][3]
            if self._queued.get(ticket.request_id) is not ticket:
                heapq.heappop(self._heap)  # aborted or expired: dropped lazily
                continue
            if not self._fits(ticket):
                break
            heapq.heappop(self._heap)
            del self._queued[ticket.request_id]
            self._running[ticket.request_id] = ticket
            self._rows += ticket.n
            self._tokens += ticket.cost
            decision.admitted.append(ticket)
        return decision

    def finish(self, request_id: str) -> None:
        """Release the budget of a running request (finished, failed or aborted)."""
        ticket = self._running.pop(request_id, None)
        if ticket is not None:
            self._rows -= ticket.n
            self._tokens -= ticket.cost

    def abort(self, request_id: str) -> bool:
        """Remove a request wherever it is; return whether it was known."""
        if self._queued.pop(request_id, None) is not None:
            return True
        known = request_id in self._running
        self.finish(request_id)
        return known

"""The scheduler without a model: queue bound, priority, budgets, deadlines, abort."""

from __future__ import annotations

import pytest

from blaze_ai.engines.llm.scheduler import Scheduler, SchedulerConfig, Ticket
from blaze_ai.errors import BadRequestError, OverloadedError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_requests(n: int, tokens: int, *, max_tokens: int = 8, prefix: str = "r") -> list[Ticket]:
    """``n`` tickets of ``tokens`` prompt tokens each, arriving in order."""
    return [Ticket(f"{prefix}{i}", tokens, max_tokens, arrival=float(i)) for i in range(n)]


def make_scheduler(batch: int = 4, tokens: int = 1000, queue: int = 10) -> tuple[Scheduler, Clock]:
    clock = Clock()
    return Scheduler(SchedulerConfig(batch, tokens, queue), clock=clock), clock


def ids(tickets: list[Ticket]) -> list[str]:
    return [t.request_id for t in tickets]


def test_admits_up_to_the_batch_size_in_arrival_order() -> None:
    sched, _ = make_scheduler(batch=3)
    for t in make_requests(5, 4):
        sched.add(t)
    assert ids(sched.schedule().admitted) == ["r0", "r1", "r2"]
    assert (sched.running, sched.waiting) == (3, 2)
    assert sched.schedule().admitted == []
    sched.finish("r1")
    assert ids(sched.schedule().admitted) == ["r3"]


def test_token_budget_limits_admission() -> None:
    sched, _ = make_scheduler(batch=10, tokens=50)
    for t in make_requests(4, 12, max_tokens=8):  # 20 tokens each
        sched.add(t)
    assert ids(sched.schedule().admitted) == ["r0", "r1"]
    assert sched.tokens_in_flight == 40
    sched.finish("r0")
    assert ids(sched.schedule().admitted) == ["r2"]


def test_n_counts_rows_and_tokens() -> None:
    sched, _ = make_scheduler(batch=4, tokens=1000)
    sched.add(Ticket("wide", 5, 5, n=3))
    sched.add(Ticket("next", 5, 5, n=2, arrival=1.0))
    assert ids(sched.schedule().admitted) == ["wide"]
    assert (sched.running_rows, sched.tokens_in_flight) == (3, 30)


def test_priority_lower_first_then_arrival() -> None:
    sched, _ = make_scheduler(batch=1)
    sched.add(Ticket("late-low", 1, 1, priority=5, arrival=0.0))
    sched.add(Ticket("urgent-2", 1, 1, priority=0, arrival=2.0))
    sched.add(Ticket("urgent-1", 1, 1, priority=0, arrival=1.0))
    order = []
    for _ in range(3):
        admitted = sched.schedule().admitted
        order += ids(admitted)
        sched.finish(admitted[0].request_id)
    assert order == ["urgent-1", "urgent-2", "late-low"]


def test_head_that_does_not_fit_is_not_overtaken() -> None:
    sched, _ = make_scheduler(batch=4, tokens=100)
    sched.add(Ticket("a", 30, 10))
    assert ids(sched.schedule().admitted) == ["a"]
    sched.add(Ticket("big", 60, 10, arrival=1.0))
    sched.add(Ticket("small", 1, 1, arrival=2.0))
    assert sched.schedule().admitted == []  # big waits for room; small does not jump it
    sched.finish("a")
    assert ids(sched.schedule().admitted) == ["big", "small"]


def test_full_queue_is_refused_at_once() -> None:
    sched, _ = make_scheduler(batch=1, queue=2)
    first, *rest = make_requests(3, 2)
    sched.add(first)
    sched.schedule()  # r0 runs
    for t in rest:  # r1 and r2 wait
        sched.add(t)
    with pytest.raises(OverloadedError):
        sched.add(Ticket("extra", 2, 2))
    assert sched.waiting == 2


def test_zero_queue_still_admits_into_free_batch() -> None:
    sched, _ = make_scheduler(batch=1, queue=0)
    sched.add(Ticket("a", 2, 2))
    assert ids(sched.schedule().admitted) == ["a"]
    with pytest.raises(OverloadedError):
        sched.add(Ticket("b", 2, 2))


def test_requests_that_can_never_fit_are_bad_requests() -> None:
    sched, _ = make_scheduler(batch=2, tokens=20)
    with pytest.raises(BadRequestError, match="max_batch_size"):
        sched.add(Ticket("wide", 1, 1, n=3))
    with pytest.raises(BadRequestError, match="in flight"):
        sched.add(Ticket("long", 15, 10))
    sched.add(Ticket("dup", 1, 1))
    with pytest.raises(BadRequestError, match="already in use"):
        sched.add(Ticket("dup", 1, 1))


def test_queued_requests_past_their_deadline_expire() -> None:
    sched, clock = make_scheduler(batch=1)
    sched.add(Ticket("running", 1, 1, deadline=101.0))
    sched.schedule()
    sched.add(Ticket("patient", 1, 1, arrival=1.0, deadline=200.0))
    sched.add(Ticket("hurried", 1, 1, arrival=2.0, deadline=101.0))
    clock.now = 101.0
    decision = sched.schedule()
    assert ids(decision.expired) == ["hurried"]  # a running request is not expired by the queue
    assert sched.waiting == 1
    sched.finish("running")
    assert ids(sched.schedule().admitted) == ["patient"]


def test_abort_removes_queued_and_running_requests() -> None:
    sched, _ = make_scheduler(batch=1)
    for t in make_requests(3, 2):
        sched.add(t)
    sched.schedule()
    assert sched.abort("r1") is True
    assert sched.abort("r0") is True
    assert sched.abort("nope") is False
    assert (sched.running, sched.running_rows, sched.tokens_in_flight) == (0, 0, 0)
    assert ids(sched.schedule().admitted) == ["r2"]


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [({"max_batch_size": 0}, "max_batch_size"), ({"max_tokens_in_flight": 0}, "max_tokens_in_flight")],
)
def test_config_is_validated(kwargs: dict[str, int], word: str) -> None:
    with pytest.raises(ValueError, match=word):
        SchedulerConfig(**kwargs)

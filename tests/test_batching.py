"""DynamicBatcher: batching rules, errors and cancellation, with an injected clock and no model."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blaze_ai.batching import DynamicBatcher
from blaze_ai.errors import (
    BadRequestError,
    EngineFailureError,
    OverloadedError,
    TimedOutError,
    UnavailableError,
)


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """A run_batch that doubles numbers and remembers each batch it saw."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.threads: set[int] = set()

    def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        self.threads.add(threading.get_ident())
        return [x * 2 for x in items]


async def settle(rounds: int = 20) -> None:
    """Let the collector and worker threads make progress (no assertion on time)."""
    for _ in range(rounds):
        await asyncio.sleep(0.005)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def make(clock: FakeClock) -> AsyncIterator[Callable[..., DynamicBatcher[int, int]]]:
    made: list[DynamicBatcher[int, int]] = []

    def factory(run: Callable[[list[int]], list[int]], **kwargs: object) -> DynamicBatcher[int, int]:
        kwargs.setdefault("clock", clock)
        batcher: DynamicBatcher[int, int] = DynamicBatcher(run, **kwargs)  # type: ignore[arg-type]
        made.append(batcher)
        return batcher

    yield factory
    for batcher in made:
        await batcher.stop()


async def test_full_batch_runs_at_once_in_a_worker_thread(make, clock) -> None:
    run = Recorder()
    batcher = make(run, max_batch_size=4, max_wait_s=1.0)
    await batcher.start()
    # The clock never moves, so only fullness can release these.
    results = await asyncio.wait_for(asyncio.gather(*(batcher.submit(i) for i in range(4))), 5)
    assert results == [0, 2, 4, 6]
    assert run.batches == [[0, 1, 2, 3]]
    assert threading.get_ident() not in run.threads


async def test_partial_batch_waits_for_the_clock(make, clock) -> None:
    run = Recorder()
    batcher = make(run, max_batch_size=8, max_wait_s=1.0)
    await batcher.start()
    tasks = [asyncio.create_task(batcher.submit(i)) for i in range(3)]
    await settle()
    assert run.batches == []  # frozen clock: the max wait has not passed
    assert batcher.stats()["queued"] == 3
    clock.now = 1.0
    assert await asyncio.wait_for(asyncio.gather(*tasks), 5) == [0, 2, 4]
    assert run.batches == [[0, 1, 2]]


async def test_max_wait_counts_from_the_first_queued_item(make, clock) -> None:
    run = Recorder()
    batcher = make(run, max_batch_size=8, max_wait_s=1.0)
    await batcher.start()
    first = asyncio.create_task(batcher.submit(1))
    await settle(2)
    clock.now = 0.6
    second = asyncio.create_task(batcher.submit(2))
    await settle()
    assert run.batches == []
    clock.now = 1.0  # the second item waited only 0.4 s, but the batch is due
    assert await asyncio.wait_for(asyncio.gather(first, second), 5) == [2, 4]
    assert run.batches == [[1, 2]]


async def test_items_queued_behind_a_long_batch_run_right_after_it(make, clock) -> None:
    release = threading.Event()
    seen: list[list[int]] = []

    def slow(items: list[int]) -> list[int]:
        seen.append(list(items))
        if items == [0]:
            release.wait(5)
        return items

    batcher = make(slow, max_batch_size=8, max_wait_s=1.0)
    await batcher.start()
    blocker = asyncio.create_task(batcher.submit(0))
    await settle(2)
    clock.now = 1.0
    await settle()
    assert seen == [[0]]  # the first batch is running and blocked
    clock.now = 2.0
    late = asyncio.create_task(batcher.submit(7))  # queued at t=2 while the batch runs
    await settle()
    clock.now = 3.0  # frozen from here on: 7 is due (queued at 2, wait 1) when the batch ends
    release.set()
    assert await asyncio.wait_for(asyncio.gather(blocker, late), 5) == [0, 7]
    assert seen == [[0], [7]]
    assert batcher.stats()["max_queue_wait_s"] >= 1.0


async def test_items_with_different_keys_never_share_a_batch(clock) -> None:
    seen: list[list[str]] = []

    def run(items: list[str]) -> list[str]:
        seen.append(list(items))
        return [s.upper() for s in items]

    batcher: DynamicBatcher[str, str] = DynamicBatcher(
        run, max_batch_size=8, max_wait_s=1.0, key=len, clock=clock
    )
    await batcher.start()
    try:
        tasks = [asyncio.create_task(batcher.submit(s)) for s in ["ab", "abc", "cd", "xyz", "q"]]
        await settle(2)
        clock.now = 1.0
        assert await asyncio.wait_for(asyncio.gather(*tasks), 5) == ["AB", "ABC", "CD", "XYZ", "Q"]
    finally:
        await batcher.stop()
    assert sorted(seen) == [["ab", "cd"], ["abc", "xyz"], ["q"]]


async def test_a_full_queue_rejects_at_once(make, clock) -> None:
    batcher = make(Recorder(), max_batch_size=8, max_wait_s=1.0, max_queue=2)
    await batcher.start()
    tasks = [asyncio.create_task(batcher.submit(i)) for i in range(2)]
    await settle(2)
    with pytest.raises(OverloadedError) as info:
        await batcher.submit(3)
    assert info.value.retry_after > 0
    assert batcher.stats()["rejected"] == 1
    clock.now = 1.0
    assert await asyncio.wait_for(asyncio.gather(*tasks), 5) == [0, 2]


async def test_a_wrong_result_count_fails_every_item(make, clock) -> None:
    batcher = make(lambda items: items[:-1], max_batch_size=3, max_wait_s=1.0)
    await batcher.start()
    results = await asyncio.wait_for(
        asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True), 5
    )
    assert all(isinstance(r, EngineFailureError) for r in results)
    assert "2 outputs for 3" in str(results[0])


async def test_an_exception_fails_the_batch_but_not_the_batcher(make, clock) -> None:
    def run(items: list[int]) -> list[int]:
        if 13 in items:
            raise RuntimeError("unlucky")
        return items

    batcher = make(run, max_batch_size=2, max_wait_s=1.0)
    await batcher.start()
    results = await asyncio.wait_for(
        asyncio.gather(batcher.submit(13), batcher.submit(1), return_exceptions=True), 5
    )
    for r in results:
        assert isinstance(r, EngineFailureError)
        assert isinstance(r.__cause__, RuntimeError)
    assert results[0] is not results[1]
    assert await asyncio.wait_for(asyncio.gather(batcher.submit(4), batcher.submit(5)), 5) == [4, 5]
    assert batcher.stats()["failed_batches"] == 1


async def test_a_blaze_error_from_run_batch_passes_through(make, clock) -> None:
    def run(items: list[int]) -> list[int]:
        raise BadRequestError("input too long")

    batcher = make(run, max_batch_size=1, max_wait_s=1.0)
    await batcher.start()
    with pytest.raises(BadRequestError, match="too long"):
        await asyncio.wait_for(batcher.submit(1), 5)


async def test_a_cancelled_item_leaves_the_queue(make, clock) -> None:
    run = Recorder()
    batcher = make(run, max_batch_size=8, max_wait_s=1.0)
    await batcher.start()
    kept = asyncio.create_task(batcher.submit(1))
    gone = asyncio.create_task(batcher.submit(2))
    await settle(2)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert batcher.stats()["queued"] == 1
    assert batcher.stats()["cancelled"] == 1
    clock.now = 1.0
    assert await asyncio.wait_for(kept, 5) == 2
    assert run.batches == [[1]]


async def test_an_expired_deadline_fails_before_running(make, clock) -> None:
    run = Recorder()
    batcher = make(run, max_batch_size=8, max_wait_s=1.0)
    await batcher.start()
    late = asyncio.create_task(batcher.submit(1, deadline=0.5))
    fine = asyncio.create_task(batcher.submit(2, deadline=10.0))
    await settle(2)
    clock.now = 1.0
    with pytest.raises(TimedOutError):
        await asyncio.wait_for(late, 5)
    assert await asyncio.wait_for(fine, 5) == 4
    assert run.batches == [[2]]
    assert batcher.stats()["timed_out"] == 1


async def test_stats_count_batches_and_sizes(make, clock) -> None:
    batcher = make(Recorder(), max_batch_size=2, max_wait_s=1.0)
    await batcher.start()
    await asyncio.wait_for(asyncio.gather(*(batcher.submit(i) for i in range(4))), 5)
    single = asyncio.create_task(batcher.submit(9))
    await settle(2)
    clock.now = 2.0
    await asyncio.wait_for(single, 5)
    stats = batcher.stats()
    assert stats["batches"] == 3
    assert stats["items"] == 5
    assert stats["batch_size_histogram"] == {1: 1, 2: 2}
    assert stats["last_batch_size"] == 1
    assert stats["mean_batch_size"] == pytest.approx(5 / 3)
    assert stats["max_queue_wait_s"] == pytest.approx(2.0)
    assert stats["queued"] == 0


async def test_stop_fails_queued_items_and_drain_runs_them(make, clock) -> None:
    run = Recorder()
    batcher = make(run, max_batch_size=8, max_wait_s=1.0)
    await batcher.start()
    dropped = asyncio.create_task(batcher.submit(1))
    await settle(2)
    await batcher.stop()
    with pytest.raises(UnavailableError):
        await dropped
    with pytest.raises(UnavailableError):
        await batcher.submit(2)

    await batcher.start()
    kept = asyncio.create_task(batcher.submit(3))
    await settle(2)
    await asyncio.wait_for(batcher.stop(drain=True), 5)
    assert await kept == 6
    assert run.batches == [[3]]


async def test_submit_before_start_is_refused(make) -> None:
    with pytest.raises(UnavailableError, match="start"):
        await make(Recorder()).submit(1)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_batch_size"):
        DynamicBatcher(Recorder(), max_batch_size=0)
    with pytest.raises(ValueError, match="max_wait_s"):
        DynamicBatcher(Recorder(), max_wait_s=-1)
    with pytest.raises(ValueError, match="max_queue"):
        DynamicBatcher(Recorder(), max_queue=0)


@settings(max_examples=25, deadline=None)
@given(
    keys=st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=40),
    max_batch_size=st.integers(min_value=1, max_value=6),
)
def test_every_item_gets_its_own_output_in_batches_of_one_key(keys: list[int], max_batch_size: int) -> None:
    seen: list[list[tuple[int, int]]] = []

    def run(items: list[tuple[int, int]]) -> list[int]:
        seen.append(list(items))
        return [index for _, index in items]

    async def scenario() -> list[int]:
        batcher: DynamicBatcher[tuple[int, int], int] = DynamicBatcher(
            run, max_batch_size=max_batch_size, max_wait_s=0.001, key=lambda item: item[0]
        )
        await batcher.start()
        try:
            return await asyncio.wait_for(
                asyncio.gather(*(batcher.submit((k, i)) for i, k in enumerate(keys))), 10
            )
        finally:
            await batcher.stop()

    assert asyncio.run(scenario()) == list(range(len(keys)))
    for batch in seen:
        assert 1 <= len(batch) <= max_batch_size
        assert len({k for k, _ in batch}) == 1
    assert sorted(i for batch in seen for _, i in batch) == list(range(len(keys)))

"""``run_in_thread``: blocking work in a thread of its own, which has ended by the time the result is back."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from blaze_ai.compute import run_in_thread

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


async def test_each_call_runs_in_a_new_thread_that_ends_with_it() -> None:
    threads = [await run_in_thread(threading.current_thread) for _ in range(3)]
    assert len(set(threads)) == 3  # three Thread objects (an ended thread's ident may be reused)
    assert threading.current_thread() not in threads
    for thread in threads:
        thread.join(timeout=5)  # it only had to hand the result back
        assert not thread.is_alive()


async def test_arguments_results_and_context_variables_pass_through() -> None:
    request_id.set("req-7")

    def work(a: int, *, b: int) -> tuple[int, str]:
        return a + b, request_id.get()

    assert await run_in_thread(work, 2, b=3) == (5, "req-7")


async def test_an_exception_reaches_the_caller() -> None:
    def fail() -> None:
        raise ValueError("bad batch")

    with pytest.raises(ValueError, match="bad batch"):
        await run_in_thread(fail)


async def test_a_cancelled_caller_does_not_break_the_loop_when_the_work_ends() -> None:
    release = threading.Event()
    task = asyncio.create_task(run_in_thread(release.wait, 5))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()  # the work finishes after its caller left; its result is dropped
    assert await run_in_thread(lambda: "still fine") == "still fine"

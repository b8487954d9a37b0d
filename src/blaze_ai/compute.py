"""Blocking torch work off the event loop, in a thread that ends when the work does.

PyTorch's CPU builds run their parallel regions on libgomp, which keeps a pool of OpenMP
worker threads for every thread that ever ran one, for as long as that thread lives. Once the
pools' threads outnumber the cores, libgomp makes every worker spin only briefly before it
sleeps, so each parallel region (every elementwise op of a forward pass) pays a futex wake-up.
asyncio's default executor keeps its threads, so work sent there with ``asyncio.to_thread``
leaves a pool behind. Measured on this project's 2-core CPU (SmolLM2, one decode step of 64
rows, on the engine thread): 122 ms alone; 165 ms after another live thread had run a
forward pass; 117 ms instead of 66 ms with int8-dynamic weights quantized on an executor
thread. :func:`run_in_thread` runs each call in a thread of its own, so the pool goes with it
and the LLM engine's step thread stays the only long-lived one.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


async def run_in_thread(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``await fn(*args, **kwargs)`` run in a new thread (with the caller's context variables).

    Like :func:`asyncio.to_thread`, cancelling the caller does not stop ``fn``; its result is
    then dropped.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():  # the caller was cancelled
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]  # None only with an error

    def target() -> None:
        try:
            result: T | None = context.run(fn, *args, **kwargs)
            error: BaseException | None = None
        except BaseException as exc:  # handed to the awaiting task, like to_thread does
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody is waiting
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(
        target=target, name=f"blaze-compute-{getattr(fn, '__name__', 'fn')}", daemon=True
    ).start()
    return await future

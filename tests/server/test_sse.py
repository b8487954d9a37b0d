"""SSE templates render the same bytes as encoding the whole event; the pump batches and keeps a deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from blaze_ai.errors import EngineFailureError, TimedOutError
from blaze_ai.server.lifecycle import Pump
from blaze_ai.server.sse import Template, event, hole


def chunk(index: Any, text: Any, reason: Any) -> dict[str, Any]:
    choice = {"index": index, "text": text, "finish_reason": reason, "logprobs": None}
    return {"id": "cmpl-1", "object": "text_completion", "created": 7, "model": "m", "choices": [choice]}


@given(st.integers(0, 10**6), st.text(), st.sampled_from([None, "stop", "length"]))
def test_template_renders_exactly_the_encoded_event(index: int, text: str, reason: str | None) -> None:
    template = Template(chunk(hole(0), hole(1), hole(2)), 3)
    assert template.render(index, text, reason) == event(chunk(index, text, reason))


def test_a_missing_hole_is_refused() -> None:
    with pytest.raises(ValueError, match="hole"):
        Template(chunk(hole(1), hole(0), None), 2)


async def source(items: list[Any], fail: BaseException | None = None) -> AsyncIterator[Any]:
    for item in items:
        yield item
    if fail is not None:
        raise fail


async def test_ready_gives_what_is_queued_and_an_error_comes_after_the_pieces() -> None:
    pump = Pump([source([1, 2, 3], EngineFailureError("boom"))], time.monotonic() + 60)
    try:
        assert await pump.next() == (0, 1)
        await asyncio.sleep(0)  # let the source task run ahead
        assert pump.ready() == [(0, 2), (0, 3)]
        with pytest.raises(EngineFailureError):
            await pump.next()
    finally:
        pump.close()


async def test_all_sources_ending_ends_the_pump() -> None:
    pump = Pump([source(["a"]), source(["b"])], time.monotonic() + 60)
    got = [await pump.next(), await pump.next()]
    assert sorted(got, key=str) == [(0, "a"), (1, "b")]
    assert await pump.next() is None


async def test_the_deadline_wakes_a_waiting_reader() -> None:
    never = asyncio.Event()

    async def stuck() -> AsyncIterator[Any]:
        await never.wait()
        yield "never"

    pump = Pump([stuck()], time.monotonic() + 0.01)
    try:
        with pytest.raises(TimedOutError):
            await pump.next()
    finally:
        pump.close()

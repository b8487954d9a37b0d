"""A streamed request's outputs: one wake-up however many steps queue up, merged per choice, in order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from blaze_ai.engines.llm import LLMConfig, LoadedModel
from blaze_ai.engines.llm.engine import LLMEngine
from blaze_ai.engines.llm.outputs import OutputStream
from blaze_ai.engines.llm.sequence import StepOutput
from blaze_ai.engines.requests import GenerationRequest, SamplingParams, StreamDelta
from blaze_ai.errors import EngineFailureError
from blaze_ai.model_cache import ModelCache


def output(index: int, text: str, token: int, *, finish: bool = False, last: bool = False) -> StepOutput:
    delta = StreamDelta(index, text, [token], "stop" if finish else None, 3, token + 1)
    return StepOutput("r", delta=delta, finished=last)


async def test_outputs_that_queue_up_are_taken_at_once_merged_per_choice() -> None:
    stream = OutputStream(asyncio.get_running_loop())
    for out in [output(0, "a", 0), output(1, "x", 0), output(0, "b", 1), output(1, "y", 1, finish=True)]:
        stream.put_nowait(out)
    deltas = await stream.deltas()
    assert [(d.index, d.text, d.token_ids, d.finish_reason) for d in deltas] == [
        (0, "ab", [0, 1], None),
        (1, "xy", [0, 1], "stop"),
    ]
    assert not stream.ended
    stream.put_nowait(output(0, "c", 2, finish=True, last=True))
    assert [d.text for d in await stream.deltas()] == ["c"]
    assert stream.ended and stream.finished


async def test_a_waiting_reader_wakes_once_and_gets_what_came_before_it_ran() -> None:
    stream = OutputStream(asyncio.get_running_loop())
    reader = asyncio.create_task(stream.deltas())
    await asyncio.sleep(0)  # the reader now waits
    stream.put_nowait(output(0, "a", 0))
    stream.put_nowait(output(0, "b", 1))  # before the woken reader runs
    assert [(d.text, d.token_ids) for d in await reader] == [("ab", [0, 1])]


async def test_a_failure_comes_after_the_deltas_made_before_it() -> None:
    stream = OutputStream(asyncio.get_running_loop())
    stream.put_nowait(output(0, "a", 0))
    stream.put_nowait(StepOutput("r", error=EngineFailureError("boom"), finished=True))
    assert [d.text for d in await stream.deltas()] == ["a"]
    assert stream.ended and not stream.finished  # the failure is still to be raised
    with pytest.raises(EngineFailureError, match="boom"):
        await stream.deltas()
    assert stream.finished


async def test_a_cancelled_reader_leaves_the_stream_usable() -> None:
    stream = OutputStream(asyncio.get_running_loop())
    reader = asyncio.create_task(stream.deltas())
    await asyncio.sleep(0)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    stream.put_nowait(output(0, "a", 0))
    assert [d.text for d in await stream.deltas()] == ["a"]


# -- through the engine, on the tiny model ------------------------------------------------------


@pytest.fixture
async def engine(tiny_model: LoadedModel) -> AsyncIterator[LLMEngine]:
    cache = ModelCache(1 << 30)
    eng = LLMEngine(LLMConfig(source="builtin:tiny-llama", device="cpu", max_batch_size=8), model_cache=cache)
    cache.get_or_load(eng.cache_key, lambda: tiny_model)  # shares the session's loaded model
    await eng.start()
    yield eng
    await eng.stop()


async def test_a_reader_that_fell_behind_gets_one_delta_equal_to_the_steps_it_missed(
    engine: LLMEngine,
) -> None:
    def request() -> GenerationRequest:
        params = SamplingParams(max_tokens=12, temperature=0.0, logprobs=2)
        return GenerationRequest(prompt="Once upon a time", params=params)

    whole = (await engine.execute(request())).choices[0]
    stream = engine.stream(request())
    first = await anext(stream)
    for _ in range(500):  # the reader sleeps while the engine finishes the request
        if engine.stats()["finished_requests"] == 2:
            break
        await asyncio.sleep(0.01)
    rest = [delta async for delta in stream]
    assert len(rest) == 1  # 11 steps' outputs, taken and handed on as one delta
    deltas = [first, *rest]
    assert "".join(d.text for d in deltas) == whole.text
    assert [t for d in deltas for t in d.token_ids] == whole.token_ids
    logprobs = [lp for d in deltas for lp in d.logprobs or ()]
    assert [lp.token_id for lp in logprobs] == whole.token_ids
    assert [lp.logprob for lp in logprobs] == pytest.approx([lp.logprob for lp in whole.logprobs or ()])
    assert rest[0].finish_reason == "length" and rest[0].completion_tokens == 12

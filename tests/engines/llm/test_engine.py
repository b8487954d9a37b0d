"""The LLM engine on the tiny built-in: continuous batching, sampling, streaming, aborts, admission."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from blaze_ai.engines.base import Engine
from blaze_ai.engines.llm import LLMConfig, LoadedModel
from blaze_ai.engines.llm.core import EngineCore, StepOutput
from blaze_ai.engines.llm.engine import LLMEngine
from blaze_ai.engines.requests import GenerationRequest, SamplingParams
from blaze_ai.errors import (
    BadRequestError,
    CancelledError,
    ContextLengthError,
    OverloadedError,
    TimedOutError,
)
from blaze_ai.model_cache import ModelCache

TINY = "builtin:tiny-llama"
PROMPTS = [
    "The quick brown fox",
    "Once upon a time, in a land far away, there lived a",
    "1 2 3",
    "A much longer prompt that keeps going and going so that the padding really matters here, okay",
    "Hi",
    "Question: what is two plus two? Answer:",
]


def greedy(prompt: str, max_tokens: int = 12, **kwargs: object) -> GenerationRequest:
    return GenerationRequest(
        prompt=prompt, params=SamplingParams(max_tokens=max_tokens, temperature=0.0), **kwargs
    )  # type: ignore[arg-type]


def make_core(model: LoadedModel, **limits: int | str) -> EngineCore:
    return EngineCore(model, LLMConfig(source=TINY, device="cpu", **limits))  # type: ignore[arg-type]


def run_until_done(core: EngineCore, max_steps: int = 500) -> list[StepOutput]:
    outputs: list[StepOutput] = []
    for _ in range(max_steps):
        if not core.has_work():
            return outputs
        outputs += core.step()
    raise AssertionError("the core did not finish")


def tokens_of(outputs: list[StepOutput], request_id: str, index: int = 0) -> list[int]:
    return [t for o in outputs if o.request_id == request_id and o.delta and o.delta.index == index
            for t in o.delta.token_ids]  # fmt: skip


def alone(model: LoadedModel, prompt: str, max_tokens: int) -> list[int]:
    core = make_core(model)
    core.add_request(greedy(prompt, max_tokens, request_id="solo"))
    return tokens_of(run_until_done(core), "solo")


@pytest.fixture
async def engine(tiny_model: LoadedModel) -> AsyncIterator[LLMEngine]:
    cache = ModelCache(1 << 30)
    eng = LLMEngine(LLMConfig(source=TINY, device="cpu", max_batch_size=8), model_cache=cache)
    cache.get_or_load(eng.cache_key, lambda: tiny_model)  # shares the session's loaded model
    await eng.start()
    yield eng
    await eng.stop()


# -- continuous batching (synchronous core) ---------------------------------------------------


def test_batched_greedy_equals_unbatched_greedy_with_joins_mid_flight(tiny_model: LoadedModel) -> None:
    lengths = [12, 5, 20, 9, 16, 3]
    expected = [alone(tiny_model, p, n) for p, n in zip(PROMPTS, lengths, strict=True)]
    core = make_core(tiny_model)
    outputs: list[StepOutput] = []
    for i, (prompt, n) in enumerate(zip(PROMPTS, lengths, strict=True)):
        core.add_request(greedy(prompt, n, request_id=f"r{i}"))
        outputs += core.step() + core.step()  # newcomers join a batch already decoding
    outputs += run_until_done(core)
    assert [tokens_of(outputs, f"r{i}") for i in range(len(PROMPTS))] == expected
    assert all(len(t) == n for t, n in zip(expected, lengths, strict=True))  # no early EOS hides a bug


def test_short_request_finishes_before_a_long_one_that_started_earlier(tiny_model: LoadedModel) -> None:
    core = make_core(tiny_model)
    core.add_request(greedy(PROMPTS[0], 30, request_id="long"))
    core.step()
    core.add_request(greedy(PROMPTS[1], 3, request_id="short"))
    finished_at: dict[str, int] = {}
    sizes = []
    for step in range(40):
        sizes.append(core.stats.last_batch_size)
        for out in core.step():
            if out.finished:
                finished_at[out.request_id] = step
    assert finished_at["short"] < finished_at["long"]
    assert 2 in sizes  # they really shared the batch
    assert core.stats.last_batch_size == 0


def test_n_shares_one_prefill_and_gives_distinct_choices(tiny_model: LoadedModel) -> None:
    core = make_core(tiny_model)
    prompt = PROMPTS[1]
    params = SamplingParams(max_tokens=8, temperature=1.0, n=3, seed=11)
    core.add_request(GenerationRequest(prompt=prompt, params=params, request_id="n3"))
    outputs = run_until_done(core)
    choices = [tokens_of(outputs, "n3", i) for i in range(3)]
    assert all(len(c) == 8 for c in choices)
    assert len({tuple(c) for c in choices}) == 3
    assert core.stats.prompt_tokens == len(tiny_model.tokenizer(prompt)["input_ids"])


def test_priority_decides_who_runs_next(tiny_model: LoadedModel) -> None:
    core = make_core(tiny_model, max_batch_size=1)
    core.add_request(greedy("first", 2, request_id="first"))
    core.step()
    core.add_request(greedy("low", 2, request_id="low", priority=5))
    core.add_request(greedy("high", 2, request_id="high", priority=0))
    order = [o.request_id for o in run_until_done(core) if o.finished]
    assert order == ["first", "high", "low"]


def test_full_queue_and_expired_deadline(tiny_model: LoadedModel) -> None:
    core = make_core(tiny_model, max_batch_size=1, max_queued_requests=1)
    core.add_request(greedy("busy", 4, request_id="busy"))
    core.step()
    core.add_request(greedy("late", 4, request_id="late", deadline=time.monotonic() - 1))
    with pytest.raises(OverloadedError):
        core.add_request(greedy("extra", 4, request_id="extra"))
    errors = {o.request_id: o.error for o in core.step() if o.error}
    assert isinstance(errors["late"], TimedOutError)


def test_abort_in_the_core_frees_the_row(tiny_model: LoadedModel) -> None:
    core = make_core(tiny_model)
    core.add_request(greedy("keep", 6, request_id="keep"))
    core.add_request(greedy("drop", 50, request_id="drop"))
    core.step()
    core.abort("drop")
    outputs = core.step()
    assert any(o.request_id == "drop" and isinstance(o.error, CancelledError) for o in outputs)
    assert core.stats.last_batch_size == 1
    run_until_done(core)
    assert core.scheduler.tokens_in_flight == 0


def test_over_long_prompt_is_refused_at_once(tiny_model: LoadedModel) -> None:
    core = make_core(tiny_model, max_context_length=16)
    with pytest.raises(ContextLengthError):
        core.add_request(greedy("word " * 40))
    assert not core.has_work()


# -- the async engine -------------------------------------------------------------------------


async def test_engine_meets_the_protocol_and_reports_stats(engine: LLMEngine) -> None:
    assert isinstance(engine, Engine)
    assert (await engine.health_check()).healthy
    result = await engine.execute(greedy(PROMPTS[0], 6))
    stats = engine.stats()
    assert result.completion_tokens == 6 and result.choices[0].finish_reason == "length"
    assert stats["steps"] >= 6 and stats["generated_tokens"] >= 6 and stats["ttft_avg_s"] > 0


async def test_concurrent_execute_matches_unbatched(engine: LLMEngine, tiny_model: LoadedModel) -> None:
    results = await asyncio.gather(*(engine.execute(greedy(p, 10)) for p in PROMPTS))
    assert [r.choices[0].token_ids for r in results] == [alone(tiny_model, p, 10) for p in PROMPTS]


async def test_stream_deltas_concatenate_to_the_full_text(engine: LLMEngine) -> None:
    request = greedy(PROMPTS[3], 20)
    full = await engine.execute(request)
    deltas = [d async for d in engine.stream(greedy(PROMPTS[3], 20))]
    assert "".join(d.text for d in deltas) == full.choices[0].text
    # one delta per step while the reader keeps up; steps it missed come merged (test_outputs.py)
    assert sum(len(d.token_ids) for d in deltas) == 20 and deltas[-1].finish_reason == "length"


async def test_stop_sequence_cuts_the_text(engine: LLMEngine) -> None:
    text = (await engine.execute(greedy(PROMPTS[2], 20))).choices[0].text
    stop = text[len(text) // 2 : len(text) // 2 + 3]
    cut = text[: text.index(stop)]
    params = SamplingParams(max_tokens=20, temperature=0, stop=(stop,))
    stopped = await engine.execute(GenerationRequest(prompt=PROMPTS[2], params=params))
    streamed = [d async for d in engine.stream(GenerationRequest(prompt=PROMPTS[2], params=params))]
    assert stopped.choices[0].text == cut and stopped.choices[0].finish_reason == "stop"
    assert "".join(d.text for d in streamed) == cut


async def test_same_seed_same_output_with_other_requests_around(engine: LLMEngine) -> None:
    def seeded(seed: int) -> GenerationRequest:
        return GenerationRequest(prompt=PROMPTS[0], params=SamplingParams(max_tokens=12, seed=seed))

    first = await engine.execute(seeded(42))
    crowd = await asyncio.gather(engine.execute(greedy(PROMPTS[1], 5)), engine.execute(seeded(42)),
                                 engine.execute(seeded(43)))  # fmt: skip
    assert crowd[1].choices[0].token_ids == first.choices[0].token_ids
    assert crowd[2].choices[0].token_ids != first.choices[0].token_ids


async def test_chat_messages_use_the_chat_template(engine: LLMEngine, tiny_model: LoadedModel) -> None:
    messages = [{"role": "user", "content": "hello"}]
    text = tiny_model.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    by_messages = await engine.execute(
        GenerationRequest(messages=messages, params=SamplingParams(temperature=0))
    )
    by_ids = await engine.execute(GenerationRequest(
        prompt_token_ids=tiny_model.tokenizer(text, add_special_tokens=False)["input_ids"],
        params=SamplingParams(temperature=0)))  # fmt: skip
    assert by_messages.choices[0].token_ids == by_ids.choices[0].token_ids
    assert by_messages.prompt_tokens == by_ids.prompt_tokens


async def wait_idle(engine: LLMEngine) -> None:
    for _ in range(200):
        if engine.stats()["running"] == 0 and engine.stats()["waiting"] == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the engine kept running")


async def test_closing_the_stream_stops_the_steps(engine: LLMEngine) -> None:
    stream = engine.stream(greedy(PROMPTS[0], 1000))
    async for _ in stream:
        break
    await stream.aclose()
    await wait_idle(engine)
    steps = engine.stats()["steps"]
    await asyncio.sleep(0.1)
    assert engine.stats()["steps"] == steps
    assert engine.stats()["generated_tokens"] < 1000


async def test_cancelling_execute_aborts(engine: LLMEngine) -> None:
    task = asyncio.create_task(engine.execute(greedy(PROMPTS[0], 1000)))
    for _ in range(1000):
        if engine.stats()["generated_tokens"] > 0:
            break
        await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_idle(engine)
    assert engine.stats()["generated_tokens"] < 1000


async def test_errors_are_raised_at_once(tiny_model: LoadedModel) -> None:
    cache = ModelCache(1 << 30)
    config = LLMConfig(source=TINY, device="cpu", max_context_length=16)
    eng = LLMEngine(config, model_cache=cache)
    cache.get_or_load(eng.cache_key, lambda: tiny_model)
    await eng.start()
    try:
        with pytest.raises(ContextLengthError):
            await eng.execute(greedy("word " * 40))
    finally:
        await eng.stop()
    assert not (await eng.health_check()).healthy


async def test_a_refused_duplicate_id_does_not_abort_the_original(engine: LLMEngine) -> None:
    original = engine.stream(greedy(PROMPTS[0], 30, request_id="same"))
    first = await anext(original)  # the original is running now
    with pytest.raises(BadRequestError, match="already in use"):
        await engine.execute(greedy(PROMPTS[1], 5, request_id="same"))
    rest = [d async for d in original]
    assert first.completion_tokens == 1
    assert rest[-1].finish_reason == "length" and rest[-1].completion_tokens == 30

"""FakeEngine: echoes, images, embeddings, and each way it can misbehave."""

from __future__ import annotations

import asyncio
import io
import math
from collections.abc import AsyncIterator

import pytest
from PIL import Image

from blaze_ai.engines.fake import EMBEDDING_DIM, FakeConfig, FakeEngine
from blaze_ai.engines.requests import (
    EmbeddingRequest,
    GenerationRequest,
    ImageRequest,
    SamplingParams,
    StreamDelta,
)
from blaze_ai.errors import BadRequestError, EngineFailureError, UnavailableError


@pytest.fixture
async def engine() -> AsyncIterator[FakeEngine]:
    fake = FakeEngine()
    await fake.start()
    yield fake
    await fake.stop()


def gen(prompt: str = "the quick brown fox", **params: object) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, params=SamplingParams(**params))  # type: ignore[arg-type]


async def collect(engine: FakeEngine, request: GenerationRequest) -> list[StreamDelta]:
    return [delta async for delta in engine.stream(request)]


# -- answers ----------------------------------------------------------------------------
async def test_execute_echoes_the_prompt(engine: FakeEngine) -> None:
    result = await engine.execute(gen(max_tokens=16))
    assert [c.text for c in result.choices] == ["the quick brown fox"]
    assert result.choices[0].finish_reason == "stop"
    assert (result.prompt_tokens, result.completion_tokens) == (4, 4)
    assert engine.stats() == {"starts": 1, "requests": 1, "tokens": 4}


async def test_max_tokens_cuts_the_echo_with_finish_reason_length(engine: FakeEngine) -> None:
    result = await engine.execute(gen(max_tokens=2, n=3))
    assert [c.text for c in result.choices] == ["the quick"] * 3
    assert {c.finish_reason for c in result.choices} == {"length"}
    assert [c.index for c in result.choices] == [0, 1, 2]
    assert result.completion_tokens == 6


async def test_stop_word_ends_the_echo(engine: FakeEngine) -> None:
    result = await engine.execute(gen("say hello STOP world", stop=("STOP",)))
    assert result.choices[0].text == "say hello"
    assert result.choices[0].finish_reason == "stop"


async def test_messages_and_token_ids_are_echoed(engine: FakeEngine) -> None:
    chat = GenerationRequest(
        messages=[{"role": "system", "content": "x"}, {"role": "user", "content": "hi there"}]
    )
    ids = GenerationRequest(prompt_token_ids=[5, 6, 7])
    assert (await engine.execute(chat)).choices[0].text == "hi there"
    assert (await engine.execute(ids)).choices[0].text == "5 6 7"


async def test_stream_yields_word_by_word_with_usage_on_the_last(engine: FakeEngine) -> None:
    deltas = await collect(engine, gen(max_tokens=16))
    assert [d.text for d in deltas] == ["the", " quick", " brown", " fox"]
    assert "".join(d.text for d in deltas) == "the quick brown fox"
    assert [d.finish_reason for d in deltas] == [None, None, None, "stop"]
    assert (deltas[-1].prompt_tokens, deltas[-1].completion_tokens) == (4, 4)


async def test_stream_of_n_choices_carries_each_index(engine: FakeEngine) -> None:
    deltas = await collect(engine, gen("a b", n=2))
    assert [(d.index, d.text) for d in deltas] == [(0, "a"), (0, " b"), (1, "a"), (1, " b")]


async def test_images_are_pngs_of_the_asked_size_and_deterministic(engine: FakeEngine) -> None:
    request = ImageRequest(prompt="a red fox", n=2, width=32, height=16, seed=3)
    result = await engine.execute(request)
    assert result.seeds == [3, 4]
    assert (result.width, result.height) == (32, 16)
    for png in result.images:
        assert png.startswith(b"\x89PNG")
        assert Image.open(io.BytesIO(png)).size == (32, 16)
    again = await engine.execute(ImageRequest(prompt="a red fox", n=2, width=32, height=16, seed=3))
    assert again.images == result.images
    assert result.images[0] != result.images[1]


@pytest.mark.parametrize("dimensions", [None, 4, 32, 100])
async def test_embeddings_are_deterministic_unit_vectors(engine: FakeEngine, dimensions: int | None) -> None:
    request = EmbeddingRequest(inputs=["hello world", "bye"], dimensions=dimensions)
    result = await engine.execute(request)
    size = dimensions or EMBEDDING_DIM
    assert [len(v) for v in result.vectors] == [size, size]
    assert all(math.isclose(math.sqrt(sum(x * x for x in v)), 1.0) for v in result.vectors)
    assert len(set(result.vectors[0])) > size // 2  # not padded or repeated
    assert result.prompt_tokens == 3
    again = await engine.execute(EmbeddingRequest(inputs=["hello world", "bye"], dimensions=dimensions))
    assert again.vectors == result.vectors
    assert result.vectors[0] != result.vectors[1]


async def test_unknown_request_type_is_a_bad_request(engine: FakeEngine) -> None:
    with pytest.raises(BadRequestError):
        await engine.execute("not a request")
    with pytest.raises(BadRequestError):
        await collect(engine, ImageRequest(prompt="x"))  # type: ignore[arg-type]


# -- misbehaviour --------------------------------------------------------------------------
async def test_requests_before_start_are_unavailable() -> None:
    fake = FakeEngine()
    with pytest.raises(UnavailableError):
        await fake.execute(gen())
    assert not (await fake.health_check()).healthy


async def test_fail_rate_one_always_fails_and_zero_never(engine: FakeEngine) -> None:
    engine.set_mode(fail_rate=1.0)
    for _ in range(5):
        with pytest.raises(EngineFailureError):
            await engine.execute(gen())
    engine.set_mode(fail_rate=0.0)
    await engine.execute(gen())
    assert engine.requests == 6


async def test_fail_rate_is_seeded() -> None:
    async def pattern() -> list[bool]:
        fake = FakeEngine(FakeConfig(fail_rate=0.5, seed=9))
        await fake.start()
        out = []
        for _ in range(20):
            try:
                await fake.execute(gen())
                out.append(True)
            except EngineFailureError:
                out.append(False)
        return out

    first = await pattern()
    assert first == await pattern()
    assert 0 < sum(first) < 20


async def test_crash_fails_requests_and_health_until_restart(engine: FakeEngine) -> None:
    engine.set_mode(crash=True)
    with pytest.raises(EngineFailureError):
        await engine.execute(gen())
    assert not (await engine.health_check()).healthy
    await engine.stop()
    await engine.start()
    assert (await engine.health_check()).healthy
    assert (await engine.execute(gen("ok"))).choices[0].text == "ok"


async def test_crash_mid_stream_raises_after_the_first_pieces(engine: FakeEngine) -> None:
    got = []
    with pytest.raises(EngineFailureError):
        async for delta in engine.stream(gen("one two three")):
            got.append(delta.text)
            engine.set_mode(crash=True)
    assert got == ["one"]


async def test_fail_starts_fails_exactly_that_many_starts() -> None:
    fake = FakeEngine(FakeConfig(fail_starts=2))
    for _ in range(2):
        with pytest.raises(EngineFailureError):
            await fake.start()
    await fake.start()
    assert fake.starts == 3
    assert (await fake.health_check()).healthy
    fake.set_mode(fail_starts=1)
    with pytest.raises(EngineFailureError):
        await fake.start()


async def test_hang_holds_requests_and_checks_until_stop(engine: FakeEngine) -> None:
    engine.set_mode(hang=True)
    request = asyncio.create_task(engine.execute(gen()))
    check = asyncio.create_task(engine.health_check())
    for _ in range(5):
        await asyncio.sleep(0)
    assert not request.done() and not check.done()
    await engine.stop()
    with pytest.raises(UnavailableError):
        await request
    assert not (await check).healthy


async def test_delay_is_cancellable(engine: FakeEngine) -> None:
    engine.set_mode(delay_s=30.0)
    task = asyncio.create_task(engine.execute(gen()))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize(
    "changes",
    [{"fail_rate": 1.5}, {"delay_s": -1.0}, {"token_delay_s": -0.1}, {"fail_starts": -1}],
)
def test_bad_settings_are_rejected(changes: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        FakeConfig(**changes)  # type: ignore[arg-type]
    fake = FakeEngine()
    with pytest.raises(ValueError):
        fake.set_mode(**changes)
    assert fake.config == FakeConfig()

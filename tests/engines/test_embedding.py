"""EmbeddingEngine on the real built-in all-MiniLM-L6-v2 weights, plus config validation."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from blaze_ai.engines.base import Engine
from blaze_ai.engines.embedding import EmbeddingConfig, EmbeddingEngine
from blaze_ai.engines.requests import EmbeddingRequest
from blaze_ai.errors import (
    BadRequestError,
    ConfigError,
    ContextLengthError,
    TimedOutError,
    UnavailableError,
)
from blaze_ai.model_cache import ModelCache

# One cache for the module: the weights load once, each test starts its own engine on them.
CACHE = ModelCache(512 * 1024 * 1024)


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def norm(v: list[float]) -> float:
    return math.sqrt(sum(x * x for x in v))


@pytest.fixture
async def start() -> AsyncIterator[Callable[..., Awaitable[EmbeddingEngine]]]:
    engines: list[EmbeddingEngine] = []

    async def factory(**overrides: object) -> EmbeddingEngine:
        engine = EmbeddingEngine(EmbeddingConfig(**overrides), model_cache=CACHE)  # type: ignore[arg-type]
        await engine.start()
        engines.append(engine)
        return engine

    yield factory
    for engine in engines:
        await engine.stop()


async def embed(
    engine: EmbeddingEngine, inputs: list[str] | list[list[int]], **kwargs: object
) -> list[list[float]]:
    result = await engine.execute(EmbeddingRequest(inputs=inputs, **kwargs))  # type: ignore[arg-type]
    return result.vectors


@pytest.mark.slow
async def test_similar_sentences_score_higher(start) -> None:
    engine = await start()
    assert isinstance(engine, Engine)
    cat, kitten, revenue = await embed(engine, ["a cat", "a kitten", "quarterly revenue"])
    assert len(cat) == engine.dimensions == 384
    assert cosine(cat, kitten) > cosine(cat, revenue) + 0.3
    assert norm(cat) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.slow
async def test_batched_and_single_results_agree(start) -> None:
    engine = await start(max_wait_ms=50)
    texts = ["a cat", "the quick brown fox jumps over the lazy dog", "hi", "quarterly revenue rose 5 %"]
    together = await embed(engine, texts)
    alone = [(await embed(engine, [t]))[0] for t in texts]
    concurrent = await asyncio.gather(*(embed(engine, [t]) for t in texts))
    for a, b, c in zip(together, alone, concurrent, strict=True):
        assert a == pytest.approx(b, abs=1e-5)
        assert c[0] == pytest.approx(b, abs=1e-5)
    stats = engine.stats()
    assert stats["batch_batches"] < stats["requests"]  # the concurrent requests shared a batch
    assert stats["inputs"] == 12


@pytest.mark.slow
async def test_dimensions_truncate_then_renormalise(start) -> None:
    engine = await start()
    (full,) = await embed(engine, ["a cat"], normalize=False)
    (short,) = await embed(engine, ["a cat"], dimensions=64)
    assert len(short) == 64
    assert norm(short) == pytest.approx(1.0, abs=1e-5)
    expected = [x / norm(full[:64]) for x in full[:64]]
    assert short == pytest.approx(expected, abs=1e-5)
    for bad in (0, 385):
        with pytest.raises(BadRequestError, match="dimensions"):
            await embed(engine, ["a cat"], dimensions=bad)


@pytest.mark.slow
async def test_normalisation_can_be_turned_off(start) -> None:
    raw = await start(normalize=False)
    (vector,) = await embed(raw, ["a cat"])  # the request asks, the config says no
    assert norm(vector) > 1.5


@pytest.mark.slow
async def test_token_ids_give_the_same_vector_as_the_text(start) -> None:
    engine = await start()
    from transformers import AutoTokenizer

    from blaze_ai.engines.embedding.model import resolve_source

    path, _ = resolve_source(engine.config)
    ids = AutoTokenizer.from_pretrained(path, local_files_only=True)("a kitten", add_special_tokens=False)
    from_ids = await engine.execute(EmbeddingRequest(inputs=[list(ids["input_ids"])]))
    from_text = await engine.execute(EmbeddingRequest(inputs=["a kitten"]))
    assert from_ids.vectors[0] == pytest.approx(from_text.vectors[0], abs=1e-6)
    assert from_ids.prompt_tokens == from_text.prompt_tokens == 4  # [CLS] a kitten [SEP]
    with pytest.raises(BadRequestError, match="token ids"):
        await embed(engine, [[1, 2, 10**9]])


@pytest.mark.slow
async def test_request_limits(start) -> None:
    engine = await start(max_inputs_per_request=3, max_tokens_per_input=8)
    with pytest.raises(BadRequestError, match="limit is 3"):
        await embed(engine, ["a"] * 4)
    with pytest.raises(BadRequestError, match="empty"):
        await embed(engine, [])
    with pytest.raises(ContextLengthError, match="limit is 8"):
        await embed(engine, ["one two three four five six seven"])
    await embed(engine, ["one two three four five six"])  # 6 words + 2 special tokens fit
    with pytest.raises(TimedOutError):
        await embed(engine, ["late"], deadline=time.monotonic() - 1)
    with pytest.raises(BadRequestError, match="stream"):
        engine.stream(EmbeddingRequest(inputs=["a"]))


@pytest.mark.slow
async def test_truncation_when_configured(start) -> None:
    engine = await start(max_tokens_per_input=8, truncate=True)
    (cut,) = await embed(engine, ["one two three four five six seven eight"])
    (fits,) = await embed(engine, ["one two three four five six"])
    assert cut == pytest.approx(fits, abs=1e-5)


@pytest.mark.slow
async def test_an_evicted_model_reloads_on_demand(start) -> None:
    engine = await start()
    (before,) = await embed(engine, ["a cat"])
    loads = CACHE.stats()["loads"]
    assert CACHE.unload(engine.config.cache_key)
    assert engine.stats()["model_loaded"] is False
    (after,) = await embed(engine, ["a cat"])
    assert CACHE.stats()["loads"] == loads + 1
    assert after == pytest.approx(before, abs=1e-6)


@pytest.mark.slow
async def test_lifecycle_and_health(start) -> None:
    engine = EmbeddingEngine(EmbeddingConfig(), model_cache=CACHE)
    assert not (await engine.health_check()).healthy
    with pytest.raises(UnavailableError):
        await embed(engine, ["a"])
    await engine.start()
    assert (await engine.health_check()).healthy
    await engine.stop()
    with pytest.raises(UnavailableError):
        await embed(engine, ["a"])


async def test_too_many_tokens_for_the_model_is_a_config_error() -> None:
    engine = EmbeddingEngine(EmbeddingConfig(max_tokens_per_input=4096), model_cache=CACHE)
    with pytest.raises(ConfigError, match="512"):
        await engine.start()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"source": "builtin:nope"}, "unknown built-in"),
        ({"dtype": "float64"}, "dtype"),
        ({"dtype": "float16"}, "GPUs"),
        ({"device": "tpu"}, "device"),
        ({"max_batch_size": 0}, "max_batch_size"),
        ({"max_wait_ms": -1}, "max_wait_ms"),
        ({"max_tokens_per_input": 2}, "max_tokens_per_input"),
    ],
)
def test_bad_configs_say_how_to_fix_them(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EmbeddingConfig(**overrides)  # type: ignore[arg-type]


async def test_a_missing_folder_is_a_config_error() -> None:
    engine = EmbeddingEngine(EmbeddingConfig(source="./no/such/model"), model_cache=CACHE)
    with pytest.raises(ConfigError, match="does not exist"):
        await engine.start()

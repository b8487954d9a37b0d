"""ResponseCache through CachedDispatch: hits, single-flight, stream replay, errors and cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from blaze_ai.cache import CachedDispatch, MemoryBackend, ResponseCache
from blaze_ai.engines.requests import (
    EmbeddingRequest,
    GenerationRequest,
    GenerationResult,
    ImageRequest,
    SamplingParams,
)
from blaze_ai.errors import EngineFailureError
from blaze_ai.server.dispatch import RequestContext

from .conftest import CTX, CountingDispatch, wait_for


def greedy(prompt: str = "one two three", **params: Any) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, params=SamplingParams(**{"temperature": 0.0, **params}))


def cached(inner: Any, mode: str = "deterministic") -> CachedDispatch:
    return CachedDispatch(inner, ResponseCache(MemoryBackend(1 << 20), ttl_s=60), mode)


async def test_second_identical_request_is_a_hit_under_its_own_id(counting: CountingDispatch) -> None:
    dispatch = cached(counting)
    first = await dispatch.execute("fake", greedy(), CTX)
    request = greedy()
    second = await dispatch.execute("fake", request, CTX)
    assert counting.executes == 1
    assert second.choices == first.choices
    assert second.request_id == request.request_id != first.request_id
    stats = dispatch.cache.stats()
    assert (stats["hits"], stats["misses"], stats["stores"]) == (1, 1, 1)
    assert stats["bytes_stored"] > 0 and stats["backend_bytes"] > 0


async def test_fifty_concurrent_identical_requests_run_once(counting: CountingDispatch) -> None:
    counting.engine.set_mode(delay_s=0.05)
    dispatch = cached(counting)
    results = await asyncio.gather(*(dispatch.execute("fake", greedy(), CTX) for _ in range(50)))
    assert counting.executes == 1 and counting.engine.requests == 1
    assert {r.choices[0].text for r in results} == {"one two three"}
    assert len({r.request_id for r in results}) == 50
    stats = dispatch.cache.stats()
    assert (stats["misses"], stats["hits"], stats["shared"]) == (1, 49, 49)


async def test_sampled_requests_are_not_cached_unless_mode_all(counting: CountingDispatch) -> None:
    dispatch = cached(counting)
    for _ in range(2):
        await dispatch.execute("fake", greedy(temperature=0.7), CTX)
    assert counting.executes == 2 and dispatch.cache.stats()["bypasses"] == 2
    widened = cached(counting, mode="all")
    for _ in range(2):
        await widened.execute("fake", greedy(temperature=0.7), CTX)
    assert counting.executes == 3


async def test_images_with_seed_and_embeddings_are_cached(counting: CountingDispatch) -> None:
    dispatch = cached(counting)
    for _ in range(2):
        image = await dispatch.execute("fake", ImageRequest(prompt="cat", seed=3, width=8, height=8), CTX)
        vectors = await dispatch.execute("fake", EmbeddingRequest(inputs=["a b"]), CTX)
    assert counting.executes == 2
    assert image.images[0].startswith(b"\x89PNG") and image.seeds == [3]
    assert len(vectors.vectors[0]) == 8
    await dispatch.execute("fake", ImageRequest(prompt="cat", width=8, height=8), CTX)
    await dispatch.execute("fake", ImageRequest(prompt="cat", width=8, height=8), CTX)
    assert counting.executes == 4  # no seed: not deterministic


async def test_cached_stream_replays_the_pieces_in_order(counting: CountingDispatch) -> None:
    dispatch = cached(counting)
    first = [p async for p in dispatch.stream("fake", greedy("a b c d"), CTX)]
    again = [p async for p in dispatch.stream("fake", greedy("a b c d"), CTX)]
    assert counting.streams == 1
    assert [p.text for p in again] == ["a", " b", " c", " d"]
    assert again == first
    await dispatch.execute("fake", greedy("a b c d"), CTX)
    assert counting.executes == 1  # a stream entry does not answer a whole request


async def test_concurrent_streams_share_one_engine_stream(counting: CountingDispatch) -> None:
    counting.engine.set_mode(token_delay_s=0.01)
    dispatch = cached(counting)

    async def read() -> list[str]:
        return [p.text async for p in dispatch.stream("fake", greedy("a b c d e"), CTX)]

    texts = await asyncio.gather(*(read() for _ in range(10)))
    assert counting.streams == 1 and counting.engine.requests == 1
    assert texts == [["a", " b", " c", " d", " e"]] * 10
    assert dispatch.cache.stats()["shared"] == 9


class Gate:
    """A dispatch whose requests wait for ``release``; counts calls and cancellations."""

    def __init__(self, error: Exception | None = None) -> None:
        self.release = asyncio.Event()
        self.error = error
        self.calls = 0
        self.cancelled = 0

    async def execute(self, model: str, request: Any, ctx: RequestContext) -> Any:
        self.calls += 1
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self.error is not None:
            raise self.error
        return GenerationResult(request.request_id, [], 1, 0)

    async def stream(self, model: str, request: Any, ctx: RequestContext) -> AsyncIterator[Any]:
        self.calls += 1
        try:
            await self.release.wait()
            if self.error is not None:
                raise self.error
            yield "not a StreamDelta"
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    def models(self) -> dict[str, str]:
        return {"fake": "fake"}


async def test_an_error_reaches_every_waiter_and_is_not_cached() -> None:
    gate = Gate(EngineFailureError("boom"))
    dispatch = cached(gate)
    waiters = [asyncio.ensure_future(dispatch.execute("fake", greedy(), CTX)) for _ in range(3)]
    await wait_for(lambda: gate.calls == 1)
    gate.release.set()
    outcomes = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(o, EngineFailureError) for o in outcomes)
    gate.error = None
    await dispatch.execute("fake", greedy(), CTX)
    assert gate.calls == 2


async def test_one_waiter_leaving_does_not_cancel_the_others_but_the_last_does() -> None:
    gate = Gate()
    dispatch = cached(gate)
    first = asyncio.ensure_future(dispatch.execute("fake", greedy(), CTX))
    second = asyncio.ensure_future(dispatch.execute("fake", greedy(), CTX))
    await wait_for(lambda: gate.calls == 1)
    first.cancel()
    await asyncio.sleep(0)
    assert gate.cancelled == 0
    gate.release.set()
    assert (await second).prompt_tokens == 1
    with pytest.raises(asyncio.CancelledError):
        await first

    gate.release.clear()
    lonely = asyncio.ensure_future(dispatch.execute("fake", greedy("other"), CTX))
    await wait_for(lambda: gate.calls == 2)
    lonely.cancel()
    await wait_for(lambda: gate.cancelled == 1)  # the engine request was aborted
    assert dispatch.cache.stats()["in_flight"] == 0


async def test_closing_the_only_stream_reader_aborts_the_engine_stream() -> None:
    gate = Gate()
    dispatch = cached(gate)
    reader = dispatch.stream("fake", greedy(), CTX)
    task = asyncio.ensure_future(reader.__anext__())
    await wait_for(lambda: gate.calls == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await reader.aclose()  # type: ignore[attr-defined]
    await wait_for(lambda: gate.cancelled == 1)
    assert dispatch.cache.stats()["in_flight"] == 0


async def test_uncacheable_stream_pieces_pass_through_but_are_not_stored() -> None:
    gate = Gate()
    gate.release.set()
    dispatch = cached(gate)
    for _ in range(2):
        assert [p async for p in dispatch.stream("fake", greedy(), CTX)] == ["not a StreamDelta"]
    assert gate.calls == 2 and dispatch.cache.stats()["stores"] == 0

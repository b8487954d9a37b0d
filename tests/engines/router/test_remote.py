"""RemoteReplica streams from a Blaze gateway (in process): merged chunks keep the text and the usage."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

from blaze_ai.config import ServerConfig
from blaze_ai.engines import EngineManager, FakeConfig, FakeEngine
from blaze_ai.engines.requests import GenerationRequest, SamplingParams, StreamDelta
from blaze_ai.engines.router import RemoteReplica
from blaze_ai.server import create_app

WORDS = {0: ["a", " b", " c", " d"], 1: ["w", " x", " y", " z"]}


class QueuedEngine(FakeEngine):
    """Two choices of four one-token pieces, streamed without a pause: the gateway merges them."""

    async def stream(self, request: Any) -> AsyncIterator[StreamDelta]:
        for i in range(4):
            for index, words in WORDS.items():
                yield StreamDelta(index, words[i], [i], "stop" if i == 3 else None, 5, i + 1)


async def test_merged_chunks_of_two_choices_keep_text_and_usage() -> None:
    manager = EngineManager()
    manager.register("fake", QueuedEngine(FakeConfig()))
    app = create_app(ServerConfig(), manager)
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    await app.state.start_task
    replica = RemoteReplica("http://gateway", model="fake", transport=httpx.ASGITransport(app=app))
    try:
        request = GenerationRequest(prompt="hi", params=SamplingParams(max_tokens=4, n=2))
        deltas = [delta async for delta in replica.stream(request)]
    finally:
        await replica.aclose()
        await lifespan.__aexit__(None, None, None)
    for index, words in WORDS.items():
        assert "".join(d.text for d in deltas if d.index == index) == "".join(words)
    finished = [d for d in deltas if d.finish_reason is not None]
    assert sorted(d.index for d in finished) == [0, 1] and {d.finish_reason for d in finished} == {"stop"}
    assert sum(d.completion_tokens for d in finished) == 8  # the usage total, not the chunk count
    assert all(d.prompt_tokens == 5 for d in finished)

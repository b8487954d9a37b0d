"""SSE framing, include_usage, errors after the first byte, client disconnects, and merged chunks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from blaze_ai import errors
from blaze_ai.engines import EngineManager, FakeConfig, FakeEngine
from blaze_ai.engines.requests import FinishReason, StreamDelta, TokenLogprob
from blaze_ai.server import create_app

from .conftest import DisconnectingClient, MakeClient, ScriptedEngine, chat_body, wait_until
from .test_responses import WEATHER_FUNCTION as WEATHER


def events(text: str) -> list[str]:
    """The data of each SSE event; asserts the framing (``data: `` lines, blank-line separated)."""
    assert text.endswith("\n\n")
    blocks = text[:-2].split("\n\n")
    assert all(b.startswith("data: ") and "\n" not in b for b in blocks), text
    return [b[len("data: ") :] for b in blocks]


async def test_chat_stream_framing_and_content(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", json=chat_body("a b c", stream=True))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-request-id"]
    data = events(response.text)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == "a b c"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(c["usage"] is None for c in chunks)


async def test_include_usage_puts_usage_in_a_last_chunk(client: httpx.AsyncClient) -> None:
    body = chat_body("a b c", stream=True, n=2, stream_options={"include_usage": True})
    chunks = [json.loads(d) for d in events((await client.post("/v1/chat/completions", json=body)).text)[:-1]]
    last = chunks[-1]
    assert last["choices"] == []
    assert last["usage"] == {"prompt_tokens": 3, "completion_tokens": 6, "total_tokens": 9}
    finished = {c["choices"][0]["index"] for c in chunks[:-1] if c["choices"][0]["finish_reason"]}
    assert finished == {0, 1}


async def test_completion_stream_of_two_prompts(client: httpx.AsyncClient) -> None:
    body = {"model": "fake", "prompt": ["a b", "c d e"], "stream": True, "n": 2}
    chunks = [json.loads(d) for d in events((await client.post("/v1/completions", json=body)).text)[:-1]]
    texts: dict[int, str] = {}
    for chunk in chunks:
        choice = chunk["choices"][0]
        texts[choice["index"]] = texts.get(choice["index"], "") + choice["text"]
    assert texts == {0: "a b", 1: "a b", 2: "c d e", 3: "c d e"}


async def test_error_after_start_is_a_final_error_event(make_client: MakeClient) -> None:
    engine = ScriptedEngine(stream_error=errors.EngineFailureError("GPU fell over: secret"))
    client = await make_client(engines={"fake": engine})
    response = await client.post("/v1/chat/completions", json=chat_body("a b c", stream=True))
    assert response.status_code == 200  # the status was sent before the failure
    data = events(response.text)
    assert data[-1] != "[DONE]"
    error = json.loads(data[-1])["error"]
    assert error["type"] == "server_error" and "secret" not in error["message"]


async def test_error_before_first_piece_gets_a_real_status(make_client: MakeClient) -> None:
    client = await make_client(engines={"fake": ScriptedEngine()})
    response = await client.post("/v1/chat/completions", json=chat_body(stream=True, model="missing"))
    assert response.status_code == 404
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    manager: EngineManager = transport.app.state.manager  # type: ignore[attr-defined]
    await manager.drain("fake")
    unavailable = await client.post("/v1/chat/completions", json=chat_body(stream=True))
    assert unavailable.status_code == 503 and "retry-after" in unavailable.headers


async def started_app(engine: FakeEngine) -> tuple[Any, EngineManager]:
    manager = EngineManager()
    manager.register("fake", engine)
    await manager.start()
    return create_app(None, manager), manager


async def test_disconnected_stream_stops_generation() -> None:
    engine = FakeEngine(FakeConfig(token_delay_s=0.01))
    app, manager = await started_app(engine)
    try:
        call = DisconnectingClient(
            app, "/v1/chat/completions", chat_body("w " * 2000, stream=True, max_tokens=2000)
        )
        task = call.start()
        await wait_until(lambda: engine.tokens >= 5)
        call.disconnect()
        await asyncio.wait_for(task, 5)
        await wait_until(lambda: manager.snapshot()["fake"]["in_flight"] == 0)
        stopped_at = engine.tokens
        await asyncio.sleep(0.2)  # twenty token intervals: a live stream would have grown
        assert engine.tokens == stopped_at < 2000
        assert manager.snapshot()["fake"]["breaker"]["failures"] == 0  # a disconnect is not a failure
    finally:
        await manager.shutdown(grace_s=1)


async def test_disconnected_request_cancels_the_engine_call() -> None:
    engine = ScriptedEngine()
    engine.set_mode(delay_s=30)
    app, manager = await started_app(engine)
    try:
        call = DisconnectingClient(app, "/v1/chat/completions", chat_body())
        task = call.start()
        await wait_until(lambda: engine.requests == 1)
        call.disconnect()
        await asyncio.wait_for(task, 5)
        await wait_until(lambda: engine.cancelled == 1)
        assert manager.snapshot()["fake"]["in_flight"] == 0
    finally:
        await manager.shutdown(grace_s=1)


# -- a client that fell behind gets the pieces that queued up as one chunk per choice ---------


class QueuedEngine(FakeEngine):
    """Streams scripted pieces without a pause, so all of them queue up before the route reads."""

    def __init__(self, pieces: list[StreamDelta]) -> None:
        super().__init__(FakeConfig())
        self.pieces = pieces

    async def stream(self, request: Any) -> AsyncIterator[StreamDelta]:
        for piece in self.pieces:
            yield piece


def token(token_id: int, text: str) -> TokenLogprob:
    return TokenLogprob(
        token_id, text, list(text.encode()), -0.25 * token_id, [TokenLogprob(99, "?", [63], -5.0)]
    )


def scripted(index: int, texts: list[str], finish: FinishReason, *, first_id: int = 0) -> list[StreamDelta]:
    """One-token pieces of one choice (with log probabilities), the last one finishing it."""
    return [
        StreamDelta(index, text, [first_id + i], finish if i == len(texts) - 1 else None, 4, i + 1,
                    [token(first_id + i, text)])
        for i, text in enumerate(texts)
    ]  # fmt: skip


def interleave(*choices: list[StreamDelta]) -> list[StreamDelta]:
    return [piece for step in zip(*choices, strict=True) for piece in step]


async def test_queued_chat_pieces_leave_as_one_chunk_per_choice(make_client: MakeClient) -> None:
    zero, one = ["Hel", "lo", ", wor", "ld"], ["A", "b", "ç", "!"]
    pieces = interleave(scripted(0, zero, "stop"), scripted(1, one, "length", first_id=10))
    client = await make_client(engines={"fake": QueuedEngine(pieces)})
    body = chat_body(stream=True, n=2, logprobs=True, top_logprobs=1, stream_options={"include_usage": True})
    data = events((await client.post("/v1/chat/completions", json=body)).text)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert chunks[-1]["usage"]["completion_tokens"] == 8 and chunks[-1]["choices"] == []
    by_choice: dict[int, list[dict[str, Any]]] = {0: [], 1: []}
    for chunk in chunks[1:-1]:  # after the role chunk, before the usage chunk
        (choice,) = chunk["choices"]
        by_choice[choice["index"]].append(choice)
    for index, texts, reason, first_id in ((0, zero, "stop", 0), (1, one, "length", 10)):
        content = [c for c in by_choice[index] if c["delta"].get("content")]
        assert len(content) == 1  # four queued tokens, one chunk
        assert content[0]["delta"]["content"] == "".join(texts)
        tokens = content[0]["logprobs"]["content"]
        assert [t["token"] for t in tokens] == texts
        assert [t["logprob"] for t in tokens] == [-0.25 * (first_id + i) for i in range(4)]
        assert [t["top_logprobs"][0]["token"] for t in tokens] == ["?"] * 4
        assert [c["finish_reason"] for c in by_choice[index]][-1] == reason
        assert [c["finish_reason"] for c in by_choice[index]][:-1] == [None] * (len(by_choice[index]) - 1)


async def test_queued_pieces_of_different_prompts_are_never_merged(make_client: MakeClient) -> None:
    client = await make_client(engines={"fake": QueuedEngine(scripted(0, ["a", " b", " c"], "stop"))})
    body = {"model": "fake", "prompt": ["one", "two"], "stream": True, "logprobs": 0}
    chunks = [json.loads(d) for d in events((await client.post("/v1/completions", json=body)).text)[:-1]]
    assert sorted(c["choices"][0]["index"] for c in chunks) == [0, 1]  # one chunk per prompt
    for chunk in chunks:
        choice = chunk["choices"][0]
        assert choice["text"] == "a b c" and choice["finish_reason"] == "stop"
        assert choice["logprobs"]["tokens"] == ["a", " b", " c"]
        assert choice["logprobs"]["text_offset"] == [0, 1, 3]


async def test_queued_pieces_of_a_tool_call_stream_the_call_once(make_client: MakeClient) -> None:
    text = 'Sure.<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
    pieces = scripted(0, [text[i : i + 3] for i in range(0, len(text), 3)], "stop")
    client = await make_client(engines={"fake": QueuedEngine(pieces)})
    body = chat_body(stream=True, tools=[{"type": "function", "function": WEATHER}])
    chunks = [json.loads(d) for d in events((await client.post("/v1/chat/completions", json=body)).text)[:-1]]
    deltas = [c["choices"][0]["delta"] for c in chunks[1:]]
    calls = [call for d in deltas for call in d.get("tool_calls", ())]
    assert [(c.get("id", "")[:5], c["function"].get("name")) for c in calls if "id" in c] == [
        ("call_", "get_weather")
    ]
    assert {c["index"] for c in calls} == {0}
    assert json.loads("".join(c["function"]["arguments"] for c in calls)) == {"city": "Paris"}
    assert "".join(d.get("content") or "" for d in deltas) == "Sure."
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"

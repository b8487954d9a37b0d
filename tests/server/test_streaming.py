"""SSE framing, include_usage, errors after the first byte, and client disconnects."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from blaze_ai import errors
from blaze_ai.engines import EngineManager, FakeConfig, FakeEngine
from blaze_ai.server import create_app

from .conftest import DisconnectingClient, MakeClient, ScriptedEngine, chat_body, wait_until


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

"""The Responses API's output items and event stream (``server/responses_stream.py``), in process."""

from __future__ import annotations

import json

import httpx
from openai.types.responses import Response

from blaze_ai import errors
from blaze_ai.server import tools
from blaze_ai.server.responses_stream import EventWriter, OutputBuilder
from blaze_ai.server.schemas.responses import OutputMessage

from .conftest import MakeClient, ScriptedEngine
from .test_responses import CALL, EVENT, WEATHER, WEATHER_FUNCTION, body, named_events


async def test_stream_events_in_order_with_sequence_numbers(client: httpx.AsyncClient) -> None:
    reply = await client.post("/v1/responses", json=body("a b c", stream=True))
    assert reply.headers["content-type"].startswith("text/event-stream")
    events = named_events(reply.text)
    for event in events:
        EVENT.validate_python(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    kinds = [e["type"] for e in events]
    text_deltas = kinds.count("response.output_text.delta")  # 3 tokens; ones that queued up are merged
    assert 1 <= text_deltas <= 3
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * text_deltas,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[0]["response"]["status"] == "in_progress" and events[0]["response"]["output"] == []
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    item_id = events[2]["item"]["id"]
    assert all(
        (d["item_id"], d["output_index"], d["content_index"], d["logprobs"]) == (item_id, 0, 0, [])
        for d in deltas
    )
    final = Response.model_validate(events[-1]["response"])
    assert "".join(d["delta"] for d in deltas) == final.output_text == "a b c"
    assert final.usage is not None and final.usage.output_tokens == 3
    assert events[-2]["item"] == events[-1]["response"]["output"][0]


async def test_streamed_tool_call_events(client: httpx.AsyncClient) -> None:
    reply = await client.post("/v1/responses", json=body(f"Sure. {CALL}", tools=[WEATHER], stream=True))
    events = named_events(reply.text)
    for event in events:
        EVENT.validate_python(event)
    kinds = [e["type"] for e in events]
    start = kinds.index("response.function_call_arguments.delta") - 1
    assert kinds[start] == "response.output_item.added" and events[start]["item"]["arguments"] == ""
    assert events[start]["output_index"] == 1 and kinds[start - 1] == "response.output_item.done"
    assert kinds[-3:] == [
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    arguments = "".join(e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta")
    assert json.loads(arguments) == {"city": "Paris"} and events[-3]["arguments"] == arguments
    final = events[-1]["response"]
    assert [item["type"] for item in final["output"]] == ["message", "function_call"]
    assert final["output"][1]["arguments"] == arguments
    non_streamed = (await client.post("/v1/responses", json=body(f"Sure. {CALL}", tools=[WEATHER]))).json()
    strip = [{k: v for k, v in item.items() if k not in ("id", "call_id")} for item in non_streamed["output"]]
    assert strip == [
        {k: v for k, v in item.items() if k not in ("id", "call_id")} for item in final["output"]
    ]


async def test_streamed_incomplete_response(client: httpx.AsyncClient) -> None:
    events = named_events(
        (await client.post("/v1/responses", json=body("a b c", stream=True, max_output_tokens=2))).text
    )
    assert events[-1]["type"] == "response.incomplete"
    final = Response.model_validate(events[-1]["response"])
    assert final.incomplete_details is not None and final.incomplete_details.reason == "max_output_tokens"
    assert final.output_text == "a b"


async def test_a_call_cut_off_by_max_output_tokens_is_an_incomplete_item(client: httpx.AsyncClient) -> None:
    request = body(CALL, tools=[WEATHER], max_output_tokens=4)  # the fake stops after '{"city":'
    whole = (await client.post("/v1/responses", json=request)).json()
    events = named_events((await client.post("/v1/responses", json={**request, "stream": True})).text)
    for data in (whole, events[-1]["response"]):
        assert data["status"] == "incomplete"
        (call,) = data["output"]
        assert (call["type"], call["arguments"], call["status"]) == (
            "function_call",
            '{"city":',
            "incomplete",
        )
        Response.model_validate(data)


def test_output_items_follow_one_another() -> None:
    writer = EventWriter()
    builder = OutputBuilder(
        tools.plan([{"type": "function", "function": WEATHER_FUNCTION}], None, None), writer
    )
    for word in f"Hi. {CALL} Then more. {CALL}".split(" "):
        builder.feed(word + " ")
    builder.close("stop")
    assert [item.type for item in builder.items] == ["message", "function_call", "message", "function_call"]
    assert [item.content[0].text for item in builder.items if isinstance(item, OutputMessage)] == [
        "Hi.",
        "Then more.",
    ]
    opened: list[int] = []
    for data in named_events(writer.take().decode()):
        EVENT.validate_python(data)
        if data["type"] == "response.output_item.added":
            assert opened == list(range(data["output_index"]))  # every earlier item is done
        elif data["type"] == "response.output_item.done":
            opened.append(data["output_index"])
    assert opened == [0, 1, 2, 3]


def test_an_empty_answer_is_one_empty_message() -> None:
    builder = OutputBuilder(tools.plan(None, None, None))
    builder.feed("")
    builder.close("stop")
    (message,) = builder.items
    assert (
        isinstance(message, OutputMessage) and message.content[0].text == "" and message.status == "completed"
    )


async def test_an_error_mid_stream_is_a_last_error_event(make_client: MakeClient) -> None:
    engine = ScriptedEngine(stream_error=errors.EngineFailureError("GPU fell over: secret"))
    client = await make_client(engines={"fake": engine})
    reply = await client.post("/v1/responses", json=body("a b c", stream=True))
    assert reply.status_code == 200
    events = named_events(reply.text)
    last = events[-1]
    EVENT.validate_python(last)
    assert last["type"] == "error" and "secret" not in last["message"]
    assert set(last) == {"type", "code", "message", "param", "sequence_number"}
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert "response.completed" not in [e["type"] for e in events]


async def test_unknown_model_before_the_stream_is_a_404(client: httpx.AsyncClient) -> None:
    reply = await client.post("/v1/responses", json={**body(stream=True), "model": "nope"})
    assert reply.status_code == 404 and reply.json()["error"]["code"] == "model_not_found"

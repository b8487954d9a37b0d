"""``POST /v1/responses``: input items to engine messages, the Response object, and its event stream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import httpx2
import openai
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import BaseModel, TypeAdapter

from blaze_ai.config import ServerConfig
from blaze_ai.engines import FakeEngine
from blaze_ai.engines.requests import GenerationRequest, StructuredOutput
from blaze_ai.server import create_app

from .conftest import MakeClient, fake_manager

EVENT = TypeAdapter[Any](ResponseStreamEvent)
CALL = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
WEATHER_FUNCTION = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
WEATHER = {"type": "function", **WEATHER_FUNCTION, "strict": True}


class RecordingEngine(FakeEngine):
    """A FakeEngine that keeps every generation request it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[GenerationRequest] = []

    async def execute(self, request: Any) -> Any:
        self.seen.append(request)
        return await super().execute(request)

    async def stream(self, request: Any) -> AsyncIterator[Any]:
        self.seen.append(request)
        async for piece in super().stream(request):
            yield piece


@pytest.fixture
def engine() -> RecordingEngine:
    return RecordingEngine()


@pytest.fixture
async def client(make_client: MakeClient, engine: RecordingEngine) -> httpx.AsyncClient:
    c: httpx.AsyncClient = await make_client(engines={"fake": engine})
    return c


def body(input_: Any = "hello there world", **extra: Any) -> dict[str, Any]:
    return {"model": "fake", "input": input_, **extra}


def named_events(text: str) -> list[dict[str, Any]]:
    """Each event's data; asserts the framing (``event: <type>`` then ``data: <json>``, no [DONE])."""
    assert text.endswith("\n\n")
    out = []
    for block in text[:-2].split("\n\n"):
        name, data = block.split("\n")
        assert name.startswith("event: ") and data.startswith("data: "), block
        event = json.loads(data[len("data: ") :])
        assert event["type"] == name[len("event: ") :]
        out.append(event)
    return out


async def test_string_input_gives_a_response_the_openai_client_reads(client: httpx.AsyncClient) -> None:
    reply = await client.post(
        "/v1/responses", json=body(max_output_tokens=20, store=True, metadata={"k": "v"})
    )
    assert reply.status_code == 200
    data = reply.json()
    parsed = Response.model_validate(data)
    assert parsed.output_text == "hello there world"
    assert data["id"].startswith("resp_") and data["object"] == "response"
    assert data["status"] == "completed" and data["incomplete_details"] is None and data["error"] is None
    (message,) = data["output"]
    assert (
        message["type"] == "message" and message["id"].startswith("msg_") and message["status"] == "completed"
    )
    assert message["content"] == [
        {"type": "output_text", "text": "hello there world", "annotations": [], "logprobs": []}
    ]
    assert data["usage"] == {
        "input_tokens": 3,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 3,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 6,
    }
    assert (data["max_output_tokens"], data["metadata"], data["store"]) == (20, {"k": "v"}, False)
    assert (data["tool_choice"], data["tools"], data["text"]) == ("auto", [], {"format": {"type": "text"}})


async def test_message_items_and_instructions_become_engine_messages(
    client: httpx.AsyncClient, engine: RecordingEngine
) -> None:
    items = [
        {"role": "developer", "content": "be brief"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi "}]},
        {"role": "assistant", "content": [{"type": "output_text", "text": "hello", "annotations": []}]},
        {
            "role": "user",
            "content": [{"type": "input_text", "text": "one "}, {"type": "input_text", "text": "two"}],
        },
    ]
    reply = await client.post("/v1/responses", json=body(items, instructions="You are terse."))
    assert reply.status_code == 200 and reply.json()["instructions"] == "You are terse."
    assert engine.seen[-1].messages == [
        {"role": "system", "content": "You are terse."},
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi "},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "one two"},
    ]
    assert Response.model_validate(reply.json()).output_text == "one two"


async def test_function_calls_and_outputs_become_tool_turns(
    client: httpx.AsyncClient, engine: RecordingEngine
) -> None:
    items = [
        {"role": "user", "content": "weather in Paris and Rome?"},
        {"role": "assistant", "content": [{"type": "output_text", "text": "Checking.", "annotations": []}]},
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city":"Paris"}',
        },
        {"type": "function_call", "call_id": "call_2", "name": "get_weather", "arguments": '{"city":"Rome"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        {
            "type": "function_call_output",
            "call_id": "call_2",
            "output": [{"type": "input_text", "text": "rain"}],
        },
        {
            "type": "function_call",
            "call_id": "call_3",
            "name": "get_weather",
            "arguments": "{}",
            "status": "completed",
        },
    ]
    reply = await client.post("/v1/responses", json=body(items, tools=[WEATHER]))
    assert reply.status_code == 200

    def call(call_id: str, arguments: str) -> dict[str, Any]:
        return {
            "id": call_id,
            "type": "function",
            "function": {"name": "get_weather", "arguments": arguments},
        }

    seen = engine.seen[-1]
    assert seen.messages == [
        {"role": "user", "content": "weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [call("call_1", '{"city":"Paris"}'), call("call_2", '{"city":"Rome"}')],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": "rain"},
        {"role": "assistant", "content": None, "tool_calls": [call("call_3", "{}")]},
    ]
    assert seen.tools is not None and [t["function"]["name"] for t in seen.tools] == ["get_weather"]


async def test_a_tool_call_is_a_function_call_item(client: httpx.AsyncClient) -> None:
    reply = await client.post("/v1/responses", json=body(f"Sure. {CALL}", tools=[WEATHER]))
    data = reply.json()
    parsed = Response.model_validate(data)
    message, call = data["output"]
    assert message["content"][0]["text"] == "Sure."
    assert (
        call["type"] == "function_call"
        and call["id"].startswith("fc_")
        and call["call_id"].startswith("call_")
    )
    assert (call["name"], json.loads(call["arguments"]), call["status"]) == (
        "get_weather",
        {"city": "Paris"},
        "completed",
    )
    assert parsed.tools[0].type == "function" and data["tools"][0] == WEATHER


async def test_named_tool_choice_and_no_parsing_without_tools(
    client: httpx.AsyncClient, engine: RecordingEngine
) -> None:
    choice = {"type": "function", "name": "get_weather"}
    data = (await client.post("/v1/responses", json=body(CALL, tools=[WEATHER], tool_choice=choice))).json()
    assert data["tool_choice"] == choice and data["output"][0]["type"] == "function_call"
    grammar = engine.seen[-1].params.structured
    assert grammar is not None and grammar.kind == "grammar"
    plain = (await client.post("/v1/responses", json=body(CALL))).json()
    assert [item["type"] for item in plain["output"]] == ["message"]


async def test_json_schema_format_constrains_the_output(
    client: httpx.AsyncClient, engine: RecordingEngine
) -> None:
    schema = {"type": "object", "properties": {"color": {"enum": ["red", "blue"]}}, "required": ["color"]}
    fmt = {"type": "json_schema", "name": "pick", "schema": schema, "strict": True}
    reply = await client.post("/v1/responses", json=body(text={"format": fmt}))
    assert reply.status_code == 200
    assert engine.seen[-1].params.structured == StructuredOutput(
        "json", json.dumps(schema, separators=(",", ":"))
    )
    assert reply.json()["text"] == {"format": fmt}
    Response.model_validate(reply.json())
    await client.post("/v1/responses", json=body(text={"format": {"type": "json_object"}}))
    assert engine.seen[-1].params.structured == StructuredOutput("json", '{"type": "object"}')
    await client.post("/v1/responses", json=body(text={"format": {"type": "text"}}))
    assert engine.seen[-1].params.structured is None


async def test_max_output_tokens_makes_an_incomplete_response(
    client: httpx.AsyncClient, engine: RecordingEngine
) -> None:
    data = (
        await client.post("/v1/responses", json=body("a b c d e", max_output_tokens=2, temperature=0))
    ).json()
    assert data["status"] == "incomplete" and data["incomplete_details"] == {"reason": "max_output_tokens"}
    assert data["output"][0]["status"] == "incomplete" and data["output"][0]["content"][0]["text"] == "a b"
    assert Response.model_validate(data).status == "incomplete"
    params = engine.seen[-1].params
    assert (params.max_tokens, params.temperature) == (2, 0.0)


@pytest.mark.parametrize(
    ("extra", "param", "named"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id", "previous_response_id"),
        ({"conversation": "conv_1"}, "conversation", "conversation"),
        ({"input": [{"type": "reasoning", "id": "rs_1", "summary": []}]}, "input", "'reasoning' item"),
        (
            {"input": [{"type": "image_generation_call", "id": "ig_1"}]},
            "input",
            "'image_generation_call' item",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "http://x"}]}]},
            "input",
            "'input_image' content part",
        ),
        ({"tools": [{"type": "web_search"}]}, "tools", "'web_search' tool"),
        ({"tool_choice": {"type": "file_search"}}, "tool_choice", "'file_search'"),
        ({"include": ["message.output_text.logprobs"]}, "include", "include"),
        ({"reasoning": {"effort": "high"}}, "reasoning", "reasoning"),
        ({"top_logprobs": 3}, "top_logprobs", "top_logprobs"),
        ({"background": True}, "background", "background"),
        ({"max_output_tokens": 10**9}, "max_output_tokens", "max_output_tokens is 1000000000"),
        ({"frequency_penalty": 1.0}, "frequency_penalty", "frequency_penalty"),
        (
            {"text": {"format": {"type": "json_schema", "name": "x"}}},
            "text.format",
            "needs a name and a schema",
        ),
    ],
)
async def test_what_blaze_cannot_do_is_a_400_that_names_it(
    client: httpx.AsyncClient, extra: dict[str, Any], param: str, named: str
) -> None:
    reply = await client.post("/v1/responses", json={**body(), **extra})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert named in error["message"]


async def test_neutral_values_the_agents_sdk_sends_are_accepted(client: httpx.AsyncClient) -> None:
    extra = {
        "include": [],
        "store": False,
        "truncation": "disabled",
        "parallel_tool_calls": False,
        "tool_choice": "auto",
        "tools": [{**WEATHER, "strict": False, "description": None}],
        "reasoning": None,
        "prompt": None,
        "service_tier": "auto",
        "top_logprobs": 0,
        "stream_options": {"include_obfuscation": False},
        "user": "u1",
        "seed": 3,
    }
    reply = await client.post("/v1/responses", json=body(**extra))
    assert reply.status_code == 200, reply.text
    assert reply.json()["parallel_tool_calls"] is False


async def test_the_route_is_rate_limited_and_needs_a_key(make_client: MakeClient) -> None:
    limited = await make_client(rate_limit_rpm=1)
    assert (await limited.post("/v1/responses", json=body())).status_code == 200
    assert (await limited.post("/v1/responses", json=body())).status_code == 429
    keyed = await make_client(api_keys=("sk-1",))
    assert (await keyed.post("/v1/responses", json=body())).status_code == 401
    headers = {"Authorization": "Bearer sk-1"}
    assert (await keyed.post("/v1/responses", json=body(), headers=headers)).status_code == 200


async def test_the_official_client_in_process(engine: RecordingEngine) -> None:
    app = create_app(ServerConfig(), fake_manager(fake=engine))
    async with app.router.lifespan_context(app):
        await app.state.start_task
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as http:
            sdk = openai.AsyncOpenAI(
                base_url="http://testserver/v1", api_key="-", http_client=http, max_retries=0
            )
            whole = await sdk.responses.create(model="fake", input="one two", max_output_tokens=8)
            assert whole.output_text == "one two" and whole.status == "completed"
            stream = await sdk.responses.create(model="fake", input="one two", stream=True)
            kinds, text, final = [], "", None
            async for event in stream:
                kinds.append(event.type)
                if event.type == "response.output_text.delta":
                    text += event.delta
                if event.type == "response.completed":
                    final = event.response
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert final is not None and final.output_text == text == "one two"


async def test_the_agents_sdk_runs_a_tool_loop_and_structured_output(engine: RecordingEngine) -> None:
    """openai-agents' default model: a tool turn, whole and streamed, then typed output over two turns."""
    pytest.importorskip("agents")
    import agents
    from agents.models.openai_responses import OpenAIResponsesModel

    class City(BaseModel):
        city: str

    @agents.function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    config = agents.RunConfig(tracing_disabled=True)
    app = create_app(ServerConfig(), fake_manager(fake=engine))
    async with app.router.lifespan_context(app):
        await app.state.start_task
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as http:
            sdk = openai.AsyncOpenAI(
                base_url="http://testserver/v1", api_key="-", http_client=http, max_retries=0
            )
            model = OpenAIResponsesModel("fake", sdk)
            agent = agents.Agent(name="a", instructions="Be helpful.", model=model, tools=[get_weather])
            result = await agents.Runner.run(agent, CALL, run_config=config)
            assert result.final_output == "sunny in Paris"  # the fake echoes the tool's output
            replayed = engine.seen[-1].messages
            assert replayed is not None and [m["role"] for m in replayed] == [
                "system",
                "user",
                "assistant",
                "tool",
            ]
            streamed = agents.Runner.run_streamed(agent, CALL, run_config=config)
            async for _ in streamed.stream_events():
                pass
            assert streamed.final_output == "sunny in Paris"
            settings = agents.ModelSettings(temperature=0.0, max_tokens=50, truncation="auto", store=False)
            typed = agents.Agent(name="t", model=model, output_type=City, model_settings=settings)
            first = await agents.Runner.run(typed, '{"city": "Paris"}', run_config=config)
            assert first.final_output == City(city="Paris")
            again = first.to_input_list()
            again.append({"role": "user", "content": '{"city": "Rome"}'})
            assert (await agents.Runner.run(typed, again, run_config=config)).final_output == City(
                city="Rome"
            )

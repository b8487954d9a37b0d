"""The official openai client's Responses API against a real ``blaze serve`` on the tiny built-in model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import openai
import pytest
from openai.types.responses import ResponseFunctionToolCall

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

KEY, ADMIN = "sk-e2e-user", "sk-e2e-admin"
COLOR = {
    "type": "object",
    "properties": {
        "color": {"enum": ["red", "green", "blue"]},
        "name": {"type": "string", "maxLength": 8},
    },
    "required": ["color", "name"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 10}, "unit": {"enum": ["c", "f"]}},
    "required": ["city", "unit"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, gateway: Any, tiny_llm_yaml: Any) -> Iterator[Any]:
    with gateway(tiny_llm_yaml(KEY, ADMIN), tmp_path_factory.mktemp("responses")) as process:
        yield process


@pytest.fixture
def client(server: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=KEY, max_retries=0, timeout=60)


def test_whole_response(client: openai.OpenAI) -> None:
    reply = client.responses.create(model="tiny", input="Say something.", max_output_tokens=6, temperature=0)
    assert reply.object == "response" and reply.id.startswith("resp_") and reply.model == "tiny"
    assert reply.status in ("completed", "incomplete") and reply.output_text
    assert reply.usage is not None and reply.usage.input_tokens > 0
    assert reply.usage.total_tokens == reply.usage.input_tokens + reply.usage.output_tokens
    if reply.status == "incomplete":
        assert reply.incomplete_details is not None and reply.usage.output_tokens == 6


def test_streamed_deltas_join_to_the_final_text(client: openai.OpenAI) -> None:
    whole = client.responses.create(model="tiny", input="Say something.", max_output_tokens=8, temperature=0)
    stream = client.responses.create(
        model="tiny", input="Say something.", max_output_tokens=8, temperature=0, stream=True
    )
    events = list(stream)
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] in ("response.completed", "response.incomplete")
    assert [event.sequence_number for event in events] == list(range(len(events)))
    text = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    final = events[-1].response  # type: ignore[union-attr]
    assert text == final.output_text == whole.output_text


def test_json_schema_text_format(client: openai.OpenAI) -> None:
    fmt: Any = {"type": "json_schema", "name": "pick", "schema": COLOR, "strict": True}
    reply = client.responses.create(
        model="tiny", input="Pick a color.", text={"format": fmt}, max_output_tokens=120, temperature=0
    )
    assert reply.status == "completed", reply.output_text
    jsonschema.validate(json.loads(reply.output_text), COLOR)


def test_required_function_call(client: openai.OpenAI) -> None:
    tool: Any = {"type": "function", "name": "get_weather", "parameters": WEATHER, "strict": True}
    reply = client.responses.create(
        model="tiny",
        input="What is the weather in Paris?",
        tools=[tool],
        tool_choice="required",
        parallel_tool_calls=False,
        max_output_tokens=200,
        temperature=0,
    )
    assert reply.status == "completed"
    calls = [item for item in reply.output if isinstance(item, ResponseFunctionToolCall)]
    assert len(calls) == 1 and calls[0].name == "get_weather" and calls[0].call_id.startswith("call_")
    jsonschema.validate(json.loads(calls[0].arguments), WEATHER)


def test_stored_state_is_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="tiny", input="hi", previous_response_id="resp_123")
    assert "previous_response_id" in str(caught.value)

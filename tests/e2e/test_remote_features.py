"""Tools, structured outputs, penalties, logprobs, echo and the tokenizer through a front router server.

A backend ``blaze serve`` runs the tiny built-in model; a front ``blaze serve`` has the same model
with ``replicas: 0`` and the backend as its one remote. Every request below goes client -> front
(its router and remote replica) -> backend (the engine) and back, so the parameters must survive
the trip in both directions.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import openai
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BACKEND = """
server: {host: 127.0.0.1}
models:
  - {name: tiny, kind: llm, llm: {source: "builtin:tiny-llama", max_batch_size: 4}}
"""
FRONT = """
server: {{host: 127.0.0.1}}
models:
  - name: tiny
    kind: llm
    replicas: 0
    remotes: [{{url: "{url}", health_path: /health/ready}}]
"""
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 12}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
MESSAGES = [{"role": "user", "content": "Weather in Paris?"}]


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory, gateway: Any) -> Iterator[Any]:
    root: Path = tmp_path_factory.mktemp("remote-features")
    with (
        gateway(BACKEND, root / "backend") as backend,
        gateway(FRONT.format(url=backend.base_url), root / "front") as server,
    ):
        yield server


@pytest.fixture
def client(front: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{front.base_url}/v1", api_key="unused", max_retries=0, timeout=60)


def test_a_required_tool_call_comes_back_parsed(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="tiny", messages=MESSAGES, tools=[WEATHER], tool_choice="required",
        parallel_tool_calls=False, max_tokens=40, temperature=0,
    )  # fmt: skip
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls is not None
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather" and call.id.startswith("call_")
    jsonschema.validate(json.loads(call.function.arguments), WEATHER["function"]["parameters"])


def test_streamed_tool_call_deltas_reassemble(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="tiny", messages=MESSAGES, tools=[WEATHER], tool_choice="required",
        parallel_tool_calls=False, max_tokens=40, temperature=0, stream=True,
    )  # fmt: skip
    name, arguments, reasons = "", "", []
    for chunk in stream:
        for choice in chunk.choices:
            reasons.append(choice.finish_reason)
            for call in choice.delta.tool_calls or []:
                assert call.function is not None
                name += call.function.name or ""
                arguments += call.function.arguments or ""
    assert name == "get_weather" and reasons[-1] == "tool_calls"
    jsonschema.validate(json.loads(arguments), WEATHER["function"]["parameters"])


def test_json_schema_output_validates(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}, "n": {"type": "integer", "minimum": 0, "maximum": 9}},
        "required": ["ok", "n"],
        "additionalProperties": False,
    }
    reply = client.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=40, temperature=0.8, seed=1,
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
    )  # fmt: skip
    jsonschema.validate(json.loads(reply.choices[0].message.content or ""), schema)


def test_logprobs_with_alternatives_and_a_banned_token(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=6, temperature=0, logprobs=True, top_logprobs=3
    )
    content = first.choices[0].logprobs.content if first.choices[0].logprobs else None
    assert content and all(len(t.top_logprobs) == 3 and t.bytes is not None for t in content)
    banned = content[0].token
    tokens = httpx.post(
        f"{client.base_url}".replace("/v1/", "/tokenize"), json={"model": "tiny", "prompt": banned}
    ).json()["tokens"]
    again = client.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=6, temperature=0, logprobs=True,
        logit_bias={str(tokens[0]): -100},
    )  # fmt: skip
    assert again.choices[0].logprobs is not None
    assert banned not in [t.token for t in again.choices[0].logprobs.content or []][:1]


def test_echo_scores_the_prompt_without_generating(client: openai.OpenAI) -> None:
    reply = client.completions.create(
        model="tiny", prompt="Once upon a time", max_tokens=0, echo=True, logprobs=1
    )
    choice = reply.choices[0]
    assert choice.text == "Once upon a time" and choice.finish_reason == "length"
    assert choice.logprobs is not None and choice.logprobs.token_logprobs is not None
    assert choice.logprobs.token_logprobs[0] is None
    assert all(lp is not None and lp <= 0 for lp in choice.logprobs.token_logprobs[1:])


def test_tokenize_and_detokenize_round_trip(front: Any) -> None:
    tokens = httpx.post(f"{front.base_url}/tokenize", json={"model": "tiny", "prompt": "Hello there"}).json()
    assert tokens["count"] == len(tokens["tokens"]) > 0
    text = httpx.post(
        f"{front.base_url}/detokenize", json={"model": "tiny", "tokens": tokens["tokens"]}
    ).json()
    assert text["prompt"] == "Hello there"

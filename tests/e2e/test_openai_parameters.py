"""Every sampling, structured-output, tool and log-probability parameter through the official client.

One real ``blaze serve`` per module serves the tiny built-in (``tiny``: fast, random weights, where any
token will do) and SmolLM2-135M (``smol``: where the answer must make sense, such as a JSON object
that ends or a tool call with real arguments). The response cache is off, so that a streamed request
and its whole twin both run on the engine. Everything greedy unless seeded, with small ``max_tokens``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import jsonschema
import openai
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

KEY = "sk-e2e-parameters"
CONFIG = f"""
server:
  host: 127.0.0.1
  api_keys: [{KEY}]
cache: {{mode: "off"}}
models:
  - name: tiny
    kind: llm
    llm: {{source: "builtin:tiny-llama", device: cpu, max_batch_size: 8}}
  - name: smol
    kind: llm
    llm: {{source: "builtin:smollm2-135m", device: cpu, max_batch_size: 8}}
"""
HI = [{"role": "user", "content": "Say something."}]
WEATHER_QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 20}, "unit": {"enum": ["c", "f"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
TIME: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The time in a time zone.",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "integer", "minimum": -12, "maximum": 12}},
            "required": ["zone"],
            "additionalProperties": False,
        },
    },
}
TOOLS = [WEATHER, TIME]
PARAMETERS = {tool["function"]["name"]: tool["function"]["parameters"] for tool in TOOLS}
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 3},
        "ok": {"type": "boolean"},
    },
    "required": ["name", "age", "ok"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, gateway: Any) -> Iterator[Any]:
    with gateway(CONFIG, tmp_path_factory.mktemp("parameters")) as process:
        yield process


@pytest.fixture(scope="module")
def client(server: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def http(server: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as c:
        yield c


def token_of(http: httpx.Client, text: str) -> tuple[int, str]:
    """The tiny model's one token for ``text`` (its id and its text)."""
    body = {"model": "tiny", "prompt": text, "add_special_tokens": False, "return_token_strs": True}
    found = http.post("/tokenize", json=body).json()
    assert found["count"] == 1, found
    return found["tokens"][0], found["token_strs"][0]


@pytest.fixture(scope="module")
def eos(http: httpx.Client) -> int:
    return token_of(http, "<|im_end|>")[0]


# -- reading answers, whole and streamed ---------------------------------------------------------


@dataclass
class Answer:
    """One chat choice, from a whole response or reassembled from a stream."""

    content: str | None
    finish: str | None
    tokens: list[Any] = field(default_factory=list)  # logprobs.content entries
    calls: list[tuple[str, str, str]] = field(default_factory=list)  # (id, name, arguments)


def chat(client: openai.OpenAI, model: str = "tiny", messages: Any = HI, **params: Any) -> Answer:
    reply = client.chat.completions.create(model=model, messages=messages, **params)
    choice = reply.choices[0]
    calls = [(c.id, c.function.name, c.function.arguments) for c in choice.message.tool_calls or []]
    tokens = list(choice.logprobs.content or []) if choice.logprobs else []
    return Answer(choice.message.content, choice.finish_reason, tokens, calls)


def stream_chat(client: openai.OpenAI, model: str = "tiny", messages: Any = HI, **params: Any) -> Answer:
    """A streamed chat answer; tool-call deltas must start with id, type and name, then add arguments."""
    content: list[str] = []
    finish: str | None = None
    tokens: list[Any] = []
    calls: dict[int, list[str]] = {}
    for chunk in client.chat.completions.create(model=model, messages=messages, stream=True, **params):
        for choice in chunk.choices:
            delta = choice.delta
            content.append(delta.content or "")
            for call in delta.tool_calls or []:
                if call.index not in calls:
                    assert call.id and call.type == "function" and call.function and call.function.name
                    calls[call.index] = [call.id, call.function.name, call.function.arguments or ""]
                else:
                    assert call.id is None and call.function is not None and call.function.name is None
                    calls[call.index][2] += call.function.arguments or ""
            if choice.logprobs is not None:
                tokens += choice.logprobs.content or []
            finish = choice.finish_reason or finish
    assert sorted(calls) == list(range(len(calls)))
    joined = "".join(content)
    return Answer(
        joined or None, finish, tokens, [(i, n, a) for i, n, a in (calls[k] for k in sorted(calls))]
    )


def answer(client: openai.OpenAI, stream: bool, **params: Any) -> Answer:
    return stream_chat(client, **params) if stream else chat(client, **params)


def assert_valid_calls(calls: list[tuple[str, str, str]]) -> None:
    """Each call has its own id, a known function and JSON arguments valid against its parameters."""
    assert calls
    assert len({call_id for call_id, _, _ in calls}) == len(calls)
    for call_id, name, arguments in calls:
        assert call_id.startswith("call_")
        assert name in PARAMETERS
        jsonschema.validate(json.loads(arguments), PARAMETERS[name])


def completion(client: openai.OpenAI, stream: bool, **params: Any) -> tuple[str, str | None, Any]:
    """Text, finish reason and logprobs (lists merged over the stream's chunks) of one completion."""
    params = {"model": "tiny", "temperature": 0, **params}
    if not stream:
        choice = client.completions.create(**params).choices[0]
        return choice.text, choice.finish_reason, choice.logprobs
    text, finish, merged = "", None, None
    for chunk in client.completions.create(stream=True, **params):
        for choice in chunk.choices:
            text += choice.text
            finish = choice.finish_reason or finish
            if choice.logprobs is not None:
                if merged is None:
                    merged = choice.logprobs.model_copy(deep=True)
                else:
                    for name in ("tokens", "token_logprobs", "top_logprobs", "text_offset"):
                        setattr(
                            merged,
                            name,
                            (getattr(merged, name) or []) + (getattr(choice.logprobs, name) or []),
                        )
    return text, finish, merged


# -- response_format -------------------------------------------------------------------------------


def test_json_object_is_a_json_object_whole_and_streamed(client: openai.OpenAI) -> None:
    ask = [{"role": "user", "content": "Reply with a JSON object with the keys name and age of a person."}]
    params: dict[str, Any] = {"model": "smol", "messages": ask, "max_tokens": 60, "temperature": 0}
    whole = chat(client, response_format={"type": "json_object"}, **params)
    streamed = stream_chat(client, response_format={"type": "json_object"}, **params)
    assert whole.finish == streamed.finish == "stop"
    assert whole.content is not None and isinstance(json.loads(whole.content), dict)
    assert streamed.content == whole.content


@pytest.mark.parametrize("sampling", [{"temperature": 0}, {"temperature": 1.0, "seed": 7}])
def test_json_schema_output_validates_whole_and_streamed(
    client: openai.OpenAI, sampling: dict[str, Any]
) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
    whole = chat(client, response_format=fmt, max_tokens=200, **sampling)
    streamed = stream_chat(client, response_format=fmt, max_tokens=200, **sampling)
    assert whole.finish == streamed.finish == "stop"
    assert whole.content is not None
    jsonschema.validate(json.loads(whole.content), PERSON)
    assert streamed.content == whole.content


# -- tools -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool_choice", "parallel", "count"),
    [
        ("required", None, None),
        ("required", False, 1),
        ({"type": "function", "function": {"name": "get_time"}}, None, 1),
        ({"type": "function", "function": {"name": "get_weather"}}, False, 1),
    ],
)
def test_forced_tool_calls_are_valid_and_stream_as_deltas(
    client: openai.OpenAI, tool_choice: Any, parallel: bool | None, count: int | None
) -> None:
    params: dict[str, Any] = {
        "model": "smol",
        "messages": WEATHER_QUESTION,
        "max_tokens": 120,
        "temperature": 0,
    }
    params.update(tools=TOOLS, tool_choice=tool_choice)
    if parallel is not None:
        params["parallel_tool_calls"] = parallel
    whole, streamed = chat(client, **params), stream_chat(client, **params)
    for got in (whole, streamed):
        assert got.finish == "tool_calls"
        assert not got.content
        assert_valid_calls(got.calls)
        if count is not None:
            assert len(got.calls) == count
        if isinstance(tool_choice, dict):
            assert {name for _, name, _ in got.calls} == {tool_choice["function"]["name"]}
    assert [c[1:] for c in streamed.calls] == [c[1:] for c in whole.calls]  # ids are new per request


@pytest.mark.parametrize("stream", [False, True])
def test_tool_choice_none_answers_in_text(client: openai.OpenAI, stream: bool) -> None:
    got = answer(
        client,
        stream,
        model="smol",
        messages=WEATHER_QUESTION,
        tools=TOOLS,
        tool_choice="none",
        max_tokens=24,
    )
    assert got.calls == [] and got.content
    assert got.finish in ("stop", "length")


@pytest.mark.parametrize("stream", [False, True])
def test_tool_choice_auto_gives_text_or_valid_calls(client: openai.OpenAI, stream: bool) -> None:
    got = answer(
        client,
        stream,
        model="smol",
        messages=WEATHER_QUESTION,
        tools=TOOLS,
        tool_choice="auto",
        parallel_tool_calls=False,
        max_tokens=60,
        temperature=0,
    )
    if got.calls:
        assert got.finish == "tool_calls" and len(got.calls) == 1
        assert_valid_calls(got.calls)
    else:
        assert got.content and got.finish in ("stop", "length")
        if "<tool_call>" in got.content:  # only a call cut off by max_tokens stays text
            assert got.finish == "length"


def test_a_second_turn_answers_a_tool_result(client: openai.OpenAI) -> None:
    first = chat(
        client, model="smol", messages=WEATHER_QUESTION, tools=TOOLS, tool_choice="required", max_tokens=120,
        parallel_tool_calls=False, temperature=0,
    )  # fmt: skip
    ((call_id, name, arguments),) = first.calls
    turn = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    messages = [
        *WEATHER_QUESTION,
        {"role": "assistant", "content": None, "tool_calls": [turn]},
        {"role": "tool", "tool_call_id": call_id, "content": json.dumps({"temperature_c": 21})},
    ]
    for stream in (False, True):
        second = answer(
            client, stream, model="smol", messages=messages, tools=TOOLS, max_tokens=24, temperature=0
        )
        assert second.finish in ("stop", "length", "tool_calls")
        assert second.content or second.calls


def test_tool_choice_naming_an_unknown_function_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="tiny",
            messages=HI,
            tools=TOOLS,
            tool_choice={"type": "function", "function": {"name": "nope"}},
        )
    assert info.value.param == "tool_choice" and "nope" in str(info.value)


# -- penalties and biases --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "penalty",
    [{"frequency_penalty": 2.0}, {"presence_penalty": 2.0}, {"frequency_penalty": -2.0}],
)
def test_penalties_change_greedy_output_whole_and_streamed(
    client: openai.OpenAI, penalty: dict[str, Any]
) -> None:
    plain = chat(client, max_tokens=24, temperature=0)
    whole = chat(client, max_tokens=24, temperature=0, **penalty)
    streamed = stream_chat(client, max_tokens=24, temperature=0, **penalty)
    assert whole.content != plain.content
    assert streamed.content == whole.content


@pytest.mark.parametrize("stream", [False, True])
def test_logit_bias_bans_and_forces_tokens(client: openai.OpenAI, http: httpx.Client, stream: bool) -> None:
    plain = chat(client, max_tokens=16, temperature=0, logprobs=True)
    assert plain.content
    found = http.post(
        "/tokenize", json={"model": "tiny", "prompt": plain.content, "return_token_strs": True}
    ).json()
    banned = {str(t): -100 for t in found["tokens"]}
    banned_texts = set(found["token_strs"])
    assert banned_texts & {t.token for t in plain.tokens}  # what greedy said before is what is banned
    params = {"max_tokens": 16, "temperature": 0, "logprobs": True}
    for sampling in ({}, {"temperature": 1.3, "seed": 3}):
        got = answer(client, stream, **{**params, **sampling, "logit_bias": banned})
        assert got.tokens and not banned_texts & {t.token for t in got.tokens}
    forced_id, forced_text = token_of(http, " EOF")
    forced = answer(
        client, stream, max_tokens=5, temperature=1.0, seed=1, logprobs=True, logit_bias={str(forced_id): 100}
    )
    assert [t.token for t in forced.tokens] == [forced_text] * 5
    assert forced.content == forced_text * 5 and forced.finish == "length"


# -- log probabilities -----------------------------------------------------------------------------


@pytest.mark.parametrize("top", [0, 1, 5, 20])
def test_chat_logprobs_with_top_alternatives(client: openai.OpenAI, top: int) -> None:
    whole = chat(client, max_tokens=5, temperature=0, logprobs=True, top_logprobs=top)
    streamed = stream_chat(client, max_tokens=5, temperature=0, logprobs=True, top_logprobs=top)
    assert whole.finish == "length" and len(whole.tokens) == 5
    spelled = b"".join(bytes(t.bytes or []) for t in whole.tokens).decode("utf-8", errors="replace")
    assert spelled == whole.content
    for entry in whole.tokens:
        assert entry.logprob <= 0.0
        assert len(entry.top_logprobs) == top
        values = [alt.logprob for alt in entry.top_logprobs]
        assert values == sorted(values, reverse=True)
        if top:
            assert entry.top_logprobs[0].token == entry.token  # greedy
            assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob)
        if not entry.token.startswith("bytes:"):
            assert bytes(entry.bytes or []).decode() == entry.token
    assert [(t.token, t.logprob) for t in streamed.tokens] == [(t.token, t.logprob) for t in whole.tokens]


def test_chat_logprobs_limits(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as too_many:
        client.chat.completions.create(model="tiny", messages=HI, logprobs=True, top_logprobs=21)
    assert too_many.value.param == "top_logprobs"
    with pytest.raises(openai.BadRequestError) as alone:
        client.chat.completions.create(model="tiny", messages=HI, top_logprobs=2)
    assert alone.value.param == "top_logprobs"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("k", [0, 1, 5])
def test_completion_logprobs(client: openai.OpenAI, k: int, stream: bool) -> None:
    text, finish, logprobs = completion(client, stream, prompt="Once upon a time", max_tokens=6, logprobs=k)
    assert finish == "length" and logprobs is not None
    assert len(logprobs.tokens) == len(logprobs.token_logprobs) == len(logprobs.text_offset) == 6
    assert all(lp is not None and lp <= 0 for lp in logprobs.token_logprobs)
    assert_offsets(text, logprobs.tokens, logprobs.text_offset, "")
    if k:
        assert logprobs.top_logprobs is not None and len(logprobs.top_logprobs) == 6
        for token, lp, alternatives in zip(
            logprobs.tokens, logprobs.token_logprobs, logprobs.top_logprobs, strict=True
        ):
            assert 1 <= len(alternatives) <= k
            assert alternatives[token] == pytest.approx(lp)  # greedy: the chosen token is the best
            assert max(alternatives.values()) == pytest.approx(lp)
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="tiny", prompt="x", logprobs=6)
    assert info.value.param == "logprobs"


def assert_offsets(text: str, tokens: list[str], offsets: list[int], prompt: str) -> None:
    """Offsets rise; a whole-character token sits at its offset; a piece of a character is part of it."""
    assert offsets == sorted(offsets) and offsets[0] == 0
    for token, offset in zip(tokens, offsets, strict=True):
        if not token.startswith("bytes:"):
            assert text[offset : offset + len(token)] == token, (token, offset)
        elif offset < len(prompt):
            piece = bytes(int(h, 16) for h in re.findall(r"\\x([0-9a-f]{2})", token))
            assert piece in text[offset].encode(), (token, offset)


PROMPT = "héllo wörld € 😀 naïve"


@pytest.mark.parametrize("stream", [False, True])
def test_echo_returns_the_prompt_and_its_logprobs(
    client: openai.OpenAI, http: httpx.Client, stream: bool
) -> None:
    plain, finish, none = completion(client, stream, prompt=PROMPT, max_tokens=4, echo=True)
    assert plain.startswith(PROMPT) and len(plain) > len(PROMPT) and none is None and finish == "length"
    text, finish, logprobs = completion(client, stream, prompt=PROMPT, max_tokens=4, echo=True, logprobs=2)
    assert text == plain
    prompt_tokens = http.post("/tokenize", json={"model": "tiny", "prompt": PROMPT}).json()["count"]
    assert len(logprobs.tokens) == prompt_tokens + 4
    assert logprobs.token_logprobs[0] is None and logprobs.top_logprobs[0] is None
    assert all(lp is not None for lp in logprobs.token_logprobs[1:])
    assert any(t.startswith("bytes:") for t in logprobs.tokens[:prompt_tokens])  # é, €, 😀 are split
    assert_offsets(text, logprobs.tokens, logprobs.text_offset, PROMPT)


@pytest.mark.parametrize("stream", [False, True])
def test_max_tokens_zero_with_echo_scores_the_prompt(client: openai.OpenAI, stream: bool) -> None:
    text, finish, logprobs = completion(client, stream, prompt=PROMPT, max_tokens=0, echo=True, logprobs=1)
    assert text == PROMPT and finish == "length"
    assert logprobs.token_logprobs[0] is None
    assert "".join(logprobs.tokens).count("bytes:") >= 1
    assert_offsets(text, logprobs.tokens, logprobs.text_offset, PROMPT)
    usage = client.completions.create(model="tiny", prompt=PROMPT, max_tokens=0, echo=True).usage
    assert usage is not None and usage.completion_tokens == 0 and usage.prompt_tokens == len(logprobs.tokens)


def test_max_tokens_zero_without_echo_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="tiny", prompt="x", max_tokens=0)
    assert info.value.param == "max_tokens"
    with pytest.raises(openai.BadRequestError) as chat_info:
        client.chat.completions.create(model="tiny", messages=HI, max_tokens=0)
    assert chat_info.value.param == "max_tokens"


# -- Blaze extras (vLLM's names) -------------------------------------------------------------------

NAME_AND_NUMBER = r"[A-Z][a-z]{2,8} [0-9]{1,3}"
COLOURS = ["red", "green", "blue", "light blue"]
YES_NO_NUMBER = 'start: "yes" | "no" | NUMBER\nNUMBER: /[0-9]{1,3}/\n'


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("extra", "check"),
    [
        ({"structured_outputs": {"regex": NAME_AND_NUMBER}}, lambda t: re.fullmatch(NAME_AND_NUMBER, t)),
        ({"guided_regex": NAME_AND_NUMBER}, lambda t: re.fullmatch(NAME_AND_NUMBER, t)),
        ({"structured_outputs": {"choice": COLOURS}}, lambda t: t in COLOURS),
        ({"guided_choice": COLOURS}, lambda t: t in COLOURS),
        ({"structured_outputs": {"grammar": YES_NO_NUMBER}}, lambda t: re.fullmatch(r"yes|no|[0-9]{1,3}", t)),
        (
            {"structured_outputs": {"json": PERSON}},
            lambda t: jsonschema.validate(json.loads(t), PERSON) is None,
        ),
        ({"guided_json": PERSON}, lambda t: jsonschema.validate(json.loads(t), PERSON) is None),
    ],
    ids=["regex", "guided_regex", "choice", "guided_choice", "grammar", "json", "guided_json"],
)
def test_structured_output_extras(
    client: openai.OpenAI, extra: dict[str, Any], check: Any, stream: bool
) -> None:
    for sampling in ({"temperature": 0}, {"temperature": 1.2, "seed": 5}):
        got = answer(client, stream, max_tokens=200, extra_body=extra, **sampling)
        assert got.finish == "stop" and got.content is not None
        assert check(got.content), got.content
        text, finish, _ = completion(
            client, stream, prompt="Answer:", max_tokens=200, extra_body=extra, **sampling
        )
        assert finish == "stop" and check(text), text


@pytest.mark.parametrize("stream", [False, True])
def test_top_k_min_p_and_repetition_penalty(client: openai.OpenAI, stream: bool) -> None:
    greedy = chat(client, max_tokens=16, temperature=0).content
    assert (
        answer(client, stream, max_tokens=16, temperature=1.5, seed=1, extra_body={"top_k": 1}).content
        == greedy
    )
    assert (
        answer(client, stream, max_tokens=16, temperature=1.5, seed=2, extra_body={"min_p": 1.0}).content
        == greedy
    )
    hot = answer(
        client, stream, max_tokens=16, temperature=1.5, seed=2, extra_body={"min_p": 0.0, "top_k": 0}
    )
    assert hot.content != greedy
    fox = {"prompt": "The quick brown fox", "max_tokens": 24}
    plain = completion(client, stream, **fox)[0]
    assert completion(client, stream, **fox, extra_body={"repetition_penalty": 1.0})[0] == plain
    assert completion(client, stream, **fox, extra_body={"repetition_penalty": 1.8})[0] != plain


@pytest.mark.parametrize("stream", [False, True])
def test_min_tokens_ignore_eos_and_stop_token_ids(
    client: openai.OpenAI, http: httpx.Client, eos: int, stream: bool
) -> None:
    eos_first = {str(eos): 100}
    params = {"max_tokens": 8, "temperature": 0, "logprobs": True, "logit_bias": eos_first}
    # The ending token (EOS, or one of stop_token_ids) is reported with its log probability, never
    # as text: lm-evaluation-harness reads one logprobs entry per generated token.
    at_once = answer(client, stream, **params)
    assert [t.token for t in at_once.tokens] == ["<|im_end|>"] and not at_once.content
    assert at_once.finish == "stop"
    held = answer(client, stream, **params, extra_body={"min_tokens": 5})
    assert len(held.tokens) == 6 and held.tokens[-1].token == "<|im_end|>" and held.finish == "stop"
    past = answer(client, stream, **params, extra_body={"ignore_eos": True})
    assert len(past.tokens) == 8 and past.finish == "length"
    assert {t.token for t in past.tokens} == {"<|im_end|>"} and not past.content
    stop_id, stop_text = token_of(http, " EOF")
    params["logit_bias"] = {str(stop_id): 100}
    unstopped = answer(client, stream, **params)
    assert [t.token for t in unstopped.tokens] == [stop_text] * 8 and unstopped.finish == "length"
    stopped = answer(client, stream, **params, extra_body={"stop_token_ids": [stop_id], "min_tokens": 3})
    assert len(stopped.tokens) == 4 and stopped.tokens[-1].token == stop_text and stopped.finish == "stop"
    assert stop_text not in {t.token for t in stopped.tokens[:-1]} and stop_text not in (
        stopped.content or ""
    )


# -- errors ----------------------------------------------------------------------------------------


BAD_PARAMETERS: list[tuple[dict[str, Any], list[str]]] = [
    (
        {"response_format": {"type": "json_object"}, "extra_body": {"guided_regex": "a+"}},
        ["response_format", "guided_regex"],
    ),
    (
        {"extra_body": {"structured_outputs": {"regex": "a+", "choice": ["a"]}}},
        ["structured_outputs.regex", "structured_outputs.choice"],
    ),
    (
        {"extra_body": {"guided_choice": ["a"], "guided_grammar": 'start: "a"'}},
        ["guided_choice", "guided_grammar"],
    ),
    (
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": "objec"}},
            }
        },
        ["response_format"],
    ),
    ({"extra_body": {"guided_json": "{not json"}}, ["guided_json"]),
    ({"extra_body": {"structured_outputs": {"regex": "([a-z"}}}, ["regex"]),
    ({"extra_body": {"structured_outputs": {"grammar": "start: nope"}}}, ["grammar"]),
    ({"modalities": ["audio"]}, ["modalities"]),
    ({"logit_bias": {"999999": 5}}, ["logit_bias"]),
    ({"extra_body": {"stop_token_ids": [999999]}}, ["stop_token_ids"]),
    ({"extra_body": {"min_p": 1.5}}, ["min_p"]),
    ({"extra_body": {"repetition_penalty": 0}}, ["repetition_penalty"]),
    ({"frequency_penalty": 2.5}, ["frequency_penalty"]),
]


@pytest.mark.parametrize(("params", "named"), BAD_PARAMETERS)
def test_bad_parameters_are_400s_that_name_them(
    client: openai.OpenAI, params: dict[str, Any], named: list[str]
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="tiny", messages=HI, max_tokens=4, **params)
    said = f"{info.value.param} {info.value}"
    for name in named:
        assert name in said, said


def test_unsupported_completion_parameter_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="tiny", prompt="x", suffix="y")
    assert info.value.param == "suffix" and info.value.code == "unsupported_parameter"


# -- /tokenize and /detokenize ---------------------------------------------------------------------


def test_tokenize_and_detokenize_round_trip(client: openai.OpenAI, http: httpx.Client) -> None:
    for model in ("tiny", "smol"):
        body = {"model": model, "prompt": PROMPT, "add_special_tokens": False, "return_token_strs": True}
        tokens = http.post("/tokenize", json=body).json()
        assert tokens["count"] == len(tokens["tokens"]) == len(tokens["token_strs"]) > 0
        assert tokens["max_model_len"] >= 2048
        back = http.post("/detokenize", json={"model": model, "tokens": tokens["tokens"]})
        assert back.status_code == 200 and back.json() == {"prompt": PROMPT}
    plain = http.post(
        "/tokenize", json={"model": "tiny", "prompt": "hello world", "return_token_strs": True}
    ).json()
    assert "".join(plain["token_strs"]) == "hello world"
    assert http.post("/tokenize", json={"model": "tiny", "prompt": "x"}).json().get("token_strs") is None
    templated = http.post("/tokenize", json={"model": "tiny", "messages": HI}).json()
    reply = client.chat.completions.create(model="tiny", messages=HI, max_tokens=1)
    assert reply.usage is not None and templated["count"] == reply.usage.prompt_tokens  # what a request costs
    bare = http.post(
        "/tokenize", json={"model": "tiny", "messages": HI, "add_generation_prompt": False}
    ).json()
    assert bare["tokens"] == templated["tokens"][: bare["count"]] and bare["count"] < templated["count"]
    unnamed = http.post("/tokenize", json={"prompt": "x"})
    assert unnamed.status_code == 400 and unnamed.json()["error"]["param"] == "model"  # two text models here
    outside = http.post("/detokenize", json={"model": "tiny", "tokens": [10**6]})
    assert outside.status_code == 400

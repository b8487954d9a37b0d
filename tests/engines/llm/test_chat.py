"""Chat prompts with tools: native for tool-aware templates, Blaze's Hermes rewrite for the rest."""

from __future__ import annotations

import copy
import json
import os
from types import SimpleNamespace
from typing import Any

import pytest
from tokenizers import AddedToken
from transformers import AutoTokenizer

from blaze_ai.engines.llm import builtins
from blaze_ai.engines.llm.chat import (
    hermes_messages,
    render,
    supports_tools,
    tags_are_tokens,
    tool_call_block,
    tools_instruction,
)
from blaze_ai.server.tools import parse_tool_calls

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
    },
]
CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}
NOW = {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
CONVERSATION: list[dict[str, Any]] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather and time in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [CALL, NOW]},
    {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
    {"role": "tool", "tool_call_id": "call_2", "content": "noon"},
    {"role": "user", "content": "Thanks"},
]
# A small tool-aware template: tools by name, tool calls with their arguments through tojson.
TOOL_TEMPLATE = (
    "{% if tools %}TOOLS:{% for t in tools %}{{ t.function.name }};{% endfor %}{% endif %}"
    "{% for m in messages %}<{{ m.role }}>{{ m.content }}"
    "{% for c in m.tool_calls or [] %}[{{ c.function.name }} {{ c.function.arguments | tojson }}]{% endfor %}"
    "</{{ m.role }}>{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
)


@pytest.fixture
def tokenizer() -> Any:
    """A fresh copy of the tiny model's tokenizer (ChatML, no tool support), free to change."""
    return AutoTokenizer.from_pretrained(builtins.materialize("builtin:tiny-llama"))


@pytest.fixture
def tool_tokenizer(tokenizer: Any) -> Any:
    tokenizer.chat_template = TOOL_TEMPLATE
    return tokenizer


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (None, False),
        (builtins.CHATML_TEMPLATE, False),
        (TOOL_TEMPLATE, True),
        ({"default": builtins.CHATML_TEMPLATE}, False),
        ({"default": builtins.CHATML_TEMPLATE, "tool_use": TOOL_TEMPLATE}, True),
    ],
)
def test_supports_tools(template: str | dict[str, str] | None, expected: bool) -> None:
    assert supports_tools(SimpleNamespace(chat_template=template)) is expected


def test_the_tiny_template_has_no_tool_support(tokenizer: Any) -> None:
    assert not supports_tools(tokenizer)


@pytest.mark.parametrize("generation_prompt", [True, False])
def test_plain_messages_render_as_before(tokenizer: Any, generation_prompt: bool) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    expected = tokenizer.apply_chat_template(
        messages, add_generation_prompt=generation_prompt, tokenize=False
    )
    assert render(tokenizer, messages, None, add_generation_prompt=generation_prompt) == expected
    assert render(tokenizer, messages, [], add_generation_prompt=generation_prompt) == expected


def test_the_default_rewrites_tool_use_into_plain_turns() -> None:
    blocks = (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>'
    )
    assert hermes_messages(CONVERSATION, TOOLS) == [
        {"role": "system", "content": "Be brief.\n\n" + tools_instruction(TOOLS)},
        {"role": "user", "content": "Weather and time in Paris?"},
        {"role": "assistant", "content": blocks},
        {
            "role": "user",
            "content": "<tool_response>\n18 C\n</tool_response>\n<tool_response>\nnoon\n</tool_response>",
        },
        {"role": "user", "content": "Thanks"},
    ]


def test_the_tools_instruction_lists_one_schema_per_line_and_the_format() -> None:
    instruction = tools_instruction(TOOLS)
    listed = instruction.split("<tools>\n", 1)[1].split("\n</tools>", 1)[0].split("\n")
    assert [json.loads(line) for line in listed] == TOOLS
    assert (
        '<tool_call>\n{"name": <function-name>, "arguments": <arguments-json-object>}\n</tool_call>'
        in instruction
    )


def test_without_a_system_message_the_tools_get_one() -> None:
    messages = hermes_messages([{"role": "user", "content": "Hi"}], TOOLS)
    assert messages == [
        {"role": "system", "content": tools_instruction(TOOLS)},
        {"role": "user", "content": "Hi"},
    ]


def test_text_and_calls_share_the_assistant_turn() -> None:
    messages = hermes_messages([{"role": "assistant", "content": "Let me look.", "tool_calls": [CALL]}], None)
    assert messages == [{"role": "assistant", "content": "Let me look.\n" + tool_call_block(CALL)}]


def test_tool_results_apart_are_separate_turns() -> None:
    turns: list[dict[str, Any]] = [
        {"role": "tool", "content": "a"},
        {"role": "assistant", "content": "ok"},
        {"role": "tool", "content": [{"type": "text", "text": "b"}]},
    ]
    assert [m["content"] for m in hermes_messages(turns, None)] == [
        "<tool_response>\na\n</tool_response>",
        "ok",
        "<tool_response>\nb\n</tool_response>",
    ]


def test_render_uses_the_rewrite_with_a_template_without_tools(tokenizer: Any) -> None:
    text = render(tokenizer, CONVERSATION, TOOLS)
    expected = tokenizer.apply_chat_template(
        hermes_messages(CONVERSATION, TOOLS), add_generation_prompt=True, tokenize=False
    )
    assert text == expected
    assert text.startswith("<|im_start|>system\nBe brief.\n\n# Tools\n")
    assert "<|im_start|>user\n<tool_response>\n18 C\n</tool_response>\n<tool_response>\nnoon" in text
    assert text.endswith("<|im_start|>user\nThanks<|im_end|>\n<|im_start|>assistant\n")


def test_tool_turns_without_tools_are_rewritten_too(tokenizer: Any) -> None:
    text = render(tokenizer, CONVERSATION, None)
    assert "# Tools" not in text
    assert "<|im_start|>assistant\n<tool_call>\n" in text and "<|im_start|>tool" not in text


def test_a_tool_aware_template_gets_the_tools_and_dict_arguments(tool_tokenizer: Any) -> None:
    before = copy.deepcopy(CONVERSATION)
    text = render(tool_tokenizer, CONVERSATION, TOOLS)
    assert before == CONVERSATION  # the caller's messages are left alone
    assert text.startswith("TOOLS:get_weather;get_time;<system>Be brief.</system>")
    assert '<assistant>[get_weather {"city": "Paris"}][get_time {}]</assistant>' in text
    assert "<tool>18 C</tool><tool>noon</tool>" in text and text.endswith("<assistant>")


def test_a_tool_aware_template_renders_tool_turns_without_tools(tool_tokenizer: Any) -> None:
    text = render(tool_tokenizer, CONVERSATION, None, add_generation_prompt=False)
    assert not text.startswith("TOOLS:") and "<tool>18 C</tool>" in text and not text.endswith("<assistant>")


def test_arguments_that_are_not_json_stay_as_given(tool_tokenizer: Any) -> None:
    broken = {"id": "c", "type": "function", "function": {"name": "get_time", "arguments": "{oops"}}
    text = render(tool_tokenizer, [{"role": "assistant", "content": None, "tool_calls": [broken]}], TOOLS)
    assert '<assistant>[get_time "{oops"]</assistant>' in text


def test_tags_are_tokens(tokenizer: Any) -> None:
    assert not tags_are_tokens(tokenizer)
    tokenizer.add_tokens(
        [AddedToken("<tool_call>", normalized=False), AddedToken("</tool_call>", normalized=False)]
    )
    assert tags_are_tokens(tokenizer)


def test_the_prompt_format_is_the_format_calls_are_read_in() -> None:
    assistant = hermes_messages(
        [{"role": "assistant", "content": "On it.", "tool_calls": [CALL, NOW]}], None
    )[0]
    parsed = parse_tool_calls(assistant["content"], {"get_weather", "get_time"})
    assert parsed.content == "On it."
    assert [(c.name, json.loads(c.arguments)) for c in parsed.calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_time", {}),
    ]

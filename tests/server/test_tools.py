"""Tool calling: OpenAI tools in, llguidance grammars out (checked on a real tokenizer), calls read back."""

from __future__ import annotations

import itertools
import json
import os
from typing import Any

import llguidance
import llguidance.hf
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import AddedToken
from transformers import AutoTokenizer

from blaze_ai.engines.llm import builtins
from blaze_ai.engines.requests import StructuredOutput
from blaze_ai.errors import BadRequestError
from blaze_ai.server import tools
from blaze_ai.server.schemas.chat import NamedToolChoice, ToolDefinition
from blaze_ai.server.tools import (
    ArgumentsDelta,
    CallStart,
    ContentDelta,
    Function,
    ParsedOutput,
    StreamEvent,
    ToolCallStream,
    collect,
    functions_from,
    parse_tool_calls,
    tool_grammar,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
            "required": ["city"],
        },
    },
}
TIME: dict[str, Any] = {"type": "function", "function": {"name": "get_time"}}
NAMES = {"get_weather", "get_time"}
PARIS = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
NOW = '<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>'


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    """The tiny built-in model's tokenizer: ``<tool_call>`` is plain text to it."""
    return AutoTokenizer.from_pretrained(builtins.materialize("builtin:tiny-llama"))


@pytest.fixture(scope="module")
def tagged_tokenizer() -> Any:
    """The tiny tokenizer with ``<tool_call>`` and ``</tool_call>`` as added tokens, as in Qwen."""
    tokenizer = AutoTokenizer.from_pretrained(builtins.materialize("builtin:tiny-llama"))
    tags = [AddedToken(t, special=False, normalized=False) for t in ("<tool_call>", "</tool_call>")]
    tokenizer.add_tokens(tags)
    return tokenizer


@pytest.fixture(scope="module")
def functions() -> list[Function]:
    return functions_from([WEATHER, TIME])


def accepts(tokenizer: Any, grammar: str, text: str) -> bool:
    """Whether ``text``, tokenized as the model would, is a complete output of ``grammar``."""
    matcher = llguidance.LLMatcher(
        llguidance.hf.from_tokenizer(tokenizer), llguidance.LLMatcher.grammar_from_lark(grammar), log_level=0
    )
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return matcher.consume_tokens(ids) and matcher.is_accepting()


def spec(functions: list[Function], choice: str | dict[str, Any], parallel: bool, tags: bool = False) -> str:
    grammar = tool_grammar(functions, choice, parallel, tags_are_tokens=tags)
    assert grammar is not None and grammar.kind == "grammar"
    return grammar.spec


# ---------------------------------------------------------------------------------- functions_from


def test_functions_from_reads_openai_tools() -> None:
    weather, time = functions_from([WEATHER, TIME])
    assert weather == Function("get_weather", "The weather in a city.", WEATHER["function"]["parameters"])
    assert time == Function("get_time", None, {"type": "object", "properties": {}})


@pytest.mark.parametrize(
    ("tools", "message"),
    [
        ([WEATHER, WEATHER], "already given"),
        ([{"type": "function", "function": {"name": "has space"}}], "letters, digits"),
        ([{"type": "function", "function": {"name": "x" * 65}}], "letters, digits"),
        ([{"type": "function", "function": {"name": ""}}], "letters, digits"),
        ([{"type": "function", "function": {}}], "letters, digits"),
        ([{"type": "code_interpreter"}], '"type": "function"'),
        ([{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}], "an object"),
        ([{"type": "function", "function": {"name": "f", "parameters": ["x"]}}], "an object"),
        ([{"type": "function", "function": {"name": "f", "description": 3}}], "description"),
    ],
)
def test_functions_from_refuses_malformed_tools(tools: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(BadRequestError, match=message) as caught:
        functions_from(tools)
    assert caught.value.param == "tools"


# ------------------------------------------------------------------------------------ tool_grammar


def test_none_and_auto_without_tools_need_no_grammar(functions: list[Function]) -> None:
    assert tool_grammar(functions, "none", True) is None
    assert tool_grammar([], "auto", True) is None


@pytest.mark.parametrize(
    "choice",
    [
        "sometimes",
        {"type": "function", "function": {"name": "nope"}},
        {"type": "function"},
        {"name": "get_time"},
    ],
)
def test_a_bad_tool_choice_is_a_bad_request(functions: list[Function], choice: Any) -> None:
    with pytest.raises(BadRequestError) as caught:
        tool_grammar(functions, choice, True)
    assert caught.value.param == "tool_choice"


def test_required_needs_a_tool() -> None:
    with pytest.raises(BadRequestError, match="at least one tool"):
        tool_grammar([], "required", True)


def test_a_schema_llguidance_cannot_enforce_is_a_bad_request() -> None:
    lookaround = {"type": "object", "properties": {"a": {"type": "string", "pattern": "(?=x)a"}}}
    tools = [{"type": "function", "function": {"name": "f", "parameters": lookaround}}]
    with pytest.raises(BadRequestError, match="cannot be enforced") as caught:
        tool_grammar(functions_from(tools), "required", True)
    assert caught.value.param == "tools"


CHOICES: list[Any] = ["auto", "required", {"type": "function", "function": {"name": "get_time"}}]


@pytest.mark.parametrize("choice", CHOICES)
@pytest.mark.parametrize("parallel", [True, False])
@pytest.mark.parametrize("tags", [False, True])
def test_every_grammar_compiles_for_a_real_tokenizer(
    functions: list[Function], tokenizer: Any, tagged_tokenizer: Any, choice: Any, parallel: bool, tags: bool
) -> None:
    grammar = llguidance.LLMatcher.grammar_from_lark(spec(functions, choice, parallel, tags))
    ll = llguidance.hf.from_tokenizer(tagged_tokenizer if tags else tokenizer)
    assert llguidance.LLMatcher.validate_grammar(grammar, ll) == ""


@pytest.mark.parametrize(
    ("text", "parallel", "ok"),
    [
        (PARIS, False, True),
        (NOW, False, True),
        (PARIS + "\n" + NOW, True, True),
        (PARIS + "\n" + NOW, False, False),  # one call only
        (PARIS.replace("get_weather", "get_rain"), True, False),  # unknown name
        (PARIS.replace('"city"', '"town"'), True, False),  # missing the required city
        (PARIS + " Done.", True, False),  # text after the calls
        ("Sure. " + PARIS, True, False),  # text before them
        ("", True, False),  # no call at all
        (PARIS.replace('": ', '":'), True, False),  # layout is fixed: ": " and ", "
        ('<tool_call>\n{"arguments": {}, "name": "get_time"}\n</tool_call>', True, False),  # key order
        (PARIS.replace('"Paris"}', '"Paris", "unit": "c"}'), True, True),
        (PARIS.replace('"Paris"}', '"Paris", "unit": "k"}'), True, False),
    ],
)
def test_required_is_call_blocks_and_nothing_else(
    functions: list[Function], tokenizer: Any, text: str, parallel: bool, ok: bool
) -> None:
    assert accepts(tokenizer, spec(functions, "required", parallel), text) is ok


def test_a_named_function_is_the_one_call(functions: list[Function], tokenizer: Any) -> None:
    grammar = spec(functions, {"type": "function", "function": {"name": "get_weather"}}, True)
    assert accepts(tokenizer, grammar, PARIS)
    assert not accepts(tokenizer, grammar, NOW)
    assert not accepts(tokenizer, grammar, PARIS + "\n" + PARIS)


@pytest.mark.parametrize(
    ("text", "parallel", "ok"),
    [
        ("Just text, with a < and <tool but no call.", False, True),
        ("", False, True),
        ("Let me look. " + PARIS, False, True),
        ("Let me look. " + PARIS + " Done.", False, True),
        (PARIS + "\n" + NOW, True, True),
        ("a " + PARIS + " b " + NOW + " c", True, True),
        (PARIS + "\n" + NOW, False, False),  # a second call without parallel calls
        ("Look: " + PARIS.replace("get_weather", "get_rain"), True, False),  # the trigger forces a call
        ("Look: <tool_call> is a tag", True, False),
        ("Look: " + PARIS[:-3], True, False),  # an open call is not a finished output
    ],
)
def test_auto_is_text_with_calls_triggered_by_the_tag(
    functions: list[Function], tokenizer: Any, text: str, parallel: bool, ok: bool
) -> None:
    assert accepts(tokenizer, spec(functions, "auto", parallel), text) is ok


def test_auto_forces_the_call_layout_once_triggered(functions: list[Function], tokenizer: Any) -> None:
    one = [f for f in functions if f.name == "get_weather"]
    grammar = llguidance.LLMatcher.grammar_from_lark(spec(one, "auto", True))
    matcher = llguidance.LLMatcher(llguidance.hf.from_tokenizer(tokenizer), grammar, log_level=0)
    assert matcher.consume_tokens(tokenizer("Sure. <tool_call>", add_special_tokens=False)["input_ids"])
    assert matcher.compute_ff_bytes() == b'\n{"name": "get_weather", "arguments": {"city": "'


def test_added_tag_tokens_need_the_token_grammar(functions: list[Function], tagged_tokenizer: Any) -> None:
    # llguidance never matches an added token against literal text.
    for choice in ("auto", "required"):
        assert accepts(
            tagged_tokenizer, spec(functions, choice, True, tags=True), "Hi " * (choice == "auto") + PARIS
        )
        assert not accepts(tagged_tokenizer, spec(functions, choice, True, tags=False), PARIS)
    assert not accepts(tagged_tokenizer, spec(functions, "auto", False, tags=True), PARIS + NOW)


def test_local_refs_point_into_the_arguments(tokenizer: Any) -> None:
    parameters = {
        "type": "object",
        "properties": {"where": {"$ref": "#/$defs/place"}},
        "required": ["where"],
        "$defs": {
            "place": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
        },
    }
    tools = [{"type": "function", "function": {"name": "go", "parameters": parameters}}]
    grammar = spec(functions_from(tools), "required", False)
    assert accepts(
        tokenizer,
        grammar,
        '<tool_call>\n{"name": "go", "arguments": {"where": {"city": "Oslo"}}}\n</tool_call>',
    )
    assert not accepts(
        tokenizer, grammar, '<tool_call>\n{"name": "go", "arguments": {"where": {}}}\n</tool_call>'
    )


# --------------------------------------------------------------------------------------------- plan


def test_plan_without_tools_is_plain_text() -> None:
    assert tools.plan(None, None, None) == tools.ToolPlan(None, None, False, frozenset())
    assert tools.plan([], "auto", True) == tools.ToolPlan(None, None, False, frozenset())


def test_plan_of_none_shows_the_tools_but_neither_constrains_nor_reads_calls() -> None:
    plan = tools.plan([WEATHER, TIME], "none", None)
    assert plan.grammar is None and not plan.parses and plan.names == frozenset()
    assert plan.definitions is not None
    assert [d["function"]["name"] for d in plan.definitions] == ["get_weather", "get_time"]


def test_plan_defaults_to_auto_with_parallel_calls(functions: list[Function]) -> None:
    plan = tools.plan([WEATHER, TIME], None, None)
    assert plan.grammar == tool_grammar(functions, "auto", True)
    assert plan.parses and plan.names == NAMES
    assert plan.definitions == [
        WEATHER,
        {
            "type": "function",
            "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
        },
    ]


def test_plan_takes_the_gateway_models_as_well_as_dicts() -> None:
    models = [ToolDefinition.model_validate(WEATHER), ToolDefinition.model_validate(TIME)]
    named = NamedToolChoice.model_validate({"type": "function", "function": {"name": "get_time"}})
    expected = tools.plan([WEATHER, TIME], {"type": "function", "function": {"name": "get_time"}}, False)
    assert tools.plan(models, named, False) == expected
    assert expected.grammar == tool_grammar(functions_from([WEATHER, TIME])[1:], "required", False)


# ----------------------------------------------------------------------------------- parse_tool_calls


def calls_of(parsed: ParsedOutput) -> list[tuple[str, str]]:
    return [(call.name, call.arguments) for call in parsed.calls]


@pytest.mark.parametrize(
    ("text", "content", "calls"),
    [
        ("Hello!", "Hello!", []),
        ("  ", None, []),
        (PARIS, None, [("get_weather", '{"city":"Paris"}')]),
        ("It is: " + PARIS + "\n" + NOW, "It is:", [("get_weather", '{"city":"Paris"}'), ("get_time", "{}")]),
        ('<tool_call>{"name":"get_time","arguments":{}}</tool_call>', None, [("get_time", "{}")]),
        (
            '<tool_call>\n  {\n "name" : "get_time" ,\n "arguments" : { "a" : [1, 2] }\n}\n\n</tool_call>',
            None,
            [("get_time", '{"a":[1,2]}')],
        ),
        (
            '<tool_call>\n{"name": "get_time", "arguments": {"tz": "UTC"}}',
            None,
            [("get_time", '{"tz":"UTC"}')],
        ),
        ('<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool', None, [("get_time", "{}")]),
        (
            '<tool_call>{"name": "get_time", "parameters": {"tz": "UTC"}}</tool_call>',
            None,
            [("get_time", '{"tz":"UTC"}')],
        ),
        (
            '<tool_call>{"name": "get_time", "arguments": "{\\"tz\\": \\"UTC\\"}"}</tool_call>',
            None,
            [("get_time", '{"tz":"UTC"}')],
        ),
        ('<tool_call>{"name": "get_time"}</tool_call>', None, [("get_time", "{}")]),
        (
            '<tool_call>{"arguments": {"tz": "UTC"}, "name": "get_time"}</tool_call>',
            None,
            [("get_time", '{"tz":"UTC"}')],
        ),
        (
            '{"name": "get_weather", "arguments": {"city": "Oslo"}}',
            None,
            [("get_weather", '{"city":"Oslo"}')],
        ),
        (
            '[{"name": "get_time", "arguments": {}}, {"name": "get_time", "parameters": {}}]',
            None,
            [("get_time", "{}"), ("get_time", "{}")],
        ),
        ('{"name": "get_time"}', '{"name": "get_time"}', []),  # bare needs its arguments
        (
            '[{"name": "get_time", "arguments": {}}, {"name": "nope", "arguments": {}}]',
            '[{"name": "get_time", "arguments": {}}, {"name": "nope", "arguments": {}}]',
            [],
        ),
        ('{"city": "Oslo"} is JSON', '{"city": "Oslo"} is JSON', []),
        ("[]", "[]", []),
        (PARIS.replace("get_weather", "get_rain"), PARIS.replace("get_weather", "get_rain"), []),
        (
            '<tool_call>\n{"name": "get_time", "arguments": {"a": 1,}}\n</tool_call>',
            '<tool_call>\n{"name": "get_time", "arguments": {"a": 1,}}\n</tool_call>',
            [],
        ),
        (
            '<tool_call>{"name": "get_time", "arguments": "not json"}</tool_call>',
            '<tool_call>{"name": "get_time", "arguments": "not json"}</tool_call>',
            [],
        ),
        (
            '<tool_call>{"name": "get_time", "arguments": [1]}</tool_call>',
            '<tool_call>{"name": "get_time", "arguments": [1]}</tool_call>',
            [],
        ),
        (
            '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Pa',
            '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Pa',
            [],
        ),
        ("<tool_call>" + NOW, "<tool_call>", [("get_time", "{}")]),  # a stray opening tag
        ('<tool_call>{"name": "get_time", "arguments": {}} and then', "and then", [("get_time", "{}")]),
        (
            'say <tool_call>{"name": "get_time", "arguments": {"s": "</tool_call>"}}</tool_call>',
            "say",
            [("get_time", '{"s":"</tool_call>"}')],
        ),
        (
            '<tool_call>{"name": "get_time", "arguments": {"x": NaN}}</tool_call>',
            '<tool_call>{"name": "get_time", "arguments": {"x": NaN}}</tool_call>',
            [],
        ),
    ],
)
def test_parse_tool_calls(text: str, content: str | None, calls: list[tuple[str, str]]) -> None:
    parsed = parse_tool_calls(text, NAMES)
    assert (parsed.content, calls_of(parsed)) == (content, calls)


def test_call_ids_are_openai_style_and_distinct() -> None:
    parsed = parse_tool_calls(PARIS + NOW, NAMES)
    ids = [call.id for call in parsed.calls]
    assert len(set(ids)) == 2
    assert all(i.startswith("call_") and len(i) == 29 and int(i[5:], 16) >= 0 for i in ids)


def test_unicode_arguments_stay_readable() -> None:
    parsed = parse_tool_calls(
        '<tool_call>{"name": "get_weather", "arguments": "{\\"city\\": \\"Zürich\\"}"}', NAMES
    )
    assert (
        json.loads(parsed.calls[0].arguments) == {"city": "Zürich"} and "Zürich" in parsed.calls[0].arguments
    )


# ------------------------------------------------------------------------------------ ToolCallStream


def stream(text: str, cuts: list[int]) -> list[StreamEvent]:
    """The events of streaming ``text`` cut at ``cuts``."""
    decoder = ToolCallStream(NAMES)
    events: list[StreamEvent] = []
    bounds = [0, *sorted(cuts), len(text)]
    for start, end in itertools.pairwise(bounds):
        events += decoder.feed(text[start:end])
    return events + decoder.close()


def same(a: ParsedOutput, b: ParsedOutput) -> bool:
    return (a.content, calls_of(a)) == (b.content, calls_of(b))


MIXED = (
    'Checking. <tool_call>\n{"name": "get_weather", "arguments": {"city": "New \\"York\\"", "unit": "f"}}\n'
    '</tool_call>\n<tool_call>{"arguments": {}, "name": "get_time"}</tool_call> <tool <tool_call>\n'
    '{"name": "nope", "arguments": {}}</tool_call> then <tool_call>{"name": "get_time", "arguments": {"a": [1'
)


@pytest.mark.parametrize(
    "text", [MIXED, PARIS, '[{"name": "get_time", "arguments": {}}]', '{"a": 1} x <tool_call>']
)
def test_stream_equals_parse_for_every_split_point_and_char_by_char(text: str) -> None:
    whole = parse_tool_calls(text, NAMES)
    for cut in range(len(text) + 1):
        assert same(collect(stream(text, [cut])), whole), cut
    assert same(collect(stream(text, list(range(len(text))))), whole)


def test_arguments_stream_as_they_are_generated() -> None:
    decoder = ToolCallStream(NAMES)
    events = decoder.feed('Sure <tool_call>\n{"name": "get_weather", "arguments": {"city": "Pa')
    assert events[0] == ContentDelta("Sure")
    assert isinstance(events[1], CallStart) and (events[1].index, events[1].name) == (0, "get_weather")
    assert events[2:] == [ArgumentsDelta(0, '{"city":"Pa')]
    assert decoder.feed('ris"}') == [ArgumentsDelta(0, 'ris"}')]
    assert decoder.feed("}\n</tool_") == []  # the wrapper's end is not arguments
    assert decoder.feed("call> bye") == [ContentDelta("  bye")]  # "Sure " + " bye"
    assert decoder.close() == []


def test_called_says_whether_a_call_stands() -> None:
    decoder = ToolCallStream(NAMES)
    decoder.feed("Hi <tool_call>")
    assert not decoder.called
    decoder.feed('{"name": "get_time", "arguments": {"a')
    assert decoder.called
    decoder.close()  # cut off: abandoned
    assert not decoder.called


def test_a_possible_tag_is_held_until_decided() -> None:
    decoder = ToolCallStream(NAMES)
    assert decoder.feed("a <tool") == [ContentDelta("a")]
    assert decoder.feed("s") == [ContentDelta(" <tools")]
    assert decoder.feed(" <") == []
    assert decoder.close() == [ContentDelta(" <")]


def test_a_bare_json_output_is_held_until_it_cannot_be_a_call() -> None:
    decoder = ToolCallStream(NAMES)
    assert decoder.feed('{"answer": 42}') == []
    assert decoder.feed("!") == [ContentDelta('{"answer": 42}!')]
    assert decoder.feed(" Yes.") == [ContentDelta(" Yes.")]


def test_a_started_call_cut_off_is_sent_again_as_content() -> None:
    text = 'Hi <tool_call>\n{"name": "get_time", "arguments": {"tz": "U'
    events = stream(text, [len(text) - 1])
    start = next(e for e in events if isinstance(e, CallStart))
    assert events[-1] == ContentDelta(text[2:], abandoned=start.index)  # with the held space
    assert same(collect(events), parse_tool_calls(text, NAMES))
    assert parse_tool_calls(text, NAMES).calls == []


PIECES = [
    "Hi",
    " ",
    "\n",
    "<",
    "<tool",
    "<tool_call>",
    "</tool_call>",
    "{",
    "}",
    "[",
    '"',
    ",",
    PARIS,
    NOW,
    '{"name": "get_time", "arguments": {"x": "}{\\""}}',
    '{"name": "get_weather", "parameters": "{\\"city\\": \\"Rome\\"}"}',
    '{"name": "nope", "arguments": {}}',
    '"name": "get_time"',
    '"arguments": {',
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=12).map("".join), st.data())
def test_stream_equals_parse_whatever_the_chunking(text: str, data: st.DataObject) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=8))
    assert same(collect(stream(text, cuts)), parse_tool_calls(text, NAMES))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet='<>/{}[]":, \\\nnametool_cargsx', max_size=60), st.data())
def test_stream_equals_parse_on_noise(text: str, data: st.DataObject) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=8))
    assert same(collect(stream(text, cuts)), parse_tool_calls(text, NAMES))


ANSWER = StructuredOutput(
    "json", '{"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}'
)


@pytest.mark.parametrize("parallel", [True, False])
@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ('{"x": 5}', True),
        (PARIS, True),
        ("plain text", False),
        ('{"x": "five"}', False),
        (f"Sure. {PARIS}", False),
    ],
)
def test_auto_with_a_json_format_is_an_answer_in_that_format_or_calls(
    tokenizer: Any, parallel: bool, text: str, ok: bool
) -> None:
    plan = tools.plan([WEATHER, TIME], "auto", parallel, answer=ANSWER)
    assert plan.grammar is not None and plan.parses
    assert accepts(tokenizer, plan.grammar.spec, text) is ok


def test_a_format_is_the_whole_grammar_without_calls_and_moot_when_calls_are_forced(tokenizer: Any) -> None:
    assert tools.plan(None, None, None, answer=ANSWER).grammar == ANSWER
    assert tools.plan([WEATHER], "none", None, answer=ANSWER).grammar == ANSWER
    required = tools.plan([WEATHER], "required", False, answer=ANSWER).grammar
    assert required is not None and accepts(tokenizer, required.spec, PARIS)
    assert not accepts(tokenizer, required.spec, '{"x": 5}')
    with pytest.raises(BadRequestError):
        tools.plan([WEATHER], "auto", None, answer=StructuredOutput("regex", "[a-z]+"))


def test_tool_arguments_are_closed_to_their_declared_properties(tokenizer: Any) -> None:
    city = {
        "type": "function",
        "function": {
            "name": "city",
            "parameters": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 8}}},
        },
    }
    grammar = tools.plan([city], "required", False).grammar
    assert grammar is not None
    call = '<tool_call>\n{{"name": "city", "arguments": {arguments}}}\n</tool_call>'
    assert accepts(tokenizer, grammar.spec, call.format(arguments='{"name": "Paris"}'))
    assert not accepts(tokenizer, grammar.spec, call.format(arguments='{"name": "Paris", "title": "x"}'))

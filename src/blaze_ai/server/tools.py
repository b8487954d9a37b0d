"""OpenAI tool calling: tools and ``tool_choice`` in, one grammar out; generated text in, calls out.

Blaze has one tool-call text format (Hermes style, as Qwen2.5/3, Hermes and SmolLM3 were trained
on), one block per call, several blocks in a row for parallel calls::

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

``tool_grammar`` turns ``tool_choice`` into a :class:`StructuredOutput` (a Lark grammar in
llguidance's dialect) that the engine enforces token by token. Each call's JSON is one ``%json``
schema per function: ``{"name": <the name, as const>, "arguments": <its parameters schema>}``,
no other keys, in that order, laid out compactly (``", "`` and ``": "``, no other whitespace):

- ``"none"``: no grammar; the model writes text (and ``plan`` leaves the tools out of the prompt).
- ``"auto"``: free text, in which the characters ``<tool_call>`` trigger a call (a lazy lexeme);
  from there the call's JSON and ``\\n</tool_call>`` are forced, then text (and, when parallel,
  more calls) may follow. Without parallel calls, the text after the call cannot contain
  ``<tool_call>`` again.
- ``"required"``: the whole output is call blocks separated by ``\\n`` (exactly one without
  parallel calls), nothing else.
- ``{"type": "function", "function": {"name": ...}}``: exactly one block calling that function.

``plan`` does all of this for a request (OpenAI shapes, dicts or Pydantic models, in; the
grammar, the tools for the chat template and the names to read calls of, out).
``parse_tool_calls`` reads a finished output back; :class:`ToolCallStream` does the same as the
text streams in (see its docstring for what is held back, and for blocks cut off mid-call).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import llguidance

from blaze_ai.engines.requests import StructuredOutput
from blaze_ai.errors import BadRequestError
from blaze_ai.server.tool_parsing import (
    ArgumentsDelta,
    CallStart,
    ContentDelta,
    ParsedOutput,
    StreamEvent,
    ToolCall,
    ToolCallStream,
    collect,
    new_call_id,
    parse_tool_calls,
)

_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_CHOICES = ("none", "auto", "required")
#: Compact, deterministic JSON; ``lenient`` ignores schema keywords llguidance does not implement
#: (like ``not``) instead of refusing the tool.
JSON_OPTIONS: dict[str, Any] = {
    "whitespace_flexible": False,
    "item_separator": ", ",
    "key_separator": ": ",
    "lenient": True,
}
# Any text; and text that does not contain the opening tag (after the one call of "auto").
_TEXT = r"TEXT: /(.|\n)*/"
_TAIL = r"TAIL: /(.|\n)*/ & ~/(?s:.*)<tool_call>(?s:.*)/"


@dataclass(frozen=True, slots=True)
class Function:
    """A function the model may call: its name, what it does, and a JSON Schema of its arguments."""

    name: str
    description: str | None
    parameters: dict[str, Any]


def functions_from(tools: list[dict[str, Any]]) -> list[Function]:
    """The functions of OpenAI ``tools`` entries; BadRequestError (param ``tools``) when malformed."""
    functions: list[Function] = []
    seen: set[str] = set()
    for index, tool in enumerate(tools):
        function = _function_from(index, tool)
        if function.name in seen:
            raise BadRequestError(
                f"tools[{index}]: a function named {function.name!r} is already given", param="tools"
            )
        seen.add(function.name)
        functions.append(function)
    return functions


def _function_from(index: int, tool: Any) -> Function:
    where = f"tools[{index}]"
    if (
        not isinstance(tool, dict)
        or tool.get("type") != "function"
        or not isinstance(tool.get("function"), dict)
    ):
        raise BadRequestError(f'{where} must be {{"type": "function", "function": {{...}}}}', param="tools")
    spec = tool["function"]
    name = spec.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise BadRequestError(
            f"{where}.function.name must be 1 to 64 letters, digits, underscores or dashes, not {name!r}",
            param="tools",
        )
    description = spec.get("description")
    if description is not None and not isinstance(description, str):
        raise BadRequestError(f"{where}.function.description must be a string", param="tools")
    parameters = spec.get("parameters")
    if parameters is None:
        parameters = {"type": "object", "properties": {}}
    if not isinstance(parameters, dict) or parameters.get("type", "object") != "object":
        raise BadRequestError(
            f'{where}.function.parameters must be a JSON Schema of an object ({{"type": "object", ...}})',
            param="tools",
        )
    return Function(name, description, {"type": "object", **parameters})


@dataclass(frozen=True, slots=True)
class ToolPlan:
    """What a request's tools mean for the engine and for reading its output.

    ``grammar`` constrains the output (None: free text); ``definitions`` are the tools for the
    chat template (None when there are none; with ``tool_choice`` "none" they are still shown, as
    vLLM and OpenAI do: the model knows them but answers in text); ``parses`` says whether to read
    calls out of the output, of the functions ``names``.
    """

    grammar: StructuredOutput | None
    definitions: list[dict[str, Any]] | None
    parses: bool
    names: frozenset[str]
    #: The grammar allows calls only ("required" or a named function): text outside calls can only
    #: be a call cut off by max_tokens, and is not returned as content.
    calls_only: bool = False


def plan(
    tools: Sequence[Any] | None,
    tool_choice: Any,
    parallel_tool_calls: bool | None,
    *,
    answer: StructuredOutput | None = None,
    tags_are_tokens: bool = False,
) -> ToolPlan:
    """The plan of a request's ``tools``, ``tool_choice`` and ``parallel_tool_calls``.

    Tools and the choice may be dicts or Pydantic models of OpenAI's shapes; ``tool_choice``
    defaults to "auto" and ``parallel_tool_calls`` to true, as in OpenAI. ``answer`` is the
    request's own output constraint (``response_format``): the plan's grammar is then that
    constraint without tools or with ``"none"``, calls only with ``"required"`` or a named function
    (the format does not apply to calls), and with ``"auto"`` either an answer in that JSON format
    or calls.
    """
    functions = functions_from([_plain(tool) for tool in tools or []])
    choice = _plain(tool_choice)
    grammar = tool_grammar(
        functions, choice, parallel_tool_calls is not False, tags_are_tokens=tags_are_tokens, answer=answer
    )
    calls = bool(functions) and choice != "none"
    definitions = [_definition(f) for f in functions] or None
    names = frozenset(f.name for f in functions) if calls else frozenset()
    calls_only = calls and (choice == "required" or isinstance(choice, dict))
    return ToolPlan(grammar, definitions, calls, names, calls_only)


def _plain(value: Any) -> Any:
    """A Pydantic model as a dict (without unset fields); anything else as it is."""
    dump = getattr(value, "model_dump", None)
    return dump(exclude_none=True) if callable(dump) else value


def _definition(function: Function) -> dict[str, Any]:
    """A function as chat templates take tools (OpenAI's shape, without nulls)."""
    spec: dict[str, Any] = {"name": function.name}
    if function.description is not None:
        spec["description"] = function.description
    spec["parameters"] = function.parameters
    return {"type": "function", "function": spec}


def tool_grammar(
    functions: list[Function],
    tool_choice: str | dict[str, Any] | None,
    parallel: bool,
    *,
    tags_are_tokens: bool = False,
    answer: StructuredOutput | None = None,
) -> StructuredOutput | None:
    """The grammar that enforces ``tool_choice`` over ``functions`` (None: no constraint).

    ``answer`` constrains a text answer (see :func:`plan`); with ``"auto"`` it must be JSON.

    ``tags_are_tokens`` says that ``<tool_call>`` and ``</tool_call>`` are single added tokens of
    the model (as in Qwen): llguidance never lets an added token stand for literal text, so the
    grammar then names them as tokens (and ``auto`` triggers on the token itself).
    Raises BadRequestError when ``tool_choice`` names no given function or a schema cannot be
    enforced.
    """
    choice = _resolve_choice(functions, tool_choice)
    if choice == "none" or (choice == "auto" and not functions):
        return answer
    called = [choice] if isinstance(choice, Function) else functions
    if choice == "auto" and answer is not None:
        lines = ["%llguidance {}", *_answer_or_calls(answer, parallel)]
        lines += _call_rules(False, tags_are_tokens, len(called))
    else:
        lines = ["%llguidance {}", _start(choice, parallel, tags_are_tokens)]
        lines += _call_rules(choice == "auto", tags_are_tokens, len(called))
    lines += [
        f"fn_{i}: %json {json.dumps(_call_schema(f), ensure_ascii=False)}" for i, f in enumerate(called)
    ]
    lark = "\n".join(lines) + "\n"
    error = llguidance.LLMatcher.validate_grammar(llguidance.LLMatcher.grammar_from_lark(lark))
    if error:
        reason = error.splitlines()[0]  # the rest quotes the grammar
        raise BadRequestError(f"the tools' parameter schemas cannot be enforced: {reason}", param="tools")
    return StructuredOutput("grammar", lark)


def _resolve_choice(functions: list[Function], tool_choice: str | dict[str, Any] | None) -> str | Function:
    """``"none"``, ``"auto"``, ``"required"`` or the one function ``tool_choice`` names."""
    if tool_choice is None:
        return "auto"
    if isinstance(tool_choice, str):
        if tool_choice not in _CHOICES:
            raise BadRequestError(
                f"tool_choice must be none, auto, required or a function, not {tool_choice!r}",
                param="tool_choice",
            )
        if tool_choice == "required" and not functions:
            raise BadRequestError('tool_choice "required" needs at least one tool', param="tool_choice")
        return tool_choice
    function = tool_choice.get("function") if isinstance(tool_choice, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if (
        not isinstance(tool_choice, dict)
        or tool_choice.get("type") != "function"
        or not isinstance(name, str)
    ):
        raise BadRequestError(
            'tool_choice must be {"type": "function", "function": {"name": ...}}', param="tool_choice"
        )
    for candidate in functions:
        if candidate.name == name:
            return candidate
    raise BadRequestError(f"tool_choice names {name!r}, which is not one of the tools", param="tool_choice")


def _answer_or_calls(answer: StructuredOutput, parallel: bool) -> list[str]:
    """``auto`` with a JSON response format: the answer in that format, or calls (no free text)."""
    if answer.kind != "json":
        raise BadRequestError(
            f"tool_choice auto can be combined with a JSON response format, not a {answer.kind}",
            param="tool_choice",
        )
    schema = {**json.loads(answer.spec), "x-guidance": JSON_OPTIONS}
    calls = 'call ("\\n" call)*' if parallel else "call"
    return [f"start: answer | {calls}", f"answer: %json {json.dumps(schema, ensure_ascii=False)}"]


def _start(choice: str | Function, parallel: bool, tags_are_tokens: bool) -> str:
    """The grammar's start rule for a resolved tool choice."""
    if choice != "auto":
        return 'start: call ("\\n" call)*' if parallel and choice == "required" else "start: call"
    if parallel:
        return "start: call* TEXT"
    # Once past the one call, the tail must not open another; a token tag cannot occur in TEXT.
    return "start: TEXT | call TEXT" if tags_are_tokens else "start: TEXT | call TAIL"


def _call_rules(auto: bool, tags_are_tokens: bool, count: int) -> list[str]:
    """The rules of one call block (``call``, ``body``) and the text terminals ``auto`` needs."""
    body = " | ".join(f"fn_{i}" for i in range(count))
    if tags_are_tokens:
        head = "TEXT <tool_call>" if auto else "<tool_call>"
        rules = [f'call: {head} "\\n" body "\\n" </tool_call>']
    elif auto:
        # Lazy: the text ends at the first "<tool_call>", which must then start a call.
        rules = ['call_open[lazy]: TEXT "<tool_call>"', 'call: call_open "\\n" body "\\n</tool_call>"']
    else:
        rules = ['call: "<tool_call>\\n" body "\\n</tool_call>"']
    rules.append(f"body: {body}")
    if auto:
        rules.append(_TEXT)
        if not tags_are_tokens:
            rules.append(_TAIL)
    return rules


def _call_schema(function: Function) -> dict[str, Any]:
    """The JSON Schema of one call: the function's name as a constant, then its arguments."""
    return {
        "type": "object",
        "properties": {"name": {"const": function.name}, "arguments": _closed(_rebased(function.parameters))},
        "required": ["name", "arguments"],
        "additionalProperties": False,
        "x-guidance": JSON_OPTIONS,
    }


def _closed(schema: Any) -> Any:
    """``schema`` with every object that declares ``properties`` and says nothing of
    ``additionalProperties`` closed to them: a small model otherwise invents keys (it was seen
    filling them with the schema's own keywords), and callers never expect undeclared arguments."""
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _closed(value) for key, value in schema.items()}
    if isinstance(schema.get("properties"), dict) and "additionalProperties" not in schema:
        out["additionalProperties"] = False
    return out


def _rebased(schema: Any) -> Any:
    """``schema`` with its local ``$ref``s (``#/$defs/...``, ``#``) pointing into ``arguments``."""
    if isinstance(schema, list):
        return [_rebased(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _rebased(value) for key, value in schema.items()}
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#"):
        out["$ref"] = "#/properties/arguments" + ref[1:]
    return out


__all__ = [
    "ArgumentsDelta",
    "CallStart",
    "ContentDelta",
    "Function",
    "ParsedOutput",
    "StreamEvent",
    "ToolCall",
    "ToolCallStream",
    "ToolPlan",
    "collect",
    "functions_from",
    "new_call_id",
    "parse_tool_calls",
    "plan",
    "tool_grammar",
]

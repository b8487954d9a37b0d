"""How chat messages and tool definitions become a prompt.

A model whose chat template knows about tools (it mentions ``tools``, as Qwen2.5/3, Hermes and
SmolLM3 templates do) gets them natively: ``apply_chat_template(messages, tools=tools)``, with the
messages normalised for Hugging Face templates (tool-call arguments as dicts, no ``None`` content).

Any other template gets the documented default, Blaze's one tool-call format (Hermes style), written
into plain messages so that every ChatML-like template can render them:

- the tools go into the system message (merged into an existing first one) as an instruction that
  lists their JSON schemas, one per line, inside ``<tools></tools>`` and asks for each call as
  ``<tool_call>\\n{"name": ..., "arguments": ...}\\n</tool_call>``;
- an assistant turn's ``tool_calls`` are appended to its content as such blocks;
- ``tool`` turns become one ``user`` turn of ``<tool_response>\\n...\\n</tool_response>`` blocks
  (consecutive tool turns are merged);
- ``content: None`` becomes ``""``.

Messages without tools and without tool turns reach the template unchanged.
"""

from __future__ import annotations

import json
from typing import Any

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"

_TOOLS_INSTRUCTION = (
    "# Tools\n\n"
    "You may call one or more functions to help with the user's request. "
    "The functions you can call are described by these JSON schemas, inside <tools></tools> tags:\n"
    "<tools>\n{schemas}\n</tools>\n\n"
    "To call a function, return each call inside <tool_call></tool_call> XML tags as a JSON object "
    "with the function's name and its arguments:\n"
    '<tool_call>\n{{"name": <function-name>, "arguments": <arguments-json-object>}}\n</tool_call>'
)


def supports_tools(tokenizer: Any) -> bool:
    """Whether the tokenizer's chat template (or one of its named templates) mentions ``tools``."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        return any(isinstance(t, str) and "tools" in t for t in template.values())
    return isinstance(template, str) and "tools" in template


def tags_are_tokens(tokenizer: Any) -> bool:
    """Whether ``<tool_call>`` and ``</tool_call>`` are added tokens of the tokenizer (as in Qwen).

    llguidance never matches an added token against literal text, so a tool grammar must then
    name the tags as tokens (``tool_grammar(..., tags_are_tokens=True)``).
    """
    added = tokenizer.get_added_vocab()
    return TOOL_CALL_OPEN in added and TOOL_CALL_CLOSE in added


def render(
    tokenizer: Any,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    *,
    add_generation_prompt: bool = True,
) -> str:
    """The prompt text of ``messages`` (and ``tools``) through the tokenizer's chat template."""
    tool_turns = any(m.get("role") == "tool" or m.get("tool_calls") for m in messages)
    if not tools and not tool_turns:
        text = tokenizer.apply_chat_template(
            messages, add_generation_prompt=add_generation_prompt, tokenize=False
        )
    elif supports_tools(tokenizer):
        # A tool-aware template renders tool turns natively even when no tools are offered.
        text = tokenizer.apply_chat_template(
            normalise(messages),
            tools=tools or None,
            add_generation_prompt=add_generation_prompt,
            tokenize=False,
        )
    else:
        text = tokenizer.apply_chat_template(
            hermes_messages(messages, tools), add_generation_prompt=add_generation_prompt, tokenize=False
        )
    return str(text)


def normalise(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of ``messages`` as Hugging Face templates expect them.

    ``None`` content becomes ``""`` and each tool call's ``function.arguments`` JSON string
    becomes a dict when it parses (templates write it with ``tojson``).
    """
    out: list[dict[str, Any]] = []
    for message in messages:
        copy = dict(message)
        if copy.get("content") is None:
            copy["content"] = ""
        if copy.get("tool_calls"):
            copy["tool_calls"] = [_with_dict_arguments(call) for call in copy["tool_calls"]]
        out.append(copy)
    return out


def hermes_messages(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
) -> list[dict[str, Any]]:
    """``messages`` rewritten into plain system/user/assistant turns in Blaze's tool-call format."""
    out: list[dict[str, Any]] = []
    previous_role = None
    for message in messages:
        role = message.get("role")
        if role == "tool":
            block = f"<tool_response>\n{_text(message.get('content'))}\n</tool_response>"
            if previous_role == "tool":  # consecutive results answer one turn: one user message
                out[-1]["content"] += "\n" + block
            else:
                out.append({"role": "user", "content": block})
        else:
            out.append(_assistant_or_plain(message))
        previous_role = role
    if tools:
        out = _with_tools_instruction(out, tools)
    return out


def _assistant_or_plain(message: dict[str, Any]) -> dict[str, Any]:
    """A copy of a non-tool message with text content and its tool calls written as blocks."""
    copy = {k: v for k, v in message.items() if k != "tool_calls"}
    copy["content"] = _text(message.get("content"))
    if message.get("role") == "assistant" and message.get("tool_calls"):
        blocks = [tool_call_block(call) for call in message["tool_calls"]]
        copy["content"] = "\n".join([copy["content"], *blocks] if copy["content"] else blocks)
    return copy


def tool_call_block(call: dict[str, Any]) -> str:
    """One OpenAI ``tool_calls`` entry as a ``<tool_call>`` block."""
    function = call.get("function") or {}
    arguments = _parsed_arguments(function.get("arguments"))
    payload = json.dumps({"name": function.get("name", ""), "arguments": arguments}, ensure_ascii=False)
    return f"{TOOL_CALL_OPEN}\n{payload}\n{TOOL_CALL_CLOSE}"


def tools_instruction(tools: list[dict[str, Any]]) -> str:
    """The system-prompt text that offers ``tools`` in Blaze's tool-call format."""
    schemas = "\n".join(json.dumps(tool, ensure_ascii=False) for tool in tools)
    return _TOOLS_INSTRUCTION.format(schemas=schemas)


def _with_tools_instruction(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    instruction = tools_instruction(tools)
    if messages and messages[0].get("role") == "system":
        first = dict(messages[0])
        first["content"] = f"{first['content']}\n\n{instruction}" if first["content"] else instruction
        return [first, *messages[1:]]
    return [{"role": "system", "content": instruction}, *messages]


def _with_dict_arguments(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function")
    if not isinstance(function, dict) or not isinstance(function.get("arguments"), str):
        return call
    arguments = _parsed_arguments(function["arguments"])
    if isinstance(arguments, str):
        return call
    return {**call, "function": {**function, "arguments": arguments}}


def _parsed_arguments(arguments: Any) -> Any:
    """A JSON-string ``arguments`` as the value it encodes; anything else (or bad JSON) as given."""
    if not isinstance(arguments, str):
        return {} if arguments is None else arguments
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


def _text(content: Any) -> str:
    """Message content as text: ``None`` is empty, a list of parts is their text joined."""
    if content is None:
        return ""
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content)

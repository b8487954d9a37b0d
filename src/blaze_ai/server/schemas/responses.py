"""``POST /v1/responses`` bodies, as the ``openai`` client and the openai-agents SDK send and read them.

Blaze keeps no state: ``store`` is accepted and nothing is stored, so ``previous_response_id`` and
``conversation`` are refused by the route. Input items are messages, ``function_call`` and
``function_call_output``; tools are function tools; ``text.format`` is ``text``, ``json_object`` or
``json_schema``. Anything else (reasoning items, images, files, built-in tools) is a 400 that names it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Discriminator, Field, Tag, field_validator, model_validator
from pydantic_core import PydanticCustomError

from blaze_ai.server.schemas.common import MAX_INT, ModelName, Seed, Strict, User

#: Responses parameters Blaze does not implement, with the values that mean "off".
RESPONSES_UNSUPPORTED: dict[str, tuple[Any, ...]] = {
    "background": (False,),
    "include": ([],),
    "reasoning": ({}, {"effort": None, "summary": None}),
    "top_logprobs": (0,),
    "max_tool_calls": (),
    "prompt": (),
    "prompt_cache_key": (),
    "prompt_cache_retention": (),
    "prompt_cache_options": (),
    "context_management": (),
    "safety_identifier": (),
    "service_tier": ("auto", "default"),
}
ITEM_TYPES = ("message", "function_call", "function_call_output")
PART_TYPES = ("input_text", "output_text")
MAX_ITEMS = 4096
Status = Literal["in_progress", "completed", "incomplete"]


class TextPart(Strict):
    """A text content part: ``input_text`` (what was said) or ``output_text`` (an earlier answer)."""

    type: Literal["input_text", "output_text"]
    text: str
    annotations: list[Any] | None = Field(None, description="Output only; ignored on input.")
    logprobs: list[Any] | None = Field(None, description="Output only; ignored on input.")


def _refuse(kind: str, message: str) -> PydanticCustomError:
    """A validation error with a message of its own (no pydantic prefix)."""
    return PydanticCustomError(kind, message)


def _check_item(index: int, item: Any) -> None:
    """Name an input item, or a content part of one, that Blaze cannot read."""
    kind = _item_kind(item)
    if kind not in ITEM_TYPES:
        raise _refuse(
            "unsupported_item",
            f"input[{index}] is a {kind!r} item; Blaze AI accepts message, function_call and "
            "function_call_output items",
        )
    parts = item.get("content" if kind == "message" else "output") if isinstance(item, dict) else None
    for part in parts if isinstance(parts, list) else ():
        part_kind = part.get("type") if isinstance(part, dict) else None
        if part_kind not in PART_TYPES:
            raise _refuse(
                "unsupported_content",
                f"input[{index}] has a {part_kind!r} content part; Blaze AI reads only input_text "
                "and output_text parts",
            )


class MessageItem(Strict):
    """A message; ``developer`` is treated as ``system``."""

    type: Literal["message"] = "message"
    role: Literal["user", "system", "developer", "assistant"]
    content: str | list[TextPart]
    id: str | None = None
    status: Status | None = None
    phase: Literal["commentary", "final_answer"] | None = Field(None, description="Ignored.")

    @property
    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class FunctionCallItem(Strict):
    """A function call the model made in an earlier turn."""

    type: Literal["function_call"]
    call_id: str = Field(min_length=1, max_length=256)
    name: str = Field(min_length=1, max_length=64)
    arguments: str = Field(description="The arguments as a JSON string.")
    id: str | None = None
    status: Status | None = None


class FunctionCallOutputItem(Strict):
    """What a function call returned, for the call ``call_id``."""

    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1, max_length=256)
    output: str | list[TextPart]
    id: str | None = None
    status: Status | None = None

    @property
    def text(self) -> str:
        return self.output if isinstance(self.output, str) else "".join(p.text for p in self.output)


def _item_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return str(value.get("type", "message"))
    return getattr(value, "type", None)


InputItem = Annotated[
    Annotated[MessageItem, Tag("message")]
    | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")],
    Discriminator(_item_kind),
]


class FunctionTool(Strict):
    """A function the model may call (the Responses shape: flat, no ``function`` object)."""

    unsupported = {"defer_loading": (False,), "allowed_callers": (), "output_schema": ()}

    type: Literal["function"]
    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_-]+$")
    description: str | None = None
    parameters: dict[str, Any] | None = Field(
        None, description="A JSON Schema object (default: no arguments)."
    )
    strict: bool | None = Field(
        None, description="Arguments always follow the schema in Blaze, strict or not."
    )


class FunctionChoice(Strict):
    """``tool_choice`` naming one function."""

    type: Literal["function"]
    name: str


ToolChoice = Literal["none", "auto", "required"] | FunctionChoice


class TextFormat(Strict):
    """``text`` (free text), ``json_object`` (any JSON object) or ``json_schema`` (valid against a schema)."""

    type: Literal["text", "json_object", "json_schema"]
    name: str | None = Field(None, max_length=64, pattern=r"^[a-zA-Z0-9_-]+$")
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    description: str | None = None
    strict: bool | None = None

    @model_validator(mode="after")
    def _check(self) -> TextFormat:
        if self.type == "json_schema" and (self.name is None or self.schema_ is None):
            raise ValueError("a json_schema format needs a name and a schema")
        if (
            self.type != "json_schema"
            and (self.name, self.schema_, self.description, self.strict) != (None,) * 4
        ):
            raise ValueError("name, schema, description and strict go with type json_schema only")
        return self


class TextConfig(Strict):
    unsupported = {"verbosity": ("medium",)}

    format: TextFormat | None = None


class StreamOptions(Strict):
    include_obfuscation: bool | None = Field(None, description="Accepted; Blaze never pads events.")


class ResponseRequest(Strict):
    """A Responses API request (stateless)."""

    unsupported = RESPONSES_UNSUPPORTED

    model: ModelName
    input: str | Annotated[list[InputItem], Field(min_length=1, max_length=MAX_ITEMS)]
    instructions: str | None = None
    max_output_tokens: int | None = Field(None, ge=1, le=MAX_INT)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    tools: Annotated[list[FunctionTool], Field(max_length=128)] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    store: bool | None = Field(None, description="Accepted; Blaze stores nothing.")
    metadata: Annotated[dict[str, Annotated[str, Field(max_length=512)]], Field(max_length=16)] | None = None
    user: User | None = None
    truncation: Literal["auto", "disabled"] | None = None
    previous_response_id: str | None = Field(None, description="Refused: Blaze keeps no responses.")
    conversation: str | dict[str, Any] | None = Field(
        None, description="Refused: Blaze keeps no conversations."
    )
    seed: Seed | None = None
    top_k: int | None = Field(None, ge=-1, le=MAX_INT, description="Blaze extra: 0 or -1 turns top-k off.")
    min_p: float | None = Field(
        None, ge=0.0, le=1.0, description="Blaze extra: drop tokens below min_p x best."
    )
    repetition_penalty: float | None = Field(None, gt=0.0, le=2.0, description="Blaze extra: 1 is off.")

    @field_validator("input", mode="before")
    @classmethod
    def _known_items(cls, value: Any) -> Any:
        for index, item in enumerate(value if isinstance(value, list) else ()):
            _check_item(index, item)
        return value

    @field_validator("tools", mode="before")
    @classmethod
    def _function_tools(cls, value: Any) -> Any:
        for index, tool in enumerate(value if isinstance(value, list) else ()):
            kind = tool.get("type") if isinstance(tool, dict) else None
            if kind != "function":
                raise _refuse(
                    "unsupported_tool",
                    f"tools[{index}] is a {kind!r} tool; Blaze AI supports only function tools",
                )
        return value

    @field_validator("tool_choice", mode="before")
    @classmethod
    def _function_choice(cls, value: Any) -> Any:
        if isinstance(value, dict) and value.get("type") != "function":
            raise _refuse(
                "unsupported_tool_choice",
                f"tool_choice {value.get('type')!r} is not supported; use none, auto, required or "
                '{"type": "function", "name": ...}',
            )
        return value


# ------------------------------------------------------------------------------ the response


class OutputText(BaseModel):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[Any] = []
    logprobs: list[Any] = []


class OutputMessage(BaseModel):
    type: Literal["message"] = "message"
    id: str
    status: Status
    role: Literal["assistant"] = "assistant"
    content: list[OutputText]


class OutputFunctionCall(BaseModel):
    type: Literal["function_call"] = "function_call"
    id: str
    call_id: str
    name: str
    arguments: str
    status: Status


OutputItem = OutputMessage | OutputFunctionCall


class InputTokensDetails(BaseModel):
    cached_tokens: int = 0
    cache_write_tokens: int = 0


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class ResponseUsage(BaseModel):
    input_tokens: int
    input_tokens_details: InputTokensDetails = InputTokensDetails()
    output_tokens: int
    output_tokens_details: OutputTokensDetails = OutputTokensDetails()
    total_tokens: int


class IncompleteDetails(BaseModel):
    reason: Literal["max_output_tokens"]


class Reasoning(BaseModel):
    effort: None = None
    summary: None = None


class ResponseObject(BaseModel):
    """A model response; ``status`` is ``incomplete`` when ``max_output_tokens`` cut it short."""

    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: Status
    background: bool = False
    error: None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None
    max_output_tokens: int | None
    model: str
    output: list[OutputItem]
    parallel_tool_calls: bool
    previous_response_id: None = None
    reasoning: Reasoning = Reasoning()
    service_tier: Literal["default"] = "default"
    store: bool
    temperature: float
    text: dict[str, Any]
    tool_choice: str | dict[str, Any]
    tools: list[dict[str, Any]]
    top_logprobs: int = 0
    top_p: float
    truncation: Literal["auto", "disabled"]
    usage: ResponseUsage | None
    user: str | None
    metadata: dict[str, str]

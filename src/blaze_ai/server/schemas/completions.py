"""``POST /v1/completions`` bodies (legacy text completions)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from blaze_ai.server.schemas.chat import SamplingFields
from blaze_ai.server.schemas.common import ModelName, TokenIds, Usage

COMPLETION_UNSUPPORTED: dict[str, tuple[Any, ...]] = {
    "suffix": ("",),
    "best_of": (1,),
}

Prompt = str | list[str] | TokenIds | list[TokenIds]


class CompletionRequest(SamplingFields):
    """A text completion request: one prompt or a list (strings or token ids)."""

    unsupported = COMPLETION_UNSUPPORTED

    model: ModelName
    prompt: Prompt = Field(description="A string, a list of strings, token ids, or a list of token-id lists.")
    logprobs: int | None = Field(
        None, ge=0, le=5, description="Log probabilities of the sampled tokens with this many alternatives."
    )
    echo: bool | None = Field(None, description="Return the prompt (and its log probabilities) first.")


class CompletionLogprobs(BaseModel):
    """Per token: its text, log probability (None for the first prompt token), alternatives, offset."""

    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None] | None = None
    text_offset: list[int]


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: str | None
    logprobs: CompletionLogprobs | None = None


class TextCompletion(BaseModel):
    """A completion response, or one SSE event of a streamed one."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None

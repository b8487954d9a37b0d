"""``POST /tokenize`` and ``POST /detokenize`` bodies, in vLLM's shape."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, model_validator

from blaze_ai.server.schemas.chat import ChatMessage, ToolDefinition
from blaze_ai.server.schemas.common import MAX_INT, ModelName, Strict


class TokenizeRequest(Strict):
    """A prompt, or chat messages (through the chat template); ``model`` may be left out when one
    text model is served."""

    model: ModelName | None = None
    prompt: str | None = None
    messages: Annotated[list[ChatMessage], Field(min_length=1)] | None = None
    tools: list[ToolDefinition] | None = None
    add_special_tokens: bool | None = Field(None, description="Prompts: add BOS and the like (default true).")
    add_generation_prompt: bool | None = Field(None, description="Messages: open the assistant's turn.")
    return_token_strs: bool | None = Field(None, description="Also return each token's text.")

    @model_validator(mode="after")
    def _one_input(self) -> TokenizeRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of prompt or messages")
        return self


class TokenizeResponse(BaseModel):
    count: int
    max_model_len: int
    tokens: list[int]
    token_strs: list[str] | None = None


class DetokenizeRequest(Strict):
    model: ModelName | None = None
    tokens: Annotated[list[Annotated[int, Field(ge=0, le=MAX_INT)]], Field(max_length=1_000_000)]


class DetokenizeResponse(BaseModel):
    prompt: str


class TokenizerInfoResponse(BaseModel):
    tokenizer_class: str
    eos_token: str | None
    bos_token: str | None
    pad_token: str | None
    chat_template: str | None
    model_max_length: int

"""``POST /v1/embeddings`` bodies."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from blaze_ai.server.schemas.common import ModelName, Strict, TokenIds, User

#: OpenAI's own limit on inputs per request.
MAX_EMBEDDING_INPUTS = 2048

EmbeddingInput = (
    str
    | Annotated[list[str], Field(min_length=1, max_length=MAX_EMBEDDING_INPUTS)]
    | TokenIds
    | Annotated[list[TokenIds], Field(min_length=1, max_length=MAX_EMBEDDING_INPUTS)]
)


class EmbeddingCreateRequest(Strict):
    """Embed a string, strings, token ids or lists of token ids."""

    model: ModelName
    input: EmbeddingInput
    encoding_format: Literal["float", "base64"] | None = Field(
        None, description="float (default) or base64 of little-endian float32."
    )
    dimensions: int | None = Field(None, ge=1, le=65536, description="Keep the first N dimensions.")
    user: User | None = None


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage

"""Request and response bodies at the HTTP boundary (pydantic), one module per API."""

from blaze_ai.server.schemas.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessage,
    SamplingFields,
)
from blaze_ai.server.schemas.common import (
    ERROR_RESPONSES,
    ErrorResponse,
    ModelCard,
    ModelList,
    StreamOptions,
    Strict,
    Usage,
)
from blaze_ai.server.schemas.completions import CompletionRequest, TextCompletion
from blaze_ai.server.schemas.embeddings import EmbeddingCreateRequest, EmbeddingList
from blaze_ai.server.schemas.images import ImageGenerationRequest, ImagesResponse

__all__ = [
    "ERROR_RESPONSES",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ChatMessage",
    "CompletionRequest",
    "EmbeddingCreateRequest",
    "EmbeddingList",
    "ErrorResponse",
    "ImageGenerationRequest",
    "ImagesResponse",
    "ModelCard",
    "ModelList",
    "SamplingFields",
    "StreamOptions",
    "Strict",
    "TextCompletion",
    "Usage",
]

"""The requests engines take and the results they return, as plain data.

These types are the contract between the HTTP layer (or any other caller),
the router and the engines. They import neither torch nor HTTP code.

A request's ``deadline`` is a ``time.monotonic()`` instant: an engine drops a
queued request past its deadline with :class:`~blaze_ai.errors.TimedOutError`.
Cancelling the awaiting task (or closing the stream) aborts the request.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

FinishReason = Literal["stop", "length", "abort"]


def new_request_id() -> str:
    """A short random id for requests made without one."""
    return uuid.uuid4().hex[:16]


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How to pick tokens; temperature 0 is greedy."""

    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 means no top-k filter
    stop: tuple[str, ...] = ()
    seed: int | None = None
    n: int = 1
    logprobs: bool = False

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError("temperature must be between 0 and 2")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError("top_p must be in (0, 1]")
        if self.top_k < 0:
            raise ValueError("top_k must be 0 (off) or positive")
        if self.n < 1:
            raise ValueError("n must be at least 1")


@dataclass(slots=True)
class GenerationRequest:
    """Text generation: a prompt string, token ids, or chat messages.

    Exactly one of ``prompt``, ``prompt_token_ids`` or ``messages`` is set;
    ``messages`` go through the model's chat template.
    """

    prompt: str | None = None
    prompt_token_ids: list[int] | None = None
    messages: list[dict[str, str]] | None = None
    params: SamplingParams = field(default_factory=SamplingParams)
    priority: int = 0  # lower runs first, like vLLM and Triton
    deadline: float | None = None
    request_id: str = field(default_factory=new_request_id)
    arrival: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        given = sum(x is not None for x in (self.prompt, self.prompt_token_ids, self.messages))
        if given != 1:
            raise ValueError("give exactly one of prompt, prompt_token_ids or messages")


@dataclass(slots=True)
class Completion:
    """One choice of a finished generation."""

    index: int
    text: str
    token_ids: list[int]
    finish_reason: FinishReason
    logprobs: list[float] | None = None


@dataclass(slots=True)
class GenerationResult:
    """A finished generation with every choice and the token counts."""

    request_id: str
    choices: list[Completion]
    prompt_tokens: int
    completion_tokens: int


@dataclass(slots=True)
class StreamDelta:
    """A piece of a streamed generation for choice ``index``.

    ``text`` is new, complete UTF-8 text (never half a character).
    ``finish_reason`` is set on the last delta of each choice. Token counts
    are cumulative for the choice, so the last delta carries the usage.
    """

    index: int
    text: str
    token_ids: list[int]
    finish_reason: FinishReason | None
    prompt_tokens: int
    completion_tokens: int
    logprobs: list[float] | None = None


@dataclass(slots=True)
class ImageRequest:
    """Text-to-image: ``n`` images of ``width`` x ``height``.

    ``None`` fields take the model's configured defaults. Each image i uses
    seed ``seed + i`` when a seed is given.
    """

    prompt: str
    negative_prompt: str | None = None
    n: int = 1
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    guidance: float | None = None
    scheduler: str | None = None
    seed: int | None = None
    deadline: float | None = None
    request_id: str = field(default_factory=new_request_id)


@dataclass(slots=True)
class ImageResult:
    """Generated images as PNG bytes, with the seed each used."""

    request_id: str
    images: list[bytes]
    seeds: list[int]
    width: int
    height: int


@dataclass(slots=True)
class EmbeddingRequest:
    """Embed each input: strings or lists of token ids."""

    inputs: list[str] | list[list[int]]
    normalize: bool = True
    dimensions: int | None = None
    deadline: float | None = None
    request_id: str = field(default_factory=new_request_id)


@dataclass(slots=True)
class EmbeddingResult:
    """One vector per input, in order, and the tokens read."""

    request_id: str
    vectors: list[list[float]]
    prompt_tokens: int


def describe(request: Any) -> str:
    """A short, prompt-free description of a request for logs."""
    return f"{type(request).__name__}({getattr(request, 'request_id', '?')})"

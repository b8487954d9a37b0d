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
StructuredKind = Literal["json", "regex", "choice", "grammar"]
STRUCTURED_KINDS: tuple[str, ...] = ("json", "regex", "choice", "grammar")
#: Most alternatives per token that ``logprobs`` / ``prompt_logprobs`` may ask for.
MAX_TOP_LOGPROBS = 20


def new_request_id() -> str:
    """A short random id for requests made without one."""
    return uuid.uuid4().hex[:16]


@dataclass(frozen=True, slots=True)
class StructuredOutput:
    """A constraint on the generated text, enforced token by token (constrained decoding).

    ``kind`` says what ``spec`` is: ``json`` a JSON Schema (as JSON text; ``{"type": "object"}``
    for any object), ``regex`` a regular expression the whole output matches, ``choice`` a JSON
    list of strings (the output is one of them), ``grammar`` a Lark grammar in llguidance's
    dialect (which also takes GBNF). Equal values share one compiled grammar.
    """

    kind: StructuredKind
    spec: str

    def __post_init__(self) -> None:
        if self.kind not in STRUCTURED_KINDS:
            raise ValueError(
                f"structured output kind {self.kind!r} is unknown: use {', '.join(STRUCTURED_KINDS)}"
            )
        if not self.spec:
            raise ValueError(f"the {self.kind} of a structured output is empty")


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How to pick tokens and what to report about them; temperature 0 is greedy.

    Penalties follow OpenAI and vLLM: ``frequency_penalty`` subtracts ``count x penalty`` from the
    logit of every token already generated ``count`` times, ``presence_penalty`` subtracts the
    penalty once from every token generated at all, ``repetition_penalty`` (1 = off) divides
    positive logits and multiplies negative ones of tokens in the prompt or the output.
    ``logit_bias`` adds its value to a token's logit (-100 bans it, 100 all but forces it).
    ``logprobs`` asks for the sampled tokens' log probabilities with that many alternatives
    each (None: none); ``prompt_logprobs`` the same for the prompt's tokens. ``echo`` returns
    the prompt (its text, and its log probabilities when asked) before the generated text;
    ``max_tokens`` 0 is allowed only then (score a prompt without generating).
    """

    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 means no top-k filter
    min_p: float = 0.0  # drop tokens less likely than min_p x the most likely one
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()  # more token ids that end a choice, like EOS
    seed: int | None = None
    n: int = 1
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, bias) pairs
    min_tokens: int = 0  # EOS and stop_token_ids are banned until this many tokens were generated
    ignore_eos: bool = False  # keep generating past EOS (to max_tokens or a stop)
    logprobs: int | None = None
    prompt_logprobs: int | None = None
    echo: bool = False
    structured: StructuredOutput | None = None

    def __post_init__(self) -> None:
        self._check_sampling()
        self._check_penalties()
        self._check_reporting()

    def _check_sampling(self) -> None:
        if self.max_tokens < 0 or (self.max_tokens == 0 and not self.echo):
            raise ValueError("max_tokens must be at least 1 (0 only with echo, to score the prompt)")
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError("temperature must be between 0 and 2")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError("top_p must be in (0, 1]")
        if self.top_k < 0:
            raise ValueError("top_k must be 0 (off) or positive")
        if not 0.0 <= self.min_p <= 1.0:
            raise ValueError("min_p must be between 0 and 1")
        if self.n < 1:
            raise ValueError("n must be at least 1")
        if self.min_tokens < 0 or self.min_tokens > max(self.max_tokens, 0):
            raise ValueError("min_tokens must be between 0 and max_tokens")
        if any(t < 0 for t in self.stop_token_ids):
            raise ValueError("stop_token_ids must be token ids (integers >= 0)")

    def _check_penalties(self) -> None:
        for name in ("frequency_penalty", "presence_penalty"):
            if not -2.0 <= getattr(self, name) <= 2.0:
                raise ValueError(f"{name} must be between -2 and 2")
        if not 0.0 < self.repetition_penalty <= 2.0:
            raise ValueError("repetition_penalty must be in (0, 2] (1 is off)")
        for token, bias in self.logit_bias:
            if token < 0:
                raise ValueError(f"logit_bias names token {token}: token ids are integers >= 0")
            if not -100.0 <= bias <= 100.0:
                raise ValueError(f"logit_bias for token {token} is {bias}: biases are between -100 and 100")

    def _check_reporting(self) -> None:
        for name in ("logprobs", "prompt_logprobs"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= MAX_TOP_LOGPROBS:
                raise ValueError(f"{name} must be between 0 and {MAX_TOP_LOGPROBS} alternatives")


@dataclass(slots=True)
class GenerationRequest:
    """Text generation: a prompt string, token ids, or chat messages.

    Exactly one of ``prompt``, ``prompt_token_ids`` or ``messages`` is set;
    ``messages`` (dicts with ``role`` and ``content``, and for tool use ``tool_calls`` on
    assistant turns and ``tool_call_id`` on ``tool`` turns) go through the model's chat
    template, with ``tools`` (function definitions, as chat templates take them) when given.
    """

    prompt: str | None = None
    prompt_token_ids: list[int] | None = None
    messages: list[dict[str, Any]] | None = None
    params: SamplingParams = field(default_factory=SamplingParams)
    tools: list[dict[str, Any]] | None = None
    priority: int = 0  # lower runs first, like vLLM and Triton
    deadline: float | None = None
    request_id: str = field(default_factory=new_request_id)
    arrival: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        given = sum(x is not None for x in (self.prompt, self.prompt_token_ids, self.messages))
        if given != 1:
            raise ValueError("give exactly one of prompt, prompt_token_ids or messages")
        if self.tools is not None and self.messages is None:
            raise ValueError("tools go with chat messages, not with a prompt")


@dataclass(slots=True)
class TokenLogprob:
    """One token as the model saw it: its text, its UTF-8 bytes and its log probability.

    ``token`` is the token's text; a token that is only part of a UTF-8 character is written
    ``bytes:\\xe2\\x80`` (as OpenAI does), and ``bytes`` always has the exact bytes. ``top`` holds
    the most likely alternatives at that position, best first (empty unless asked for).
    ``logprob`` is None only for a prompt's first token, which nothing predicts.
    """

    token_id: int
    token: str
    bytes: list[int]
    logprob: float | None
    top: list[TokenLogprob] = field(default_factory=list)


@dataclass(slots=True)
class Completion:
    """One choice of a finished generation.

    With ``echo``, ``prompt_text`` is the prompt and ``prompt_logprobs`` its tokens (the first
    has no log probability), when asked for.
    """

    index: int
    text: str
    token_ids: list[int]
    finish_reason: FinishReason
    logprobs: list[TokenLogprob] | None = None
    prompt_text: str | None = None
    prompt_logprobs: list[TokenLogprob] | None = None


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
    are cumulative for the choice, so the last delta carries the usage. With ``echo``, the
    first delta of each choice carries ``prompt_text`` (and ``prompt_logprobs`` when asked).
    """

    index: int
    text: str
    token_ids: list[int]
    finish_reason: FinishReason | None
    prompt_tokens: int
    completion_tokens: int
    logprobs: list[TokenLogprob] | None = None
    prompt_text: str | None = None
    prompt_logprobs: list[TokenLogprob] | None = None


@dataclass(slots=True)
class TokenizeRequest:
    """Turn a prompt, or chat messages through the chat template, into the model's token ids."""

    prompt: str | None = None
    messages: list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None
    add_special_tokens: bool = True  # prompts only: the tokenizer's BOS and the like
    add_generation_prompt: bool = True  # messages only: end with the assistant turn's opening
    request_id: str = field(default_factory=new_request_id)

    def __post_init__(self) -> None:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of prompt or messages")


@dataclass(slots=True)
class TokenizeResult:
    """Token ids, each token's text, and the model's context length."""

    token_ids: list[int]
    tokens: list[str]
    max_context: int


@dataclass(slots=True)
class DetokenizeRequest:
    """Turn token ids back into text."""

    token_ids: list[int]
    request_id: str = field(default_factory=new_request_id)


@dataclass(slots=True)
class DetokenizeResult:
    text: str


@dataclass(slots=True)
class TokenizerInfoRequest:
    """What a text model's tokenizer is: special tokens, chat template, context length."""

    request_id: str = field(default_factory=new_request_id)


@dataclass(slots=True)
class TokenizerInfo:
    """vLLM's ``/tokenizer_info`` fields that clients read (lm-evaluation-harness's remote tokenizer)."""

    tokenizer_class: str
    eos_token: str | None
    bos_token: str | None
    pad_token: str | None
    chat_template: str | None
    max_context: int


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

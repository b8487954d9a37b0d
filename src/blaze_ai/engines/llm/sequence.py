"""The engine core's per-request and per-row state, and what a step hands back.

A :class:`RequestState` is one admitted request (its prompt ids and open choices); each of its
``n`` choices is a :class:`Sequence`, one row of the running batch, which carries everything the
row needs step after step: sampling settings, detokenizer, stop matcher, generated ids (for
penalties), the grammar matcher of a structured output, and what is still to be reported.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from blaze_ai.engines.llm.detokenizer import Detokenizer, StopMatcher
from blaze_ai.engines.llm.sampling import RowSampling
from blaze_ai.engines.requests import FinishReason, GenerationRequest, StreamDelta, TokenLogprob
from blaze_ai.errors import BlazeError


@dataclass(slots=True)
class StepOutput:
    """What one step produced for one request: a delta, or the error that ended it."""

    request_id: str
    delta: StreamDelta | None = None
    error: BlazeError | None = None
    finished: bool = False  # the request is over (every choice finished, or it failed)


@dataclass(slots=True)
class RequestState:
    """One admitted request."""

    request: GenerationRequest
    prompt_ids: list[int]
    max_tokens: int
    open_choices: int
    #: Filled by prefill when the request asked for its prompt's log probabilities.
    prompt_logprobs: list[TokenLogprob] | None = None

    @property
    def scores_prompt(self) -> bool:
        """Whether prefill must keep the logits of every prompt position."""
        return self.request.params.prompt_logprobs is not None


@dataclass(slots=True)
class Sequence:
    """One row of the batch: one choice of one request."""

    owner: RequestState
    index: int
    sampling: RowSampling
    detok: Detokenizer
    stops: StopMatcher
    matcher: Any = None  # llguidance matcher of a structured output
    output_ids: list[int] = field(default_factory=list)  # kept only for penalties
    last_token: int = -1
    generated: int = 0
    finish: FinishReason | None = None
    first_token_at: float | None = None
    echo_pending: bool = False  # the prompt goes out with the first delta
    #: No penalties, bans or grammar: the row needs nothing from the step's context.
    plain: bool = True

    @property
    def request_id(self) -> str:
        return self.owner.request.request_id

    def banned(self, eos: frozenset[int]) -> tuple[int, ...]:
        """Tokens this row may not take yet: EOS and stop tokens before ``min_tokens``."""
        params = self.owner.request.params
        if self.generated >= params.min_tokens:
            return ()
        return (*(() if params.ignore_eos else tuple(eos)), *params.stop_token_ids)

    def ends_on(self, token: int, eos: frozenset[int]) -> bool:
        """Whether ``token`` ends the choice without being part of its text (EOS or a stop token)."""
        params = self.owner.request.params
        return (token in eos and not params.ignore_eos) or token in params.stop_token_ids


@dataclass(slots=True)
class CoreStats:
    """Counters the engine reports; plain numbers."""

    steps: int = 0
    prefill_passes: int = 0
    generated_tokens: int = 0
    prompt_tokens: int = 0
    finished_requests: int = 0
    last_batch_size: int = 0
    ttft_sum_s: float = 0.0
    ttft_count: int = 0
    recent: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=256))

    def tokens_per_s(self) -> float:
        """Generated tokens per second over the recent steps."""
        if len(self.recent) < 2:
            return 0.0
        span = self.recent[-1][0] - self.recent[0][0]
        return sum(n for _, n in list(self.recent)[1:]) / span if span > 0 else 0.0

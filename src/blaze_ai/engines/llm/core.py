"""The synchronous heart of the LLM engine: ``add_request``, ``abort``, ``step``.

One :meth:`EngineCore.step` is one iteration of continuous batching:

1) admit: apply aborts, drop queued requests past their deadline, and let the
   scheduler move waiting requests into the batch within its row and token budget;
2) decode: one forward pass over the running rows, one new token each;
3) prefill: newcomers run their prompts as their own batches (grouped by
   length so that little is spent on padding; each prompt once, its rows
   repeated for ``n`` choices) and get their first token;
4) post-process: sample every row at once, detokenise, check EOS, length and
   stop sequences, emit deltas; merge the newcomers' KV cache into the running
   batch and filter finished rows out.

So a request joins between two decode steps and leaves as soon as it is done:
a short request never waits for a long one. Everything here runs on the one
engine thread, except ``add_request`` and ``abort``, which take a lock.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import torch

from blaze_ai.engines.llm import batch as kv
from blaze_ai.engines.llm.config import LLMConfig
from blaze_ai.engines.llm.detokenizer import Detokenizer, StopMatcher
from blaze_ai.engines.llm.loading import LoadedModel
from blaze_ai.engines.llm.sampling import RowSampling, make_generator, sample
from blaze_ai.engines.llm.scheduler import Scheduler, SchedulerConfig, Ticket
from blaze_ai.engines.requests import FinishReason, GenerationRequest, StreamDelta
from blaze_ai.errors import BadRequestError, BlazeError, CancelledError, ContextLengthError, TimedOutError


@dataclass(slots=True)
class StepOutput:
    """What one step produced for one request: a delta, or the error that ended it."""

    request_id: str
    delta: StreamDelta | None = None
    error: BlazeError | None = None
    finished: bool = False  # the request is over (every choice finished, or it failed)


@dataclass(slots=True)
class _Request:
    request: GenerationRequest
    prompt_ids: list[int]
    max_tokens: int
    open_choices: int


@dataclass(slots=True)
class _Sequence:
    """One row of the batch: one choice of one request."""

    owner: _Request
    index: int
    sampling: RowSampling
    detok: Detokenizer
    stops: StopMatcher
    last_token: int = -1
    generated: int = 0
    finish: FinishReason | None = None
    first_token_at: float | None = None


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


class EngineCore:
    """Continuous batching over one loaded model; not thread-safe except add/abort."""

    def __init__(self, loaded: LoadedModel, config: LLMConfig) -> None:
        self.loaded = loaded
        self.config = config
        self.max_context = min(loaded.max_context, config.max_context_length or loaded.max_context)
        self.scheduler = Scheduler(
            SchedulerConfig(config.max_batch_size, config.max_tokens_in_flight, config.max_queued_requests)
        )
        self.stats = CoreStats()
        self._lock = threading.Lock()
        # Fast tokenizers raise "Already borrowed" when encoding (which may reset padding settings) runs
        # while another thread decodes; add_request encodes on the caller's thread, the step decodes.
        self._tokenizer_lock = threading.Lock()
        self._requests: dict[str, _Request] = {}
        self._aborts: set[str] = set()
        self._rows: list[_Sequence] = []
        self._batch: kv.KVBatch | None = None
        self._eos = frozenset(loaded.eos_token_ids)
        #: One prefill forward pass costs as much as this many prompt tokens; None until calibrated
        #: (then every step's newcomers are prefilled as one batch).
        self.prefill_overhead_tokens: float | None = None

    # -- admission (any thread) -------------------------------------------------------------------

    def tokenize(self, request: GenerationRequest) -> list[int]:
        """The prompt's token ids; ``messages`` go through the chat template."""
        tokenizer = self.loaded.tokenizer
        if request.prompt_token_ids is not None:
            return list(request.prompt_token_ids)
        if request.messages is not None:
            text = tokenizer.apply_chat_template(request.messages, add_generation_prompt=True, tokenize=False)
            return list(tokenizer(text, add_special_tokens=False)["input_ids"])
        return list(tokenizer(request.prompt)["input_ids"])

    def add_request(self, request: GenerationRequest) -> None:
        """Queue a request; raise ContextLengthError, OverloadedError or BadRequestError at once."""
        try:
            with self._tokenizer_lock:
                prompt_ids = self.tokenize(request)
        except (ValueError, TypeError, KeyError) as exc:  # e.g. no chat template, malformed messages
            raise BadRequestError(f"cannot tokenize the request: {exc}") from exc
        if not prompt_ids:
            prompt_ids = list(self.loaded.eos_token_ids[:1])
        room = self.max_context - len(prompt_ids)
        if room < 1:
            raise ContextLengthError(
                f"the prompt has {len(prompt_ids)} tokens but this model's context is {self.max_context}: "
                "shorten the prompt",
                param="messages" if request.messages is not None else "prompt",
            )
        params = request.params
        max_tokens = min(params.max_tokens, room)
        ticket = Ticket(
            request.request_id, len(prompt_ids), max_tokens, params.n, request.priority, request.arrival,
            request.deadline,
        )  # fmt: skip
        with self._lock:
            self.scheduler.add(ticket)
            self._requests[request.request_id] = _Request(request, prompt_ids, max_tokens, params.n)

    def abort(self, request_id: str) -> None:
        """Stop a request at the next step (queued or running)."""
        with self._lock:
            self._aborts.add(request_id)

    def has_work(self) -> bool:
        """Whether a step would do anything."""
        return bool(self._rows or self.scheduler.waiting or self._aborts)

    # -- the loop (engine thread) -----------------------------------------------------------------

    def step(self) -> list[StepOutput]:
        """One iteration: admit, decode the running rows, prefill newcomers, post-process."""
        outputs: list[StepOutput] = []
        # 1) admit
        with self._lock:
            self._apply_aborts(outputs)
            decision = self.scheduler.schedule()
            for ticket in decision.expired:
                self._requests.pop(ticket.request_id, None)
                error = TimedOutError(f"request {ticket.request_id} waited past its deadline")
                outputs.append(StepOutput(ticket.request_id, error=error, finished=True))
            newcomers = [self._requests[t.request_id] for t in decision.admitted]
        if not self._rows and not newcomers:
            return outputs
        with torch.inference_mode(), self.loaded.autocast(self.config.amp):
            # 2) decode one token for every running row
            if self._rows and self._batch is not None:
                logits = kv.decode(self.loaded.model, self._batch, [s.last_token for s in self._rows])
                self._advance(self._rows, logits, outputs)
            # 3) prefill newcomers as their own batch and merge them in
            if newcomers:
                self._prefill(newcomers, outputs)
            # 4) filter finished rows out
            self._drop_finished()
        self.stats.steps += 1
        self.stats.last_batch_size = len(self._rows)
        return outputs

    def calibrate(self) -> None:
        """Measure what a prefill forward pass costs in prompt tokens (run once, on the engine thread)."""
        with torch.inference_mode(), self.loaded.autocast(self.config.amp):
            self.prefill_overhead_tokens = kv.forward_overhead_tokens(self.loaded.model)

    def _prefill(self, newcomers: list[_Request], outputs: list[StepOutput]) -> None:
        lengths = [len(r.prompt_ids) for r in newcomers]
        groups = (
            [list(range(len(newcomers)))]
            if self.prefill_overhead_tokens is None
            else kv.prefill_groups(lengths, self.prefill_overhead_tokens)
        )
        for group in groups:
            requests = [newcomers[i] for i in group]
            logits, new_batch = kv.prefill(
                self.loaded.model,
                [r.prompt_ids for r in requests],
                [r.request.params.n for r in requests],
                max_rows=self.config.max_batch_size,
            )
            rows = [self._new_sequence(r, i) for r in requests for i in range(r.request.params.n)]
            self._advance(rows, logits, outputs)
            self._batch = new_batch if self._batch is None else kv.merge(self._batch, new_batch)
            self._rows.extend(rows)
        self.stats.prefill_passes += len(groups)
        self.stats.prompt_tokens += sum(lengths)

    def _new_sequence(self, owner: _Request, index: int) -> _Sequence:
        params = owner.request.params
        seed = None if params.seed is None else params.seed + index
        sampling = RowSampling(
            params.temperature, params.top_p, params.top_k, make_generator(seed), params.logprobs
        )
        detok = Detokenizer(self.loaded.tokenizer, owner.prompt_ids)
        return _Sequence(owner, index, sampling, detok, StopMatcher(params.stop))

    def _advance(self, rows: list[_Sequence], logits: torch.Tensor, outputs: list[StepOutput]) -> None:
        """Sample one token per row and turn it into deltas."""
        sampled = sample(logits, [s.sampling for s in rows])
        now = time.monotonic()
        self.stats.generated_tokens += len(rows)
        self.stats.recent.append((now, len(rows)))
        with self._tokenizer_lock:
            logprobs = sampled.logprobs or [0.0] * len(rows)
            for seq, token, logprob in zip(rows, sampled.tokens, logprobs, strict=True):
                self._accept(seq, token, logprob if seq.sampling.logprobs else None, now, outputs)

    def _accept(
        self, seq: _Sequence, token: int, logprob: float | None, now: float, outputs: list[StepOutput]
    ) -> None:
        if seq.first_token_at is None:
            seq.first_token_at = now
            if seq.index == 0:
                self.stats.ttft_sum_s += now - seq.owner.request.arrival
                self.stats.ttft_count += 1
        seq.last_token = token
        seq.generated += 1
        if token in self._eos:  # the EOS token ends the text and is not part of it
            self._emit(seq, _flush(seq), [], None, "stop", outputs)
            return
        text, stopped = seq.stops.feed(seq.detok.push(token))
        finish: FinishReason | None = "stop" if stopped else None
        if finish is None and seq.generated >= seq.owner.max_tokens:
            finish = "length"
            text += _flush(seq)
        self._emit(seq, text, [token], logprob, finish, outputs)

    def _emit(
        self,
        seq: _Sequence,
        text: str,
        tokens: list[int],
        logprob: float | None,
        finish: FinishReason | None,
        outputs: list[StepOutput],
    ) -> None:
        owner = seq.owner
        delta = StreamDelta(
            seq.index, text, tokens, finish, len(owner.prompt_ids), seq.generated,
            None if logprob is None else [logprob],
        )  # fmt: skip
        finished = False
        if finish is not None:
            seq.finish = finish
            owner.open_choices -= 1
            finished = owner.open_choices == 0
            if finished:
                self._release(owner.request.request_id)
        outputs.append(StepOutput(owner.request.request_id, delta=delta, finished=finished))

    def _release(self, request_id: str) -> None:
        with self._lock:
            self.scheduler.finish(request_id)
            self._requests.pop(request_id, None)
        self.stats.finished_requests += 1

    def _apply_aborts(self, outputs: list[StepOutput]) -> None:
        """Called with the lock held: drop aborted requests from the queue and the batch."""
        aborts, self._aborts = self._aborts, set()
        for request_id in aborts:
            if self.scheduler.abort(request_id):
                error = CancelledError(f"request {request_id} was aborted")
                outputs.append(StepOutput(request_id, error=error, finished=True))
            self._requests.pop(request_id, None)
        for seq in self._rows:
            if seq.finish is None and seq.owner.request.request_id in aborts:
                seq.finish = "abort"

    def _drop_finished(self) -> None:
        finished = [i for i, seq in enumerate(self._rows) if seq.finish is not None]
        if not finished:
            return
        if len(finished) == len(self._rows) or self._batch is None:
            self._rows, self._batch = [], None
            return
        self._rows = [self._rows[i] for i in self._batch.drop(finished)]

    def fail_all(self, error: BlazeError) -> list[StepOutput]:
        """After a crash in step: end every running and queued request with ``error``."""
        with self._lock:
            ids = list(self._requests)
            for request_id in ids:
                self.scheduler.abort(request_id)
            self._requests.clear()
            self._aborts.clear()
        self._rows, self._batch = [], None
        return [StepOutput(request_id, error=error, finished=True) for request_id in ids]


def _flush(seq: _Sequence) -> str:
    """Text still held by the detokenizer and the stop matcher, at the end of a sequence."""
    text, stopped = seq.stops.feed(seq.detok.flush())
    return text if stopped else text + seq.stops.flush()

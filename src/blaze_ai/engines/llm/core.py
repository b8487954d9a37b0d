"""The synchronous heart of the LLM engine: ``add_request``, ``abort``, ``step``.

One :meth:`EngineCore.step` is one iteration of continuous batching:

1) admit: apply aborts, drop queued requests past their deadline, and let the
   scheduler move waiting requests into the batch within its row and token budget;
2) decode: one forward pass over the running rows, one new token each;
3) prefill: finished rows leave the batch, and newcomers run their prompts as
   their own batches (grouped by length so that little is spent on padding;
   each prompt once, its rows repeated for ``n`` choices; prompts to be scored
   in batches of their own, which keep every position's logits), join the
   running rows and get their first token.

After each forward pass, every row is sampled at once (penalties, bans and
grammar masks applied per row, see :mod:`.sampling`), grammar matchers advance,
text is detokenised and EOS, stop tokens, length and stop sequences are checked
before deltas are emitted. The keys and values live in the runner
(:mod:`.runner`): a paged pool with a static-shape decode step where the
architecture allows it, else Hugging Face's forward.

So a request joins between two decode steps and leaves as soon as it is done:
a short request never waits for a long one. Everything here runs on the one
engine thread, except ``add_request`` and ``abort``, which take a lock.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import torch

from blaze_ai.engines.llm import batch as kv
from blaze_ai.engines.llm import chat
from blaze_ai.engines.llm.config import LLMConfig
from blaze_ai.engines.llm.detokenizer import Detokenizer, StopMatcher
from blaze_ai.engines.llm.loading import LoadedModel
from blaze_ai.engines.llm.runner import make_runner
from blaze_ai.engines.llm.sampling import RowSampling, Sampled, StepContext, make_generator, sample
from blaze_ai.engines.llm.scheduler import Scheduler, SchedulerConfig, Ticket
from blaze_ai.engines.llm.sequence import CoreStats, RequestState, Sequence, StepOutput
from blaze_ai.engines.llm.structured import Grammars, accept
from blaze_ai.engines.llm.vocab import Vocabulary
from blaze_ai.engines.requests import FinishReason, GenerationRequest, StreamDelta, TokenLogprob
from blaze_ai.errors import BadRequestError, BlazeError, CancelledError, ContextLengthError, TimedOutError

__all__ = ["CoreStats", "EngineCore", "StepOutput"]

#: A batch of prompts to score keeps at most this many positions' logits (unless one prompt is longer).
SCORED_TOKENS_PER_PASS = 2048


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
        self._requests: dict[str, RequestState] = {}
        self._aborts: set[str] = set()
        self._rows: list[Sequence] = []
        self.runner = make_runner(loaded, config, self.max_context)
        #: What warm_up measured and captured (decode path, KV pool, CUDA graphs), for the snapshot.
        self.warm_up_report: dict[str, Any] = {}
        self._eos = frozenset(loaded.eos_token_ids)
        self.vocab = Vocabulary(loaded.tokenizer)
        self.grammars = Grammars(loaded.tokenizer, loaded.model.config.vocab_size, loaded.eos_token_ids)
        #: One prefill forward pass costs as much as this many prompt tokens; None until warmed up
        #: (then every step's newcomers are prefilled as one batch).
        self.prefill_overhead_tokens: float | None = None

    # -- admission (any thread) -------------------------------------------------------------------

    def tokenize(self, request: GenerationRequest) -> list[int]:
        """The prompt's token ids; ``messages`` (and ``tools``) go through the chat template."""
        tokenizer = self.loaded.tokenizer
        if request.prompt_token_ids is not None:
            return list(request.prompt_token_ids)
        if request.messages is not None:
            text = chat.render(tokenizer, request.messages, request.tools)
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
        params = request.params
        self._check_tokens(prompt_ids, params.stop_token_ids, [t for t, _ in params.logit_bias])
        if params.structured is not None:
            self.grammars.compile(params.structured)  # cached; a grammar that does not compile is a 400
        room = self.max_context - len(prompt_ids)
        if room < (0 if params.max_tokens == 0 else 1):
            raise ContextLengthError(
                f"the prompt has {len(prompt_ids)} tokens but this model's context is {self.max_context}: "
                "shorten the prompt",
                param="messages" if request.messages is not None else "prompt",
            )
        max_tokens = min(params.max_tokens, room)
        ticket = Ticket(
            request.request_id, len(prompt_ids), max_tokens, params.n, request.priority, request.arrival,
            request.deadline,
        )  # fmt: skip
        with self._lock:
            self.scheduler.add(ticket)
            self._requests[request.request_id] = RequestState(request, prompt_ids, max_tokens, params.n)

    def _check_tokens(self, prompt: list[int], stop_ids: tuple[int, ...], biased: list[int]) -> None:
        vocab = self.grammars.vocab_size
        for name, ids in (("prompt", prompt), ("stop_token_ids", stop_ids), ("logit_bias", biased)):
            bad = next((t for t in ids if not 0 <= t < vocab), None)
            if bad is not None:
                raise BadRequestError(
                    f"token id {bad} is outside this model's vocabulary of {vocab}", param=name
                )

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
            # 2) decode one token for every running row (aborted rows leave first)
            self._drop_finished()
            if self._rows:
                logits = self.runner.decode([s.last_token for s in self._rows])
                self._advance(self._rows, logits, outputs)
            # 3) prefill newcomers into the rows that finished rows free
            self._drop_finished()
            if newcomers:
                self._prefill(newcomers, outputs)
                self._drop_finished()
        self.stats.steps += 1
        self.stats.last_batch_size = len(self._rows)
        return outputs

    def warm_up(self) -> None:
        """Measure what a prefill pass costs and capture CUDA graphs (once, on the engine thread)."""
        with torch.inference_mode(), self.loaded.autocast(self.config.amp):
            self.warm_up_report = self.runner.warm_up()
        self.prefill_overhead_tokens = self.runner.prefill_overhead_tokens

    def _prefill_groups(self, newcomers: list[RequestState]) -> list[list[int]]:
        """Newcomers' indices in prefill batches: scored prompts apart, each kind grouped by length."""
        plain = [i for i, r in enumerate(newcomers) if not r.scores_prompt]
        scored = [i for i, r in enumerate(newcomers) if r.scores_prompt]
        groups: list[list[int]] = []
        if plain:
            lengths = [len(newcomers[i].prompt_ids) for i in plain]
            split = (
                [list(range(len(plain)))]
                if self.prefill_overhead_tokens is None
                else kv.prefill_groups(lengths, self.prefill_overhead_tokens)
            )
            groups += [[plain[j] for j in group] for group in split]
        group: list[int] = []
        for i in sorted(scored, key=lambda i: len(newcomers[i].prompt_ids)):
            width = len(newcomers[i].prompt_ids)  # sorted: the newest member is the widest
            if group and (len(group) + 1) * width > SCORED_TOKENS_PER_PASS:
                groups.append(group)
                group = []
            group.append(i)
        return groups + ([group] if group else [])

    def _prefill(self, newcomers: list[RequestState], outputs: list[StepOutput]) -> None:
        for group in self._prefill_groups(newcomers):
            requests = [newcomers[i] for i in group]
            scored = requests[0].scores_prompt
            logits, full = self.runner.prefill(
                [r.prompt_ids for r in requests],
                [r.request.params.n for r in requests],
                [len(r.prompt_ids) + r.max_tokens for r in requests],
                keep_all=scored,
            )
            if full is not None:
                for r, row_logits in zip(requests, full, strict=True):
                    r.prompt_logprobs = self._prompt_logprobs(r, row_logits)
            rows = [self._new_sequence(r, i) for r in requests for i in range(r.request.params.n)]
            generating = [i for i, seq in enumerate(rows) if seq.owner.max_tokens > 0]
            for seq in rows:
                if seq.owner.max_tokens == 0:  # scored only: the prompt is the whole answer
                    self._emit(seq, "", [], None, "length", outputs)
            if generating:
                index = torch.tensor(generating, device=logits.device)
                self._advance([rows[i] for i in generating], logits.index_select(0, index), outputs)
            self._rows.extend(rows)
            self.stats.prefill_passes += 1
            self.stats.prompt_tokens += sum(len(r.prompt_ids) for r in requests)

    def _prompt_logprobs(self, state: RequestState, logits: torch.Tensor) -> list[TokenLogprob]:
        """Log probability of each prompt token given the ones before it (the first has none).

        ``logits [len(prompt), vocab]`` are the model's outputs at the prompt's positions.
        """
        prompt, k = state.prompt_ids, state.request.params.prompt_logprobs or 0
        result = [self.vocab.logprob(prompt[0], None)]
        if len(prompt) < 2:
            return result
        scores = torch.log_softmax(logits[: len(prompt) - 1].float(), dim=-1)
        targets = torch.tensor(prompt[1:], device=scores.device)
        chosen = scores.gather(1, targets[:, None]).squeeze(1).tolist()
        top_values, top_ids = scores.topk(k, dim=-1) if k else (None, None)
        for j, (token, logprob) in enumerate(zip(prompt[1:], chosen, strict=True)):
            top = (
                [] if top_ids is None or top_values is None else self._alternatives(top_ids[j], top_values[j])
            )
            result.append(self.vocab.logprob(token, logprob, top))
        return result

    def _alternatives(self, ids: torch.Tensor, values: torch.Tensor) -> list[TokenLogprob]:
        return [self.vocab.logprob(t, lp) for t, lp in zip(ids.tolist(), values.tolist(), strict=True)]

    def _new_sequence(self, owner: RequestState, index: int) -> Sequence:
        params = owner.request.params
        seed = None if params.seed is None else params.seed + index
        sampling = RowSampling(
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k,
            min_p=params.min_p,
            generator=make_generator(seed),
            logprobs=params.logprobs,
            frequency_penalty=params.frequency_penalty,
            presence_penalty=params.presence_penalty,
            repetition_penalty=params.repetition_penalty,
            logit_bias=params.logit_bias,
            prompt_ids=owner.prompt_ids if params.repetition_penalty != 1.0 else [],
        )
        detok = Detokenizer(self.loaded.tokenizer, owner.prompt_ids)
        matcher = None if params.structured is None else self.grammars.matcher(params.structured)
        seq = Sequence(owner, index, sampling, detok, StopMatcher(params.stop), matcher=matcher)
        seq.echo_pending = params.echo
        seq.plain = not sampling.penalised and params.min_tokens == 0 and matcher is None
        return seq

    def _context(self, rows: list[Sequence]) -> StepContext:
        """Histories, bans and grammar masks of one step's rows."""
        ctx = StepContext(fallback_token=self.loaded.eos_token_ids[0] if self.loaded.eos_token_ids else 0)
        if all(s.plain for s in rows):
            return ctx
        if any(s.sampling.penalised for s in rows):
            ctx.outputs = [s.output_ids for s in rows]
        for i, seq in enumerate(rows):
            banned = seq.banned(self._eos)
            if banned:
                ctx.banned[i] = banned
        ctx.masked_rows = [i for i, s in enumerate(rows) if s.matcher is not None]
        ctx.matchers = [rows[i].matcher for i in ctx.masked_rows]
        ctx.grammars = self.grammars
        return ctx

    def _advance(self, rows: list[Sequence], logits: torch.Tensor, outputs: list[StepOutput]) -> None:
        """Sample one token per row and turn it into deltas."""
        sampled = sample(logits, [s.sampling for s in rows], self._context(rows))
        now = time.monotonic()
        self.stats.generated_tokens += len(rows)
        self.stats.recent.append((now, len(rows)))
        with self._tokenizer_lock:
            for i, (seq, token) in enumerate(zip(rows, sampled.tokens, strict=True)):
                self._accept(seq, token, self._token_logprob(sampled, i, seq), now, outputs)

    def _token_logprob(self, sampled: Sampled, i: int, seq: Sequence) -> TokenLogprob | None:
        if seq.sampling.logprobs is None or sampled.logprobs is None:
            return None
        top: list[TokenLogprob] = []
        k = seq.sampling.logprobs
        if k and sampled.top_ids is not None and sampled.top_logprobs is not None:
            pairs = zip(sampled.top_ids[i][:k], sampled.top_logprobs[i][:k], strict=True)
            top = [self.vocab.logprob(t, lp) for t, lp in pairs]
        return self.vocab.logprob(sampled.tokens[i], sampled.logprobs[i], top)

    def _accept(
        self, seq: Sequence, token: int, logprob: TokenLogprob | None, now: float, outputs: list[StepOutput]
    ) -> None:
        if seq.first_token_at is None:
            seq.first_token_at = now
            if seq.index == 0:
                self.stats.ttft_sum_s += now - seq.owner.request.arrival
                self.stats.ttft_count += 1
        seq.last_token = token
        seq.generated += 1
        if seq.sampling.penalised:
            seq.output_ids.append(token)
        complete = seq.matcher is not None and accept(seq.matcher, token)
        logprobs = None if logprob is None else [logprob]
        if seq.ends_on(token, self._eos):
            # EOS and stop tokens end the text and are not part of it, but they are generated tokens:
            # their ids and log probabilities are reported (lm-evaluation-harness counts on one entry
            # per generated token).
            self._emit(seq, _flush(seq), [token], logprobs, "stop", outputs)
            return
        text, stopped = seq.stops.feed(seq.detok.push(token))
        finish: FinishReason | None = "stop" if stopped or complete else None
        if finish is None and seq.generated >= seq.owner.max_tokens:
            finish = "length"
        if finish is not None and not stopped:
            text += _flush(seq)
        self._emit(seq, text, [token], logprobs, finish, outputs)

    def _emit(
        self,
        seq: Sequence,
        text: str,
        tokens: list[int],
        logprobs: list[TokenLogprob] | None,
        finish: FinishReason | None,
        outputs: list[StepOutput],
    ) -> None:
        owner = seq.owner
        delta = StreamDelta(seq.index, text, tokens, finish, len(owner.prompt_ids), seq.generated, logprobs)
        if seq.echo_pending:
            seq.echo_pending = False
            delta.prompt_text = self.loaded.tokenizer.decode(owner.prompt_ids)
            delta.prompt_logprobs = owner.prompt_logprobs
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
            if seq.finish is None and seq.request_id in aborts:
                seq.finish = "abort"

    def _drop_finished(self) -> None:
        finished = [i for i, seq in enumerate(self._rows) if seq.finish is not None]
        if not finished:
            return
        self._rows = [self._rows[i] for i in self.runner.drop(finished)]

    def fail_all(self, error: BlazeError) -> list[StepOutput]:
        """After a crash in step: end every running and queued request with ``error``."""
        with self._lock:
            ids = list(self._requests)
            for request_id in ids:
                self.scheduler.abort(request_id)
            self._requests.clear()
            self._aborts.clear()
        self._rows = []
        self.runner.clear()
        return [StepOutput(request_id, error=error, finished=True) for request_id in ids]

    # -- tokenizer service (any thread) -----------------------------------------------------------

    def encode(
        self, prompt: str | None, messages: Any, tools: Any, *, special: bool, generation: bool
    ) -> list[int]:
        """Token ids of a prompt or of chat messages, as a generation request would see them."""
        tokenizer = self.loaded.tokenizer
        with self._tokenizer_lock:
            if messages is not None:
                text = chat.render(tokenizer, messages, tools, add_generation_prompt=generation)
                return list(tokenizer(text, add_special_tokens=False)["input_ids"])
            return list(tokenizer(prompt, add_special_tokens=special)["input_ids"])

    def decode(self, token_ids: list[int]) -> str:
        """The text of ``token_ids`` (special tokens included)."""
        self._check_tokens(token_ids, (), [])
        with self._tokenizer_lock:
            return str(self.loaded.tokenizer.decode(token_ids))


def _flush(seq: Sequence) -> str:
    """Text still held by the detokenizer and the stop matcher, at the end of a sequence."""
    text, stopped = seq.stops.feed(seq.detok.flush())
    return text if stopped else text + seq.stops.flush()

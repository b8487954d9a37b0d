"""Per-row logits processing and sampling over a batch, in a few batched tensor ops.

One step's logits ``[rows, vocab]`` go through, in order:

1) log probabilities of the raw model output, when a row asked for them (OpenAI and vLLM
   report the model's distribution, before penalties, biases and masks);
2) penalties and biases of the rows that have any: repetition (prompt and output tokens),
   frequency and presence (output tokens), ``logit_bias``;
3) bans: EOS and stop tokens of rows short of ``min_tokens``;
4) grammar masks of constrained rows (a bitmask per row, skipped for a greedy row whose best
   token its grammar allows; see :mod:`.structured`);
5) the pick: greedy rows take the argmax; the others are sampled with their temperature,
   top-k, top-p and min-p by inverse transform, one uniform number per row (from the row's own
   generator when seeded, so a seeded row gets the same tokens whatever its batch mates are).

Every operation is per row, so a row's tokens never depend on the rows beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from blaze_ai.engines.llm.structured import Grammars, constrain


@dataclass(slots=True)
class RowSampling:
    """Sampling settings of one row (one sequence)."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    generator: torch.Generator | None = None
    logprobs: int | None = None  # alternatives to report per token; None: no log probabilities
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: tuple[tuple[int, float], ...] = ()
    prompt_ids: list[int] = field(default_factory=list)  # for the repetition penalty
    #: Whether any penalty or bias changes the logits (set once: it is read for every row, every step).
    penalised: bool = field(init=False)

    def __post_init__(self) -> None:
        self.penalised = bool(
            self.frequency_penalty
            or self.presence_penalty
            or self.repetition_penalty != 1.0
            or self.logit_bias
        )

    @property
    def greedy(self) -> bool:
        """Whether the row takes the most likely token."""
        return self.temperature == 0.0 or self.top_k == 1


@dataclass(slots=True)
class StepContext:
    """What one step's rows carry besides their settings: history, bans and grammar masks."""

    outputs: list[list[int]] | None = None  # tokens generated so far per row (for penalties)
    banned: dict[int, tuple[int, ...]] = field(default_factory=dict)  # row -> token ids to forbid
    masked_rows: list[int] = field(default_factory=list)  # rows constrained by a grammar
    matchers: list[Any] = field(default_factory=list)  # their grammar matchers, in the same order
    grammars: Grammars | None = None  # computes the matchers' masks
    fallback_token: int = 0  # taken by a row whose bans and mask leave nothing (EOS ends it)


def make_generator(seed: int | None) -> torch.Generator | None:
    """A CPU generator seeded with ``seed``, or None for the global RNG."""
    if seed is None:
        return None
    gen = torch.Generator(device="cpu")
    gen.manual_seed(seed)
    return gen


@dataclass(slots=True)
class Sampled:
    """Chosen tokens; their raw log-probabilities and the top alternatives when any row asked."""

    tokens: list[int]
    logprobs: list[float] | None = None
    top_ids: list[list[int]] | None = None  # [rows][k], k = the most alternatives any row asked
    top_logprobs: list[list[float]] | None = None


def sample(logits: torch.Tensor, rows: list[RowSampling], ctx: StepContext | None = None) -> Sampled:
    """Pick one token per row of ``logits`` ``[batch, vocab]`` (``logits`` may be changed in place)."""
    ctx = ctx or StepContext()
    logits = logits.float()
    # 1) raw log probabilities
    want = [row.logprobs for row in rows if row.logprobs is not None]
    raw = torch.log_softmax(logits, dim=-1) if want else None
    # 2-4) penalties, bans, grammar masks
    penalised = [i for i, row in enumerate(rows) if row.penalised]
    if penalised:
        _penalise(logits, rows, penalised, ctx.outputs)
    if ctx.banned:
        _ban(logits, ctx.banned)
    masked: list[int] = []
    if ctx.masked_rows and ctx.grammars is not None:
        greedy = [rows[i].greedy for i in ctx.masked_rows]
        masked = constrain(logits, ctx.masked_rows, ctx.matchers, greedy, ctx.grammars)
    _revive(logits, sorted({*ctx.banned, *masked}), ctx.fallback_token)
    # 5) pick
    chosen = logits.argmax(dim=-1)
    random_rows = [i for i, row in enumerate(rows) if not row.greedy]
    if random_rows:
        index = torch.tensor(random_rows, device=logits.device)
        picked = _sample_rows(logits.index_select(0, index), [rows[i] for i in random_rows])
        chosen = chosen.index_copy(0, index, picked)
    result = Sampled(tokens=chosen.tolist())
    if raw is not None:
        result.logprobs = raw.gather(1, chosen[:, None]).squeeze(1).tolist()
        k = max(want)
        if k:
            values, ids = raw.topk(k, dim=-1)
            result.top_ids, result.top_logprobs = ids.tolist(), values.tolist()
    return result


def _penalise(
    logits: torch.Tensor, rows: list[RowSampling], index: list[int], outputs: list[list[int]] | None
) -> None:
    """Repetition, frequency and presence penalties and logit biases of rows ``index``, in place.

    Only the logits of tokens that occur (in the output, or in the prompt for the repetition
    penalty) change, so the work is gathered to those (row, token) pairs: a few thousand values
    instead of rows x vocab.
    """
    device, vocab = logits.device, logits.shape[-1]
    history = [outputs[i] if outputs is not None else [] for i in index]
    out_keys = [i * vocab + t for i, tokens in zip(index, history, strict=True) for t in tokens if t < vocab]
    prompt_keys = [
        i * vocab + t
        for i in index
        if rows[i].repetition_penalty != 1.0
        for t in rows[i].prompt_ids
        if t < vocab
    ]
    if out_keys or prompt_keys:
        keys, counts = torch.unique(torch.tensor(out_keys, dtype=torch.long), return_counts=True)
        seen = torch.unique(torch.cat([keys, torch.tensor(prompt_keys, dtype=torch.long)]))
        occurrences = torch.zeros(seen.shape, dtype=torch.float32)
        occurrences[torch.searchsorted(seen, keys)] = counts.float()
        at_rows, at_tokens = (seen // vocab).to(device), (seen % vocab).to(device)
        settings = [[r.repetition_penalty, r.frequency_penalty, r.presence_penalty] for r in rows]
        table = torch.tensor(settings, device=device)[at_rows]
        values = logits[at_rows, at_tokens]
        values = torch.where(values > 0, values / table[:, 0], values * table[:, 0])  # vLLM's order
        occurrences = occurrences.to(device)
        values -= table[:, 1] * occurrences + table[:, 2] * (occurrences > 0)
        logits[at_rows, at_tokens] = values
    biases = [(i, token, bias) for i in index for token, bias in rows[i].logit_bias if token < vocab]
    if biases:
        bias_rows = torch.tensor([b[0] for b in biases], device=device)
        bias_tokens = torch.tensor([b[1] for b in biases], device=device)
        bias_values = torch.tensor([b[2] for b in biases], device=device, dtype=logits.dtype)
        logits.index_put_((bias_rows, bias_tokens), bias_values, accumulate=True)


def _ban(logits: torch.Tensor, banned: dict[int, tuple[int, ...]]) -> None:
    vocab = logits.shape[-1]
    pairs = [(row, token) for row, tokens in banned.items() for token in tokens if token < vocab]
    if pairs:
        rows = torch.tensor([p[0] for p in pairs], device=logits.device)
        tokens = torch.tensor([p[1] for p in pairs], device=logits.device)
        logits.index_put_((rows, tokens), torch.tensor(float("-inf"), device=logits.device))


def _revive(logits: torch.Tensor, rows: list[int], fallback: int) -> None:
    """Rows whose every token was masked out (a ban against a grammar's only way out) take ``fallback``."""
    for row in rows:
        if bool(torch.isneginf(logits[row]).all()):
            logits[row, fallback] = 0.0


def _sample_rows(logits: torch.Tensor, rows: list[RowSampling]) -> torch.Tensor:
    """Sample each row with its temperature, top-k, top-p and min-p by inverse transform.

    The vocabulary is sorted only for rows with a top-p below 1 (top-k takes the k largest, min-p
    compares with the largest): inverse transform needs no order, so most rows skip the sort.
    """
    device = logits.device
    temps = torch.tensor([max(row.temperature, 1e-5) for row in rows], device=device)
    scaled = logits / temps[:, None]
    if any(0 < row.top_k < logits.shape[-1] for row in rows):
        _keep_top_k(scaled, [row.top_k for row in rows])
    probs = torch.softmax(scaled, dim=-1)
    if any(row.min_p > 0 for row in rows):
        min_p = torch.tensor([row.min_p for row in rows], device=device)[:, None]
        top = probs.amax(dim=-1, keepdim=True)
        probs = probs.masked_fill(probs < min_p * top, 0.0)  # the most likely token always stays
    nucleus = [i for i, row in enumerate(rows) if row.top_p < 1.0]
    if nucleus:
        index = torch.tensor(nucleus, device=device)
        top_p = torch.tensor([rows[i].top_p for i in nucleus], device=device)
        probs.index_copy_(0, index, _keep_top_p(probs.index_select(0, index), top_p))
    cumulative = probs.cumsum(dim=-1)
    uniforms = _uniforms(rows).to(device) * cumulative[:, -1]
    picked = torch.searchsorted(cumulative, uniforms[:, None], right=True)
    return picked.clamp_(max=logits.shape[-1] - 1).squeeze(1)


def _keep_top_k(scaled: torch.Tensor, top_k: list[int]) -> None:
    """Set values below each row's ``top_k``-th largest to -inf, in place (0 keeps the row whole)."""
    vocab = scaled.shape[-1]
    ks = [k if 0 < k < vocab else vocab for k in top_k]
    deepest = max(k for k in ks if k < vocab)  # the caller has at least one row with a top-k
    largest = scaled.topk(deepest, dim=-1).values
    kth = largest.gather(1, torch.tensor([min(k, deepest) - 1 for k in ks], device=scaled.device)[:, None])
    kth[torch.tensor([k == vocab for k in ks], device=scaled.device)] = float("-inf")
    scaled.masked_fill_(scaled < kth, float("-inf"))


def _keep_top_p(probs: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Zero all but the smallest set of most likely tokens whose mass reaches ``top_p`` (per row)."""
    ordered, order = torch.sort(probs, dim=-1, descending=True)
    cumulative = ordered.cumsum(dim=-1)
    # Drop tokens whose preceding mass already reaches top_p (the most likely token always stays).
    drop = (cumulative - ordered) >= top_p[:, None] * cumulative[:, -1:]
    return probs.scatter(1, order, ordered.masked_fill(drop, 0.0))


def _uniforms(rows: list[RowSampling]) -> torch.Tensor:
    """One uniform in [0, 1) per row: seeded rows from their own generator."""
    values = torch.rand(len(rows))
    for i, row in enumerate(rows):
        if row.generator is not None:
            values[i] = torch.rand(1, generator=row.generator)[0]
    return values

"""Per-row sampling over a batch of logits, in a few batched tensor ops.

Each row has its own temperature (0 = greedy), top-k, top-p and optionally
its own seeded :class:`torch.Generator`. Rows are sampled by inverse
transform: one uniform number per row (drawn from the row's generator when
seeded) picks a token from the row's filtered, sorted distribution. A seeded
row therefore gets the same tokens whatever its batch mates are.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(slots=True)
class RowSampling:
    """Sampling settings of one row (one sequence)."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    generator: torch.Generator | None = None
    logprobs: bool = False

    @property
    def greedy(self) -> bool:
        """Whether the row takes the most likely token."""
        return self.temperature == 0.0 or self.top_k == 1


def make_generator(seed: int | None) -> torch.Generator | None:
    """A CPU generator seeded with ``seed``, or None for the global RNG."""
    if seed is None:
        return None
    gen = torch.Generator(device="cpu")
    gen.manual_seed(seed)
    return gen


@dataclass(slots=True)
class Sampled:
    """Chosen tokens (and their log-probabilities when any row asked) for a batch."""

    tokens: list[int]
    logprobs: list[float] | None


def sample(logits: torch.Tensor, rows: list[RowSampling]) -> Sampled:
    """Pick one token per row of ``logits`` ``[batch, vocab]``."""
    logits = logits.float()
    chosen = logits.argmax(dim=-1)
    random_rows = [i for i, row in enumerate(rows) if not row.greedy]
    if random_rows:
        index = torch.tensor(random_rows, device=logits.device)
        picked = _sample_rows(logits.index_select(0, index), [rows[i] for i in random_rows])
        chosen = chosen.index_copy(0, index, picked)
    logprobs = None
    if any(row.logprobs for row in rows):
        logprobs = torch.log_softmax(logits, dim=-1).gather(1, chosen[:, None]).squeeze(1).tolist()
    return Sampled(tokens=chosen.tolist(), logprobs=logprobs)


def _sample_rows(logits: torch.Tensor, rows: list[RowSampling]) -> torch.Tensor:
    """Sample each row with its temperature, top-k and top-p by inverse transform."""
    device = logits.device
    temps = torch.tensor([row.temperature for row in rows], device=device)
    sorted_logits, order = torch.sort(logits / temps[:, None], dim=-1, descending=True)
    vocab = logits.shape[-1]
    top_k = torch.tensor([row.top_k if row.top_k > 0 else vocab for row in rows], device=device)
    ranks = torch.arange(vocab, device=device)[None, :]
    sorted_logits = sorted_logits.masked_fill(ranks >= top_k[:, None], float("-inf"))
    probs = torch.softmax(sorted_logits, dim=-1)
    cumulative = probs.cumsum(dim=-1)
    top_p = torch.tensor([row.top_p for row in rows], device=device)
    # Keep the smallest prefix whose mass reaches top_p: drop tokens whose preceding mass already does.
    probs = probs.masked_fill((cumulative - probs) >= top_p[:, None], 0.0)
    cumulative = probs.cumsum(dim=-1)
    uniforms = _uniforms(rows).to(device) * cumulative[:, -1]
    picked_rank = torch.searchsorted(cumulative, uniforms[:, None], right=True).clamp_(max=vocab - 1)
    return order.gather(1, picked_rank).squeeze(1)


def _uniforms(rows: list[RowSampling]) -> torch.Tensor:
    """One uniform in [0, 1) per row: seeded rows from their own generator."""
    values = torch.rand(len(rows))
    for i, row in enumerate(rows):
        if row.generator is not None:
            values[i] = torch.rand(1, generator=row.generator)[0]
    return values

"""The running decode batch: a left-padded KV cache in preallocated storage, and the tensor ops on it.

Each row is one sequence. Keys and values of each layer live in a :class:`SlotLayer`:
storage ``[row_capacity, heads, column_capacity, head_dim]`` whose live region is rows
``0..rows`` and columns ``start..end``. Rows are left-padded: row ``i`` holds its
``lengths[i]`` real tokens in the last columns of the live region and the ``mask``
``[rows, end - start]`` marks them. Position ids come from ``lengths``, so a row
computes exactly what it would alone (padding is masked out).

Nothing is concatenated per step: a decode step writes one column in place, a merge
copies only the newcomers' rows, and a finished row is replaced by the last live row
(one row copied, not the whole cache). Storage grows by doubling and is re-laid out
only when a row or column runs out of room.

- :func:`prefill` runs new prompts as their own batch and returns the logits
  of each prompt's last token plus a :class:`KVBatch` (rows repeated for n > 1).
- :func:`prefill_groups` splits prompts of mixed lengths into prefill batches
  that waste little on padding, at the cost of a forward pass per batch, which
  :func:`forward_overhead_tokens` measures.
- :func:`decode` feeds one token per row and grows the live region by one column.
- :func:`merge` appends a prefilled batch's rows to the running one.
- :meth:`KVBatch.drop` removes finished rows and trims columns that became
  padding for every remaining row.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


class SlotLayer(DynamicLayer):  # type: ignore[no-untyped-call]  # transformers' cache classes are untyped
    """One layer's keys and values; ``keys``/``values`` are views of the live region."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, max_rows: int | None = None) -> None:
        """Take over a prefill's ``keys``/``values`` as full storage (no copy); room is made when needed."""
        super().__init__()  # type: ignore[no-untyped-call]
        self.max_rows = max_rows  # row capacity never grows past this (the batch's row limit)
        self.device = keys.device
        self.is_initialized = True
        self.k, self.v = keys, values
        self.rows, self.start, self.end = keys.shape[0], 0, keys.shape[2]
        self._refresh()

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new columns of every row in place; return the live keys and values for attention."""
        new = key_states.shape[2]
        self._reserve(self.rows, self.end - self.start, new)
        self.k[: self.rows, :, self.end : self.end + new] = key_states
        self.v[: self.rows, :, self.end : self.end + new] = value_states
        self.end += new
        return self._refresh()

    def append(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Add rows (``[n, heads, width, head_dim]``, left-padded) right-aligned with the live region."""
        count, width = keys.shape[0], keys.shape[2]
        self._reserve(self.rows + count, max(width, self.end - self.start), 0)
        rows = slice(self.rows, self.rows + count)
        self.k[rows, :, self.end - width : self.end] = keys
        self.v[rows, :, self.end - width : self.end] = values
        self.rows += count
        self.start = min(self.start, self.end - width)
        self._refresh()

    def move_rows(self, dst: torch.Tensor, src: torch.Tensor, rows: int) -> None:
        """Copy rows ``src`` over rows ``dst`` and keep the first ``rows`` rows."""
        if len(dst):
            self.k.index_copy_(0, dst, self.k.index_select(0, src))
            self.v.index_copy_(0, dst, self.v.index_select(0, src))
        self.rows = rows
        self._refresh()

    def trim(self, width: int) -> None:
        """Keep only the last ``width`` live columns."""
        self.start = self.end - width
        self._refresh()

    def _reserve(self, rows: int, width: int, grow: int) -> None:
        """Make room for ``rows`` rows, ``width`` columns left of ``end`` and ``grow`` columns right of it."""
        capacity_rows, capacity = self.k.shape[0], self.k.shape[2]
        if rows <= capacity_rows and width <= self.end and self.end + grow <= capacity:
            return
        live = self.end - self.start
        new_rows = capacity_rows
        if rows > capacity_rows:
            new_rows = max(rows, min(2 * capacity_rows, self.max_rows or 2 * capacity_rows))
        end = max(width, live)
        k = self.k.new_zeros((new_rows, self.k.shape[1], end + max(grow, end, 16), self.k.shape[3]))
        v = self.v.new_zeros((new_rows, self.v.shape[1], k.shape[2], self.v.shape[3]))
        k[: self.rows, :, end - live : end] = self.k[: self.rows, :, self.start : self.end]
        v[: self.rows, :, end - live : end] = self.v[: self.rows, :, self.start : self.end]
        self.k, self.v, self.start, self.end = k, v, end - live, end

    def _refresh(self) -> tuple[torch.Tensor, torch.Tensor]:
        keys = self.keys = self.k[: self.rows, :, self.start : self.end]
        values = self.values = self.v[: self.rows, :, self.start : self.end]
        return keys, values


@dataclass(slots=True)
class KVBatch:
    """Left-padded KV cache of the running rows."""

    cache: Any  # transformers.DynamicCache whose layers are SlotLayers
    mask: torch.Tensor  # [rows, T] long, 1 for real tokens
    lengths: torch.Tensor  # [rows] long, real tokens per row

    @property
    def rows(self) -> int:
        """Number of sequences in the batch."""
        return int(self.mask.shape[0])

    @property
    def width(self) -> int:
        """Cache columns (T), padding included."""
        return int(self.mask.shape[1])

    def drop(self, finished: list[int]) -> list[int]:
        """Remove rows ``finished``; return, for each remaining row in its new place, its old index.

        Each hole is filled by the last live row, so only as many rows are copied as finished.
        """
        order = list(range(self.rows))
        for hole in sorted(finished, reverse=True):
            order[hole] = order[-1]
            order.pop()
        moved = [(new, old) for new, old in enumerate(order) if new != old]
        dst = torch.tensor([new for new, _ in moved], dtype=torch.long, device=self.mask.device)
        src = torch.tensor([old for _, old in moved], dtype=torch.long, device=self.mask.device)
        index = torch.tensor(order, dtype=torch.long, device=self.mask.device)
        self.lengths = self.lengths.index_select(0, index)
        width = int(self.lengths.max()) if order else 0
        self.mask = self.mask.index_select(0, index)[:, self.width - width :]
        for layer in self.cache.layers:
            layer.move_rows(dst, src, len(order))
            layer.trim(width)
        return order


def prefill(
    model: Any,
    prompts: list[list[int]],
    repeats: list[int],
    max_rows: int | None = None,
    *,
    keep_all: bool = False,
) -> tuple[torch.Tensor, KVBatch, torch.Tensor | None]:
    """Run prompts as one left-padded batch; row ``i`` is repeated ``repeats[i]`` times.

    Returns the logits of each row's last position ``[rows, vocab]``, the batch, and with
    ``keep_all`` the logits of every position of every prompt ``[prompts, width, vocab]`` (for
    prompt log probabilities; prompts are left-padded, so prompt ``i`` ends in the last column).
    ``max_rows`` bounds the row capacity the batch's storage grows to (the engine's batch size).
    """
    device = model.device
    width = max(len(p) for p in prompts)
    ids = torch.zeros((len(prompts), width), dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, prompt in enumerate(prompts):
        ids[i, width - len(prompt) :] = torch.tensor(prompt)
        mask[i, width - len(prompt) :] = 1
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp_(min=0)
    cache: Any = DynamicCache(config=model.config)
    keep = 0 if keep_all else 1
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, logits_to_keep=keep)
    logits = out.logits[:, -1, :]
    index = None
    if any(r != 1 for r in repeats):
        index = torch.repeat_interleave(torch.arange(len(prompts)), torch.tensor(repeats)).to(device)
        logits, mask = logits.index_select(0, index), mask.index_select(0, index)
    for i, layer in enumerate(cache.layers):
        keys, values = layer.keys, layer.values
        if index is not None:
            keys, values = keys.index_select(0, index), values.index_select(0, index)
        cache.layers[i] = SlotLayer(keys, values, max_rows)
    return logits, KVBatch(cache, mask, mask.sum(-1)), out.logits if keep_all else None


def prefill_groups(lengths: list[int], overhead_tokens: float) -> list[list[int]]:
    """Indices of prompts, split into prefill batches of similar lengths.

    A batch costs ``rows x longest prompt`` padded tokens plus ``overhead_tokens`` for its forward
    pass; the split with the least total cost is found exactly over the prompts sorted by length.
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    best = [0.0] + [math.inf] * len(order)
    cut = [0] * (len(order) + 1)
    for end in range(1, len(order) + 1):
        longest = lengths[order[end - 1]]
        for begin in range(end):
            cost = best[begin] + (end - begin) * longest + overhead_tokens
            if cost < best[end]:
                best[end], cut[end] = cost, begin
    groups, end = [], len(order)
    while end:
        groups.append(order[cut[end] : end])
        end = cut[end]
    return groups[::-1]


def forward_overhead_tokens(model: Any, rows: int = 8, width: int = 16) -> float:
    """What one more prefill forward pass of Hugging Face's forward costs, in prompt tokens."""

    def seconds(prompts: list[list[int]]) -> float:
        start = time.perf_counter()
        prefill(model, prompts, [1] * len(prompts))
        if model.device.type == "cuda":
            torch.cuda.synchronize(model.device)
        return time.perf_counter() - start

    return forward_overhead_tokens_of(seconds, rows, width)


def forward_overhead_tokens_of(
    seconds: Callable[[list[list[int]]], float], rows: int = 8, width: int = 16
) -> float:
    """What one more prefill forward pass costs, in prompt tokens, measured with ``seconds(prompts)``.

    Compares a one-token pass with a ``rows x width`` batch (best of two each). Small models (or
    GPUs) pay mostly per pass, so prompts stay in one padded batch; larger models on CPUs pay per
    token, so padding is worth splitting off.
    """

    def best(prompts: list[list[int]]) -> float:
        return min(seconds(prompts) for _ in range(2))

    best([[0] * 4])  # warm-up
    one, batch = best([[0]]), best([[0] * width] * rows)
    return one / max((batch - one) / (rows * width - 1), 1e-9)


def decode(model: Any, batch: KVBatch, tokens: list[int]) -> torch.Tensor:
    """Feed one token per row; return next-token logits ``[rows, vocab]``; grow the cache."""
    device = batch.mask.device
    ids = torch.tensor(tokens, dtype=torch.long, device=device)[:, None]
    batch.mask = torch.cat([batch.mask, torch.ones_like(batch.mask[:, :1])], dim=1)
    positions = batch.lengths[:, None]
    out = model(input_ids=ids, attention_mask=batch.mask, position_ids=positions, cache=batch.cache)
    batch.lengths = batch.lengths + 1
    logits: torch.Tensor = out.logits[:, -1, :]
    return logits


def merge(old: KVBatch, new: KVBatch) -> KVBatch:
    """Append ``new``'s rows after ``old``'s, left-padding the narrower one (``old`` is reused)."""
    width = max(old.width, new.width)
    for a, b in zip(old.cache.layers, new.cache.layers, strict=True):
        a.append(b.keys, b.values)
    mask = torch.cat([_pad_left(old.mask, width, 1), _pad_left(new.mask, width, 1)], dim=0)
    return KVBatch(old.cache, mask, torch.cat([old.lengths, new.lengths]))


def _pad_left(t: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    missing = width - t.shape[dim]
    if missing == 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t.new_zeros(shape), t], dim=dim)

"""The running decode batch: a left-padded KV cache and the tensor ops on it.

Each row is one sequence. Keys and values live in a transformers
``DynamicCache`` of shape ``[rows, heads, T, head_dim]`` per layer, left-padded:
row ``i`` holds its ``lengths[i]`` real tokens in the last columns and the
``mask`` ``[rows, T]`` marks them. Position ids come from ``lengths``, so a
row computes exactly what it would alone (padding is masked out).

- :func:`prefill` runs new prompts as their own batch and returns the logits
  of each prompt's last token plus a :class:`KVBatch` (rows repeated for n > 1).
- :func:`decode` feeds one token per row and grows the cache by one column.
- :func:`merge` left-pads two batches to the same width and stacks them.
- :meth:`KVBatch.select` keeps some rows and trims columns that became
  padding for every remaining row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache


@dataclass(slots=True)
class KVBatch:
    """Left-padded KV cache of the running rows."""

    cache: Any  # transformers.DynamicCache
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

    def select(self, keep: list[int]) -> KVBatch:
        """Keep only rows ``keep`` and drop columns that are padding for all of them."""
        index = torch.tensor(keep, device=self.mask.device)
        lengths = self.lengths.index_select(0, index)
        start = self.width - int(lengths.max())
        for layer in self.cache.layers:
            layer.keys = layer.keys.index_select(0, index)[:, :, start:]
            layer.values = layer.values.index_select(0, index)[:, :, start:]
        return KVBatch(self.cache, self.mask.index_select(0, index)[:, start:], lengths)


def prefill(model: Any, prompts: list[list[int]], repeats: list[int]) -> tuple[torch.Tensor, KVBatch]:
    """Run prompts as one left-padded batch; row ``i`` is repeated ``repeats[i]`` times."""
    device = model.device
    width = max(len(p) for p in prompts)
    ids = torch.zeros((len(prompts), width), dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, prompt in enumerate(prompts):
        ids[i, width - len(prompt) :] = torch.tensor(prompt)
        mask[i, width - len(prompt) :] = 1
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp_(min=0)
    cache = DynamicCache(config=model.config)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, logits_to_keep=1)
    logits = out.logits[:, -1, :]
    lengths = mask.sum(-1)
    batch = KVBatch(cache, mask, lengths)
    if any(r != 1 for r in repeats):
        index = torch.repeat_interleave(torch.arange(len(prompts)), torch.tensor(repeats)).tolist()
        logits = logits.index_select(0, torch.tensor(index, device=device))
        batch = batch.select(index)
    return logits, batch


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
    """Stack two batches (old rows first), left-padding the narrower one."""
    width = max(old.width, new.width)
    for a, b in zip(old.cache.layers, new.cache.layers, strict=True):
        a.keys = torch.cat([_pad_left(a.keys, width, 2), _pad_left(b.keys, width, 2)], dim=0)
        a.values = torch.cat([_pad_left(a.values, width, 2), _pad_left(b.values, width, 2)], dim=0)
    mask = torch.cat([_pad_left(old.mask, width, 1), _pad_left(new.mask, width, 1)], dim=0)
    return KVBatch(old.cache, mask, torch.cat([old.lengths, new.lengths]))


def _pad_left(t: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    missing = width - t.shape[dim]
    if missing == 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t.new_zeros(shape), t], dim=dim)

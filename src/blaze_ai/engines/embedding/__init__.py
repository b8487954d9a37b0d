"""Embedding engine: sentence-transformers-style models with mean pooling, batched per input."""

from blaze_ai.engines.embedding.config import BUILTIN_MODELS, EmbeddingConfig
from blaze_ai.engines.embedding.engine import EmbeddingEngine

__all__ = ["BUILTIN_MODELS", "EmbeddingConfig", "EmbeddingEngine"]

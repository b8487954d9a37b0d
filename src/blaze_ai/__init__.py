"""Blaze AI: one server for LLMs, image generation and embeddings."""

__version__ = "0.1.0"

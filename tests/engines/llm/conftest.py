"""Fixtures for the LLM engine tests: the tiny built-in model, loaded once per session.

Built-ins are cached in ``$BLAZE_CACHE_DIR`` (default ``~/.cache/blaze-ai``) and shared between
runs; set BLAZE_CACHE_DIR to a fresh folder to test a cold cache.
"""

from __future__ import annotations

import os

import pytest

from blaze_ai.engines.llm import LLMConfig, LoadedModel, load_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_model() -> LoadedModel:
    """The tiny built-in Llama on CPU in float32; treat it as read-only."""
    return load_model(LLMConfig(source="builtin:tiny-llama", device="cpu"))

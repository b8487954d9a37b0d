"""Fixtures for the diffusion tests: a private cache folder and a small engine factory."""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import numpy as np
import pytest

from blaze_ai.engines.diffusion import DiffusionConfig, DiffusionEngine


@pytest.fixture(scope="session", autouse=True)
def blaze_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Builtins are materialised once per test session into a private folder."""
    path = str(tmp_path_factory.mktemp("blaze-cache"))
    old = os.environ.get("BLAZE_CACHE_DIR")
    os.environ["BLAZE_CACHE_DIR"] = path
    yield path
    if old is None:
        os.environ.pop("BLAZE_CACHE_DIR", None)
    else:
        os.environ["BLAZE_CACHE_DIR"] = old


def tiny_config(**overrides: Any) -> DiffusionConfig:
    """The tiny SD builtin at 32x32 with 3 steps, batching off unless asked."""
    fields: dict[str, Any] = {"width": 32, "height": 32, "steps": 3, "max_batch_size": 1, "max_wait_ms": 0}
    return DiffusionConfig(**(fields | overrides))


@pytest.fixture
async def make_engine() -> AsyncIterator[Callable[..., Any]]:
    """Start engines from config overrides; every one is stopped at the end."""
    engines: list[DiffusionEngine] = []

    async def make(config: DiffusionConfig | None = None, **overrides: Any) -> DiffusionEngine:
        engine = DiffusionEngine(config or tiny_config(**overrides))
        await engine.start()
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        await engine.stop()


def pixels(png: bytes) -> np.ndarray:
    """Decode PNG bytes to an int array (H, W, C)."""
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png))).astype(np.int32)

"""Memory options are applied to the real pipeline objects, and the model cache gets an estimate."""

from __future__ import annotations

import pytest

from blaze_ai.engines.diffusion import DiffusionEngine
from blaze_ai.engines.diffusion.loading import load_pipeline
from blaze_ai.engines.requests import ImageRequest
from blaze_ai.errors import ConfigError
from blaze_ai.model_cache import ModelCache, memory_of

from .conftest import pixels, tiny_config


def test_defaults_leave_the_pipeline_untouched() -> None:
    pipe = load_pipeline(tiny_config())
    assert not pipe.vae.use_slicing and not pipe.vae.use_tiling
    assert not any(type(p).__name__ == "SlicedAttnProcessor" for p in pipe.unet.attn_processors.values())
    assert str(pipe.device) == "cpu"


def test_slicing_and_tiling_are_applied() -> None:
    pipe = load_pipeline(tiny_config(attention_slicing=True, vae_slicing=True, vae_tiling=True))
    processors = pipe.unet.attn_processors.values()
    assert processors and all(type(p).__name__ == "SlicedAttnProcessor" for p in processors)
    assert pipe.vae.use_slicing and pipe.vae.use_tiling


def test_dtype_is_applied() -> None:
    import torch

    pipe = load_pipeline(tiny_config(dtype="bfloat16"))
    assert pipe.unet.dtype == torch.bfloat16 and pipe.text_encoder.dtype == torch.bfloat16


def test_vae_options_need_a_vae() -> None:
    with pytest.raises(ConfigError, match="need a pipeline with a VAE"):
        load_pipeline(tiny_config(source="builtin:tiny-ddpm", vae_slicing=True))


async def test_memory_saving_engine_still_makes_images_and_uses_the_shared_cache() -> None:
    cache = ModelCache(1024**3)
    config = tiny_config(attention_slicing=True, vae_slicing=True, vae_tiling=True, max_batch_size=4)
    engine = DiffusionEngine(config, model_cache=cache)
    await engine.start()
    try:
        result = await engine.execute(ImageRequest(prompt="a cat", n=2, seed=1))
        assert [pixels(png).shape for png in result.images] == [(32, 32, 3), (32, 32, 3)]
        [entry] = cache.entries()
        assert entry["model_bytes"] == memory_of(load_pipeline(config)) > 1_000_000
        assert entry["extra_bytes"] > 0  # the activation estimate
    finally:
        await engine.stop()
    assert cache.entries() == []  # stop() unloads


async def test_a_budget_too_small_for_the_pipeline_fails_at_start() -> None:
    from blaze_ai.errors import UnavailableError

    engine = DiffusionEngine(tiny_config(), model_cache=ModelCache(1024))
    with pytest.raises(UnavailableError, match="cache budget"):
        await engine.start()

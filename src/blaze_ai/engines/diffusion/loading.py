"""Load a diffusers pipeline from a DiffusionConfig and apply its memory options."""

from __future__ import annotations

import os
from typing import Any

from blaze_ai.engines.diffusion.builtins import builtin_path
from blaze_ai.engines.diffusion.config import DiffusionConfig
from blaze_ai.errors import ConfigError

#: pipeline type -> diffusers class name ("auto" reads the model's own model_index.json).
PIPELINE_CLASSES = {
    "auto": "DiffusionPipeline",
    "text2image": "AutoPipelineForText2Image",
    "stable-diffusion": "StableDiffusionPipeline",
    "sdxl": "StableDiffusionXLPipeline",
    "ddpm": "DDPMPipeline",
    "ddim": "DDIMPipeline",
}


def resolve_source(source: str) -> str:
    """A folder or hub id diffusers can load; builtins are built into the cache on first use."""
    if source.startswith("builtin:"):
        return builtin_path(source)
    return source


def load_pipeline(config: DiffusionConfig) -> Any:
    """Load the pipeline offline, in ``config.dtype``, placed and trimmed as configured."""
    import diffusers
    import torch

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download weights
    path = resolve_source(config.source)
    cls = getattr(diffusers, PIPELINE_CLASSES[config.pipeline])
    kwargs: dict[str, Any] = {"dtype": getattr(torch, config.dtype), "local_files_only": True}
    if not config.safety_checker and _has_component(path, "safety_checker"):
        kwargs |= {"safety_checker": None, "requires_safety_checker": False}
    try:
        pipe = cls.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot load diffusion model {config.source!r} offline: {exc}. Give a local diffusers folder, "
            "a hub id already in the Hugging Face cache, or builtin:tiny-sd"
        ) from exc
    apply_memory_options(pipe, config)
    return pipe


def _has_component(path: str, name: str) -> bool:
    """Whether the model's model_index.json lists component ``name``."""
    from diffusers import DiffusionPipeline

    try:
        index = DiffusionPipeline.load_config(path, local_files_only=True)
    except (OSError, ValueError):
        return False  # from_pretrained will report the real problem
    return name in index


def apply_memory_options(pipe: Any, config: DiffusionConfig) -> None:
    """Slicing, tiling and placement (offload or plain ``.to(device)``), as configured.

    Slicing and tiling save memory and cost some time; offload saves the most
    GPU memory and costs the most time.
    """
    if config.attention_slicing:
        pipe.enable_attention_slicing()
    vae: Any = getattr(pipe, "vae", None)
    if (config.vae_slicing or config.vae_tiling) and vae is None:
        raise ConfigError(f"vae_slicing / vae_tiling need a pipeline with a VAE; {config.source} has none")
    if config.vae_slicing:
        vae.enable_slicing()
    if config.vae_tiling:
        vae.enable_tiling()
    device = config.resolved_device()
    if config.cpu_offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif config.cpu_offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        pipe.to(device)


def activation_bytes(config: DiffusionConfig, width: int, height: int) -> int:
    """A rough working-set estimate for one full batch at ``width`` x ``height``.

    The VAE decoder dominates: about 256 channel-values per output pixel per
    image; classifier-free guidance doubles the UNet batch, which stays far
    smaller at latent resolution.
    """
    itemsize = 4 if config.dtype == "float32" else 2
    per_image = width * height * 256 * itemsize
    batch = 1 if config.vae_slicing else config.max_batch_size
    return batch * per_image

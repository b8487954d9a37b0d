"""DiffusionConfig: which pipeline to load, how to run it, and what requests may ask."""

from __future__ import annotations

import os
from dataclasses import dataclass

from blaze_ai.engines.diffusion.schedulers import SCHEDULERS

PIPELINE_TYPES = ("auto", "text2image", "stable-diffusion", "sdxl", "ddpm", "ddim")
DTYPES = ("float32", "bfloat16", "float16")
CPU_OFFLOAD = ("none", "model", "sequential")
BUILTIN_SOURCES = ("builtin:tiny-sd", "builtin:tiny-ddpm")


def cuda_available() -> bool:
    """Whether torch sees a CUDA GPU."""
    import torch

    return bool(torch.cuda.is_available())


@dataclass(frozen=True, slots=True)
class DiffusionConfig:
    """One image model and how to serve it.

    ``source`` is a local diffusers folder, a hub id (needs the model in the
    local Hugging Face cache; Blaze never downloads), ``builtin:tiny-sd`` or
    ``builtin:tiny-ddpm``. ``None`` width/height take the model's native size.
    """

    source: str = "builtin:tiny-sd"
    pipeline: str = "auto"
    scheduler: str | None = None  # None keeps the scheduler the model ships with
    dtype: str = "float32"
    device: str = "auto"  # "auto" picks cuda when present, else cpu
    attention_slicing: bool = False
    vae_slicing: bool = False
    vae_tiling: bool = False
    cpu_offload: str = "none"
    safety_checker: bool = False
    width: int | None = None
    height: int | None = None
    steps: int = 20
    guidance: float = 7.5
    max_width: int = 1024
    max_height: int = 1024
    max_steps: int = 100
    max_images_per_request: int = 4
    max_batch_size: int = 8
    max_wait_ms: float = 20.0
    max_queue: int = 64

    def __post_init__(self) -> None:
        self._check_choices()
        self._check_numbers()
        self._check_device()

    def _check_choices(self) -> None:
        if not self.source:
            raise ValueError("source is empty: give a diffusers folder, a hub id or builtin:tiny-sd")
        if self.source.startswith("builtin:") and self.source not in BUILTIN_SOURCES:
            raise ValueError(f"unknown builtin {self.source!r}; use one of {', '.join(BUILTIN_SOURCES)}")
        if self.pipeline not in PIPELINE_TYPES:
            raise ValueError(f"pipeline must be one of {', '.join(PIPELINE_TYPES)}, not {self.pipeline!r}")
        if self.scheduler is not None and self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {', '.join(SCHEDULERS)}, or null for the model's own")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not {self.dtype!r}")
        if self.cpu_offload not in CPU_OFFLOAD:
            raise ValueError(f"cpu_offload must be one of {', '.join(CPU_OFFLOAD)}, not {self.cpu_offload!r}")

    def _check_numbers(self) -> None:
        for name in ("width", "height", "max_width", "max_height"):
            value = getattr(self, name)
            if value is not None and (value < 8 or value % 8):
                raise ValueError(f"{name} must be a positive multiple of 8, not {value}")
        if self.width is not None and self.width > self.max_width:
            raise ValueError(f"width {self.width} is over max_width {self.max_width}; raise max_width")
        if self.height is not None and self.height > self.max_height:
            raise ValueError(f"height {self.height} is over max_height {self.max_height}; raise max_height")
        if not 1 <= self.steps <= self.max_steps:
            raise ValueError(f"steps must be between 1 and max_steps ({self.max_steps}), not {self.steps}")
        if self.guidance < 0:
            raise ValueError("guidance must be 0 or more (1 or less turns classifier-free guidance off)")
        for name in ("max_images_per_request", "max_batch_size", "max_queue"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_wait_ms < 0:
            raise ValueError("max_wait_ms must be 0 or more")

    def _check_device(self) -> None:
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, not {self.device!r}")
        if self.cpu_offload != "none" and self.device == "cpu":
            raise ValueError(
                "cpu_offload moves weights between CPU and GPU; it needs device 'auto' or 'cuda'"
            )
        if self.cpu_offload != "none" and not cuda_available():
            raise ValueError(
                f"cpu_offload={self.cpu_offload!r} needs a CUDA GPU (none visible); set cpu_offload='none'"
            )
        if self.device.startswith("cuda") and not cuda_available():
            raise ValueError(f"device={self.device!r} but no CUDA GPU is visible; use device='auto' or 'cpu'")
        if self.dtype == "float16" and self.resolved_device() == "cpu":
            raise ValueError("float16 is not supported on CPU here; use dtype='bfloat16' (or float32)")

    def resolved_device(self) -> str:
        """The torch device to run on ("cpu", "cuda" or "cuda:N")."""
        if self.device == "auto":
            return "cuda" if cuda_available() else "cpu"
        return self.device


def cache_dir() -> str:
    """Where built-in models are materialised: ``$BLAZE_CACHE_DIR`` or ``~/.cache/blaze-ai``."""
    return os.environ.get("BLAZE_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "blaze-ai")

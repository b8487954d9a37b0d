"""DiffusionConfig validation: every bad value is refused with a message saying how to fix it."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from blaze_ai.engines.diffusion import SCHEDULERS, DiffusionConfig

NO_CUDA = not torch.cuda.is_available()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"source": ""}, "source is empty"),
        ({"source": "builtin:huge"}, "unknown builtin"),
        ({"pipeline": "video"}, "pipeline must be one of"),
        ({"scheduler": "heun"}, "scheduler must be one of"),
        ({"dtype": "int8"}, "dtype must be one of"),
        ({"cpu_offload": "disk"}, "cpu_offload must be one of"),
        ({"width": 30}, "multiple of 8"),
        ({"width": 2048}, "over max_width"),
        ({"height": 2048}, "over max_height"),
        ({"steps": 0}, "steps must be between"),
        ({"steps": 101}, "steps must be between"),
        ({"guidance": -1.0}, "guidance must be 0 or more"),
        ({"max_images_per_request": 0}, "max_images_per_request must be at least 1"),
        ({"max_batch_size": 0}, "max_batch_size must be at least 1"),
        ({"max_queue": 0}, "max_queue must be at least 1"),
        ({"max_wait_ms": -1}, "max_wait_ms must be 0 or more"),
        ({"device": "tpu"}, "device must be"),
    ],
)
def test_bad_values_are_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DiffusionConfig(**overrides)


@pytest.mark.skipif(not NO_CUDA, reason="this machine has a GPU")
@pytest.mark.parametrize("mode", ["model", "sequential"])
def test_cpu_offload_is_refused_without_a_gpu(mode: str) -> None:
    with pytest.raises(ValueError, match=f"cpu_offload='{mode}' needs a CUDA GPU"):
        DiffusionConfig(cpu_offload=mode)


def test_cpu_offload_with_cpu_device_is_refused() -> None:
    with pytest.raises(ValueError, match="needs device 'auto' or 'cuda'"):
        DiffusionConfig(cpu_offload="model", device="cpu")


@pytest.mark.skipif(not NO_CUDA, reason="this machine has a GPU")
def test_gpu_only_settings_are_refused_on_cpu() -> None:
    with pytest.raises(ValueError, match="no CUDA GPU is visible"):
        DiffusionConfig(device="cuda")
    with pytest.raises(ValueError, match="float16 is not supported on CPU"):
        DiffusionConfig(dtype="float16")


def test_defaults_are_valid_and_frozen() -> None:
    config = DiffusionConfig()
    assert config.source == "builtin:tiny-sd"
    assert config.safety_checker is False
    assert config.resolved_device() in ("cpu", "cuda")
    with pytest.raises(AttributeError):
        config.steps = 5  # type: ignore[misc]


def test_every_listed_scheduler_is_accepted() -> None:
    assert set(SCHEDULERS) == {"ddim", "ddpm", "pndm", "euler", "euler-ancestral", "dpm-solver++", "lms"}
    for name in SCHEDULERS:
        assert DiffusionConfig(scheduler=name).scheduler == name

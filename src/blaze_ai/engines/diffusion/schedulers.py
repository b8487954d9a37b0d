"""Scheduler names users may ask for, and how to swap one into a pipeline."""

from __future__ import annotations

from typing import Any

from blaze_ai.errors import BadRequestError

#: name -> (diffusers scheduler class name, extra config overrides).
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "ddim": ("DDIMScheduler", {}),
    "ddpm": ("DDPMScheduler", {}),
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler-ancestral": ("EulerAncestralDiscreteScheduler", {}),
    "dpm-solver++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "lms": ("LMSDiscreteScheduler", {}),
}


def check_scheduler_name(name: str) -> None:
    """Raise BadRequestError unless ``name`` is a known scheduler."""
    if name not in SCHEDULERS:
        known = ", ".join(SCHEDULERS)
        raise BadRequestError(f"unknown scheduler {name!r}; use one of: {known}", param="scheduler")


def make_scheduler(name: str, base_config: Any) -> Any:
    """A fresh scheduler of kind ``name`` built from a pipeline's scheduler config.

    Schedulers keep per-run state (timesteps, step index), so every batch gets
    a fresh one; building from a config is cheap.
    """
    import diffusers

    check_scheduler_name(name)
    class_name, overrides = SCHEDULERS[name]
    cls = getattr(diffusers, class_name)
    return cls.from_config(base_config, **overrides)

"""Every listed scheduler runs, per request and per model."""

from __future__ import annotations

from typing import Any

import pytest

from blaze_ai.engines.diffusion import SCHEDULERS
from blaze_ai.engines.diffusion.schedulers import make_scheduler
from blaze_ai.engines.requests import ImageRequest

from .conftest import pixels

# diffusers' Euler-family schedulers call np.array(tensor, copy=False) (numpy 2 deprecation).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept:DeprecationWarning")

CLASSES = {
    "ddim": "DDIMScheduler",
    "ddpm": "DDPMScheduler",
    "pndm": "PNDMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler-ancestral": "EulerAncestralDiscreteScheduler",
    "dpm-solver++": "DPMSolverMultistepScheduler",
    "lms": "LMSDiscreteScheduler",
}


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_scheduler_swap_builds_the_named_class(name: str) -> None:
    from diffusers import DDIMScheduler

    scheduler = make_scheduler(name, DDIMScheduler(beta_schedule="scaled_linear").config)
    assert type(scheduler).__name__ == CLASSES[name]
    assert scheduler.config.beta_schedule == "scaled_linear"  # the model's noise schedule is kept
    if name == "dpm-solver++":
        assert scheduler.config.algorithm_type == "dpmsolver++"


async def test_every_scheduler_runs_per_request(make_engine: Any) -> None:
    engine = await make_engine()
    images = {}
    for name in sorted(SCHEDULERS):
        result = await engine.execute(ImageRequest(prompt="a red cat", scheduler=name, seed=3))
        assert pixels(result.images[0]).shape == (32, 32, 3)
        images[name] = result.images[0]
    assert len(set(images.values())) >= 5  # samplers really differ, not one scheduler run seven times
    assert engine.stats()["steps"] >= 3 * len(SCHEDULERS)  # PNDM adds one warm-up step


async def test_model_level_scheduler_is_used_and_a_request_can_override_it(make_engine: Any) -> None:
    euler = await make_engine(scheduler="euler")
    ddim = await make_engine(scheduler="ddim")
    by_model = (await euler.execute(ImageRequest(prompt="a cat", seed=5))).images
    by_request = (await ddim.execute(ImageRequest(prompt="a cat", seed=5, scheduler="euler"))).images
    plain_ddim = (await ddim.execute(ImageRequest(prompt="a cat", seed=5))).images
    assert by_model == by_request
    assert by_model != plain_ddim

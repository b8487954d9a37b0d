"""The synchronous core: run one batch of images through a diffusers pipeline.

Each image is one :class:`ImageJob` with its own prompt, negative prompt and
seed (its own ``torch.Generator``), so an image comes out the same whether it
runs alone or batched with others. A batch shares one shape: size, steps,
scheduler and guidance (see :attr:`ImageJob.key`).
"""

from __future__ import annotations

import inspect
import io
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from blaze_ai.engines.diffusion.schedulers import make_scheduler
from blaze_ai.errors import CancelledError

StepHook = Callable[[int, int], None]  # (steps done, steps in all)


@dataclass(slots=True)
class CancelFlag:
    """Shared by the images of one request; set when its caller goes away."""

    is_set: bool = False


@dataclass(slots=True, eq=False)
class ImageJob:
    """One image to make: what the batcher queues and ``run_batch`` takes."""

    prompt: str
    negative_prompt: str
    seed: int
    width: int
    height: int
    steps: int
    scheduler: str | None
    guidance: float
    cancel: CancelFlag = field(default_factory=CancelFlag)
    on_step: StepHook | None = None

    @property
    def key(self) -> tuple[int, int, int, str | None, float]:
        """Images with equal keys can share one forward pass."""
        return (self.width, self.height, self.steps, self.scheduler, self.guidance)


@dataclass(slots=True)
class GenerationStats:
    """Counters the worker thread updates (one batch at a time)."""

    batches: int = 0
    images: int = 0
    steps: int = 0
    interrupted_batches: int = 0
    skipped_images: int = 0


class PipelineRunner:
    """Runs batches of :class:`ImageJob` on one loaded pipeline (one batch at a time)."""

    def __init__(self, pipe: Any, stats: GenerationStats | None = None) -> None:
        self.pipe = pipe
        self.stats = stats if stats is not None else GenerationStats()
        self._base_scheduler = pipe.scheduler
        params = inspect.signature(pipe.__call__).parameters
        self.text_conditioned = "prompt" in params
        self._has_step_callback = "callback_on_step_end" in params
        self._lock = threading.Lock()
        self._jobs: list[ImageJob] = []
        pipe.set_progress_bar_config(disable=True)
        if not self._has_step_callback:
            # Pipelines without a step callback (DDPM, DDIM) still loop over
            # ``self.progress_bar(timesteps)``: wrap it to report and to abort.
            pipe.progress_bar = self._tracked_steps

    @property
    def components(self) -> dict[str, Any]:
        """The pipeline's parts, so ``memory_of(runner)`` counts the pipeline's weights."""
        return dict(self.pipe.components)

    def native_size(self) -> tuple[int, int]:
        """(width, height) the model was trained at (UNet or transformer denoisers)."""
        denoiser: Any = getattr(self.pipe, "unet", None) or getattr(self.pipe, "transformer", None)
        size = getattr(self.pipe, "default_sample_size", None) or denoiser.config.sample_size
        h, w = (size, size) if isinstance(size, int) else (size[0], size[1])
        scale = int(getattr(self.pipe, "vae_scale_factor", 1)) if self.text_conditioned else 1
        return w * scale, h * scale

    def run(self, jobs: list[ImageJob], stats: GenerationStats | None = None) -> list[bytes]:
        """Make one PNG per job, in order; jobs cancelled before the batch started get ``b""``.

        ``stats`` (the calling engine's counters) matters when engines share a cached pipeline.
        """
        with self._lock:
            if stats is not None:
                self.stats = stats
            live = [job for job in jobs if not job.cancel.is_set]
            self.stats.skipped_images += len(jobs) - len(live)
            made = dict(zip(map(id, live), self._generate(live), strict=True)) if live else {}
            return [made.get(id(job), b"") for job in jobs]

    def _generate(self, jobs: list[ImageJob]) -> list[bytes]:
        import torch

        first = jobs[0]
        self.pipe.scheduler = (
            make_scheduler(first.scheduler, self._base_scheduler.config)
            if first.scheduler is not None
            else self._base_scheduler.__class__.from_config(self._base_scheduler.config)
        )
        generators = [torch.Generator(device="cpu").manual_seed(job.seed) for job in jobs]
        kwargs: dict[str, Any] = {"num_inference_steps": first.steps, "generator": generators}
        kwargs["output_type"] = "np"
        if self.text_conditioned:
            kwargs |= {
                "prompt": [job.prompt for job in jobs],
                "negative_prompt": [job.negative_prompt for job in jobs],
                "width": first.width,
                "height": first.height,
                "guidance_scale": first.guidance,
                "callback_on_step_end": self._on_step_end,
            }
        else:
            kwargs["batch_size"] = len(jobs)
        self._jobs = jobs
        self.pipe._interrupt = False
        try:
            with torch.inference_mode():
                images = self.pipe(**kwargs).images
        finally:
            self._jobs = []
        self.stats.batches += 1
        self.stats.images += len(jobs)
        if all(job.cancel.is_set for job in jobs):
            self.stats.interrupted_batches += 1
            raise CancelledError("every request of the batch was cancelled")
        return [encode_png(image) for image in images]

    def _step_done(self, step: int) -> bool:
        """Record step ``step`` (0-based); return whether the whole batch should stop."""
        self.stats.steps += 1
        total = self._jobs[0].steps if self._jobs else 0
        # The images of one request share one hook: call each hook once per step.
        hooks = {id(job.on_step): job.on_step for job in self._jobs if job.on_step and not job.cancel.is_set}
        for hook in hooks.values():
            hook(min(step + 1, total), total)  # PNDM runs one step more than asked
        return all(job.cancel.is_set for job in self._jobs)

    def _on_step_end(self, pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        if self._step_done(step):
            pipe._interrupt = True  # the pipeline skips the remaining steps
        return tensors

    def _tracked_steps(
        self, iterable: Iterable[Any] | None = None, total: int | None = None
    ) -> Iterator[Any]:
        """Stands in for ``pipe.progress_bar(timesteps)``: report each step, stop when all cancelled."""
        for step, item in enumerate(() if iterable is None else iterable):
            yield item
            if self._step_done(step):
                return


def encode_png(image: Any) -> bytes:
    """A float HxWxC array in [0, 1] as PNG bytes."""
    import numpy as np
    from PIL import Image

    pixels = (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()

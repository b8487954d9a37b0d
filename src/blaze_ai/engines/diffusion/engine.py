"""DiffusionEngine: image requests in, PNGs out, batched across concurrent requests.

The async shell only validates, queues and awaits; the work happens in
:class:`~blaze_ai.engines.diffusion.generation.PipelineRunner` inside the
:class:`~blaze_ai.batching.DynamicBatcher`'s worker thread. Every image of a
request is one batcher item, so ``max_batch_size`` counts images and images of
different requests with the same size, steps, scheduler and guidance share a
forward pass.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import Any

from blaze_ai.batching import DynamicBatcher
from blaze_ai.compute import run_in_thread
from blaze_ai.engines.base import HealthReport
from blaze_ai.engines.diffusion.config import DiffusionConfig
from blaze_ai.engines.diffusion.generation import (
    CancelFlag,
    GenerationStats,
    ImageJob,
    PipelineRunner,
    StepHook,
)
from blaze_ai.engines.diffusion.loading import activation_bytes, load_pipeline
from blaze_ai.engines.diffusion.schedulers import check_scheduler_name
from blaze_ai.engines.requests import ImageRequest, ImageResult
from blaze_ai.errors import BadRequestError, OverloadedError, TimedOutError, UnavailableError
from blaze_ai.model_cache import ModelCache

_SEED_LIMIT = 2**62
#: The config fields that change the loaded pipeline (and so its model-cache key).
_LOAD_FIELDS = (
    "source",
    "pipeline",
    "dtype",
    "device",
    "attention_slicing",
    "vae_slicing",
    "vae_tiling",
    "cpu_offload",
    "safety_checker",
)
_UNBOUNDED = 2**62  # budget of the private cache made when none is shared


@dataclass(frozen=True, slots=True)
class _ModelInfo:
    """What validation needs to know about the loaded model (no reference to it)."""

    native_width: int
    native_height: int
    text_conditioned: bool
    load_s: float


@dataclass(slots=True)
class _Counters:
    requests: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    timed_out: int = 0
    rejected: int = 0


class DiffusionEngine:
    """Serves :class:`ImageRequest` with a diffusers pipeline (kind ``"diffusion"``).

    Example::

        engine = DiffusionEngine(DiffusionConfig(source="builtin:tiny-sd", steps=4))
        await engine.start()
        result = await engine.execute(ImageRequest(prompt="a red fox", width=64, height=64, seed=1))
        open("fox.png", "wb").write(result.images[0])
        await engine.stop()

    Errors: :class:`BadRequestError` for sizes, steps, ``n`` or schedulers out
    of bounds; :class:`OverloadedError` when the queue is full;
    :class:`TimedOutError` when the deadline passes in the queue;
    :class:`EngineFailureError` when the pipeline raises.
    """

    kind = "diffusion"

    def __init__(
        self,
        config: DiffusionConfig,
        *,
        model_cache: ModelCache | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self._cache = model_cache if model_cache is not None else ModelCache(_UNBOUNDED)
        self._cache_key = "diffusion:" + ",".join(f"{name}={getattr(config, name)}" for name in _LOAD_FIELDS)
        self._rng = rng or random.Random()
        self._batcher: DynamicBatcher[ImageJob, bytes] | None = None
        self._info: _ModelInfo | None = None
        self._gen_stats = GenerationStats()
        self._counters = _Counters()
        self._in_flight = 0

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Load the pipeline (building a builtin on first use) and start the batcher."""
        if self._batcher is not None:
            return
        self._info = await run_in_thread(self._warm)
        cfg = self.config
        self._batcher = DynamicBatcher(
            self._run_batch,
            max_batch_size=cfg.max_batch_size,
            max_wait_s=cfg.max_wait_ms / 1000.0,
            max_queue=cfg.max_queue,
            key=lambda job: job.key,
        )
        await self._batcher.start()

    async def stop(self) -> None:
        """Fail queued requests, wait for the running batch, and unload the pipeline."""
        batcher, self._batcher = self._batcher, None
        if batcher is not None:
            await batcher.stop()
        if self._cache_key in self._cache:
            await asyncio.to_thread(self._cache.unload, self._cache_key)

    async def health_check(self) -> HealthReport:
        """Healthy while started; the detail names the model."""
        if self._batcher is None or not self._batcher.running:
            return HealthReport(healthy=False, detail="not started")
        return HealthReport(healthy=True, detail=f"{self.config.source} ready")

    # -- requests ----------------------------------------------------------

    async def execute(self, request: ImageRequest, *, on_step: StepHook | None = None) -> ImageResult:
        """Make ``request.n`` images; ``on_step(done, total)`` is called from the worker thread."""
        batcher = self._started()
        jobs = self.jobs_for(request, on_step)
        self._counters.requests += 1
        self._in_flight += 1
        tasks = [asyncio.ensure_future(batcher.submit(job, deadline=request.deadline)) for job in jobs]
        try:
            pngs = await asyncio.gather(*tasks)
        except BaseException as exc:
            jobs[0].cancel.is_set = True  # stops the batch at its next step if no mate still wants it
            for task in tasks:
                task.cancel()
            self._count_failure(exc)
            raise
        finally:
            self._in_flight -= 1
        self._counters.succeeded += 1
        first = jobs[0]
        return ImageResult(request.request_id, list(pngs), [j.seed for j in jobs], first.width, first.height)

    async def stream(self, request: ImageRequest) -> AsyncIterator[ImageResult]:
        """Images are not made piece by piece: yields the one finished result."""
        yield await self.execute(request)

    def jobs_for(self, request: ImageRequest, on_step: StepHook | None = None) -> list[ImageJob]:
        """Validate ``request`` against the limits and expand it into one job per image."""
        cfg, info = self.config, self._model_info()
        if info.text_conditioned and not request.prompt.strip():
            raise BadRequestError("prompt must not be empty", param="prompt")
        if not 1 <= request.n <= cfg.max_images_per_request:
            raise BadRequestError(f"n must be between 1 and {cfg.max_images_per_request}", param="n")
        width = _pick(request.width, cfg.width, info.native_width)
        height = _pick(request.height, cfg.height, info.native_height)
        self._check_size(width, height, info)
        steps = _pick(request.steps, cfg.steps)
        if not 1 <= steps <= cfg.max_steps:
            raise BadRequestError(f"steps must be between 1 and {cfg.max_steps}", param="steps")
        guidance = _pick(request.guidance, cfg.guidance) if info.text_conditioned else 0.0
        if guidance < 0:
            raise BadRequestError("guidance must be 0 or more", param="guidance")
        scheduler = request.scheduler if request.scheduler is not None else cfg.scheduler
        if scheduler is not None:
            check_scheduler_name(scheduler)
        seed = request.seed if request.seed is not None else self._rng.randrange(2**31)
        if not 0 <= seed < _SEED_LIMIT:
            raise BadRequestError(f"seed must be between 0 and {_SEED_LIMIT - 1}", param="seed")
        flag = CancelFlag()
        negative = request.negative_prompt or ""
        prompt = request.prompt if info.text_conditioned else ""
        shape = (width, height, steps, scheduler, float(guidance))
        return [ImageJob(prompt, negative, seed + i, *shape, flag, on_step) for i in range(request.n)]

    def stats(self) -> dict[str, Any]:
        """Plain counters: requests, images, steps, batches and the batcher's queue."""
        info = self._info
        return {
            "kind": self.kind,
            "source": self.config.source,
            "loaded": self._cache_key in self._cache,
            "load_s": info.load_s if info else None,
            "in_flight": self._in_flight,
            **asdict(self._counters),
            **asdict(self._gen_stats),
            "batcher": self._batcher.stats() if self._batcher is not None else {},
        }

    # -- internals ---------------------------------------------------------

    def _started(self) -> DynamicBatcher[ImageJob, bytes]:
        if self._batcher is None:
            raise UnavailableError("the diffusion engine is not started")
        return self._batcher

    def _model_info(self) -> _ModelInfo:
        if self._info is None:
            raise UnavailableError("the diffusion engine is not started")
        return self._info

    def _check_size(self, width: int, height: int, info: _ModelInfo) -> None:
        cfg = self.config
        for name, value, limit in (("width", width, cfg.max_width), ("height", height, cfg.max_height)):
            if value < 8 or value % 8 or value > limit:
                raise BadRequestError(f"{name} must be a multiple of 8 between 8 and {limit}", param="size")
        native = (info.native_width, info.native_height)
        if not info.text_conditioned and (width, height) != native:
            raise BadRequestError(f"this model only makes {native[0]}x{native[1]} images", param="size")

    def _load(self) -> PipelineRunner:
        return PipelineRunner(load_pipeline(self.config), self._gen_stats)

    def _extra_bytes(self) -> int:
        cfg = self.config
        return activation_bytes(cfg, cfg.width or cfg.max_width, cfg.height or cfg.max_height)

    def _warm(self) -> _ModelInfo:
        started = time.monotonic()
        with self._cache.use(self._cache_key, self._load, extra_bytes=self._extra_bytes()) as runner:
            width, height = runner.native_size()
            return _ModelInfo(width, height, runner.text_conditioned, time.monotonic() - started)

    def _run_batch(self, jobs: list[ImageJob]) -> list[bytes]:
        """The batcher's worker-thread call: pin the pipeline (reloading it if evicted) and run."""
        with self._cache.use(self._cache_key, self._load, extra_bytes=self._extra_bytes()) as runner:
            return runner.run(jobs, self._gen_stats)

    def _count_failure(self, exc: BaseException) -> None:
        if isinstance(exc, asyncio.CancelledError):
            self._counters.cancelled += 1
        elif isinstance(exc, TimedOutError):
            self._counters.timed_out += 1
        elif isinstance(exc, BadRequestError | UnavailableError | OverloadedError):
            self._counters.rejected += 1
        else:
            self._counters.failed += 1


def _pick(*values: Any) -> Any:
    """The first value that is not None."""
    return next(v for v in values if v is not None)

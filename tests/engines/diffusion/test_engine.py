"""DiffusionEngine on the tiny SD builtin: seeds, batching, validation, progress and abort."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest

from blaze_ai.engines import base
from blaze_ai.engines.requests import ImageRequest
from blaze_ai.errors import BadRequestError, TimedOutError, UnavailableError

from .conftest import pixels

PROMPTS = [("a red cat", None), ("a blue dog", "blurry"), ("a castle on a hill", None), ("the moon", "sun")]


async def test_engine_meets_the_protocol_and_makes_pngs_of_the_asked_size(make_engine: Any) -> None:
    engine = await make_engine()
    assert isinstance(engine, base.Engine) and engine.kind == "diffusion"
    assert (await engine.health_check()).healthy
    result = await engine.execute(ImageRequest(prompt="a red cat", width=48, height=32, n=2, seed=7))
    assert result.seeds == [7, 8] and (result.width, result.height) == (48, 32)
    assert [pixels(png).shape for png in result.images] == [(32, 48, 3), (32, 48, 3)]
    assert not np.array_equal(pixels(result.images[0]), pixels(result.images[1]))


async def test_same_seed_gives_the_same_image(make_engine: Any) -> None:
    engine = await make_engine()
    first = await engine.execute(ImageRequest(prompt="a red cat", seed=42))
    again = await engine.execute(ImageRequest(prompt="a red cat", seed=42))
    other_seed = await engine.execute(ImageRequest(prompt="a red cat", seed=43))
    other_prompt = await engine.execute(ImageRequest(prompt="a green forest", seed=42))
    assert first.images == again.images
    assert first.images != other_seed.images
    assert first.images != other_prompt.images


async def test_batched_requests_give_the_same_images_as_alone(make_engine: Any) -> None:
    requests = [ImageRequest(prompt=p, negative_prompt=n, seed=10 + i) for i, (p, n) in enumerate(PROMPTS)]
    alone_engine = await make_engine()
    alone = [(await alone_engine.execute(r)).images[0] for r in requests]
    batched_engine = await make_engine(max_batch_size=4, max_wait_ms=2000)
    batched = [r.images[0] for r in await asyncio.gather(*(batched_engine.execute(r) for r in requests))]

    assert batched_engine.stats()["batcher"]["batch_size_histogram"] == {4: 1}
    for one, many in zip(alone, batched, strict=True):
        # A batch may round a float differently from a batch of one: allow 1/255, never more.
        assert np.abs(pixels(one) - pixels(many)).max() <= 1
    # ...while different requests differ by far more, so the bound above is meaningful.
    assert np.abs(pixels(alone[0]) - pixels(alone[1])).mean() > 5


async def test_step_progress_is_reported(make_engine: Any) -> None:
    engine = await make_engine()
    seen: list[tuple[int, int]] = []
    await engine.execute(ImageRequest(prompt="a cat", steps=4), on_step=lambda d, t: seen.append((d, t)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert engine.stats()["steps"] == 4


async def test_cancelling_a_request_stops_its_batch_at_the_next_step(make_engine: Any) -> None:
    engine = await make_engine(max_steps=200)
    loop = asyncio.get_running_loop()
    task: asyncio.Task[Any] | None = None

    def cancel_after_first_step(done: int, total: int) -> None:
        if done == 1 and task is not None:
            loop.call_soon_threadsafe(task.cancel)

    task = asyncio.create_task(
        engine.execute(ImageRequest(prompt="a cat", steps=200), on_step=cancel_after_first_step)
    )
    with pytest.raises(asyncio.CancelledError):
        await task
    await engine.execute(ImageRequest(prompt="after", steps=1))  # runs once the cancelled batch ended
    stats = engine.stats()
    assert stats["interrupted_batches"] == 1 and stats["cancelled"] == 1
    assert stats["steps"] < 50  # far fewer than the 200 asked


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"width": 30}, "size"),
        ({"height": 33}, "size"),
        ({"width": 0}, "size"),
        ({"width": 2048}, "size"),
        ({"steps": 0}, "steps"),
        ({"steps": 101}, "steps"),
        ({"n": 0}, "n"),
        ({"n": 5}, "n"),
        ({"scheduler": "heun"}, "scheduler"),
        ({"guidance": -2.0}, "guidance"),
        ({"seed": -1}, "seed"),
        ({"prompt": "  "}, "prompt"),
    ],
)
async def test_bad_requests_are_refused(make_engine: Any, fields: dict[str, Any], param: str) -> None:
    engine = await make_engine()
    with pytest.raises(BadRequestError) as info:
        await engine.execute(ImageRequest(**({"prompt": "a cat"} | fields)))
    assert info.value.param == param
    assert engine.stats()["steps"] == 0


async def test_a_deadline_that_passed_in_the_queue_times_out(make_engine: Any) -> None:
    engine = await make_engine()
    with pytest.raises(TimedOutError):
        await engine.execute(ImageRequest(prompt="a cat", deadline=time.monotonic() - 1))
    assert engine.stats()["timed_out"] == 1


async def test_stopped_engine_refuses_and_unloads(make_engine: Any) -> None:
    engine = await make_engine()
    assert engine.stats()["loaded"]
    await engine.stop()
    assert not engine.stats()["loaded"]
    assert not (await engine.health_check()).healthy
    with pytest.raises(UnavailableError):
        await engine.execute(ImageRequest(prompt="a cat"))


async def test_stream_yields_the_finished_result(make_engine: Any) -> None:
    engine = await make_engine()
    results = [r async for r in engine.stream(ImageRequest(prompt="a cat", seed=1))]
    assert len(results) == 1 and results[0].seeds == [1]

"""8 concurrent image requests: batched versus one at a time, on two random-weight SD pipelines.

Run: ``.venv/bin/python benchmarks/diffusion_throughput.py`` (a few minutes on 2 cores).

For each model (the ``builtin:tiny-sd`` pipeline and a mid-size SD pipeline of
about 28 M parameters built from configs) and each dtype (float32, bfloat16),
two engines share one loaded pipeline through a ModelCache: one with
``max_batch_size=1`` (one at a time) and one with ``max_batch_size=8``. Each
gets the same 8 concurrent requests (own prompt and seed). Reported: images/s,
the ratio, the batcher's longest queue wait against its ``max_wait_ms``, and
the largest pixel difference between the two modes' images.
Results go to ``benchmarks/results/diffusion_throughput.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from blaze_ai.engines.diffusion import DiffusionConfig, DiffusionEngine
from blaze_ai.engines.diffusion.builtins import build_midsize_sd
from blaze_ai.engines.requests import ImageRequest
from blaze_ai.model_cache import ModelCache

CONCURRENT = 8
MAX_WAIT_MS = 50.0
WAIT_SLACK_MS = 5.0  # the event loop wakes the collector a little after the due time
PROMPTS = [
    "a red fox",
    "a castle at night",
    "the sea",
    "a robot reading",
    "green hills",
    "a cat",
    "snow",
    "fire",
]


@dataclass
class Row:
    model: str
    dtype: str
    size: int
    steps: int
    one_at_a_time: float  # images/s
    batched: float
    max_wait_ms: float
    max_pixel_diff: int

    @property
    def ratio(self) -> float:
        return self.batched / self.one_at_a_time


async def run_mode(engine: DiffusionEngine, size: int, steps: int) -> tuple[float, list[bytes]]:
    """Images/s for 8 concurrent requests, and the images in request order."""
    requests = [
        ImageRequest(prompt=p, width=size, height=size, steps=steps, seed=100 + i)
        for i, p in enumerate(PROMPTS)
    ]
    started = time.perf_counter()
    results = await asyncio.gather(*(engine.execute(r) for r in requests))
    elapsed = time.perf_counter() - started
    return CONCURRENT / elapsed, [r.images[0] for r in results]


async def measure(model: str, source: str, dtype: str, size: int, steps: int, rounds: int) -> Row:
    cache = ModelCache(16 * 1024**3)  # both engines share the one loaded pipeline
    base: dict[str, Any] = {"source": source, "dtype": dtype, "max_wait_ms": MAX_WAIT_MS, "max_queue": 64}
    single = DiffusionEngine(DiffusionConfig(**base, max_batch_size=1), model_cache=cache)
    batched = DiffusionEngine(DiffusionConfig(**base, max_batch_size=CONCURRENT), model_cache=cache)
    await single.start()
    await batched.start()
    try:
        # Warm the shared pipeline through the one-at-a-time engine only, so the batched engine's
        # queue-wait statistics cover exactly the measured concurrent requests.
        await single.execute(ImageRequest(prompt="warm up", width=size, height=size, steps=1, seed=0))
        one_rate = many_rate = 0.0
        for _ in range(rounds):  # interleaved, best of each: the machine is shared with other work
            rate, one_images = await run_mode(single, size, steps)
            one_rate = max(one_rate, rate)
            rate, many_images = await run_mode(batched, size, steps)
            many_rate = max(many_rate, rate)
        waited = batched.stats()["batcher"]["max_queue_wait_s"] * 1000
    finally:
        await single.stop()
        await batched.stop()
    diff = max(
        int(np.abs(_pixels(a) - _pixels(b)).max()) for a, b in zip(one_images, many_images, strict=True)
    )
    return Row(model, dtype, size, steps, one_rate, many_rate, waited, diff)


def _pixels(png: bytes) -> Any:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png))).astype(np.int32)


def report(rows: list[Row], command: str, wall_s: float, rounds: int) -> str:
    lines = [
        "# Diffusion throughput: 8 concurrent requests, batched vs one at a time",
        "",
        f"- Command: `{command}`",
        f"- Machine: 2-core CPU, no GPU ({platform.machine()}, torch threads: {_threads()}); date 2026-11-27",
        f"- Batcher: max_batch_size 8 vs 1, max_wait_ms {MAX_WAIT_MS:g}; best of {rounds} interleaved rounds",
        f"- Random-weight pipelines; wall time {wall_s:.0f} s; load average at the end {_load()}",
        "",
        "| model | dtype | size | steps | one at a time (img/s) | batched (img/s) | ratio "
        "| max queue wait, batched (ms) | max pixel diff |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.model} | {r.dtype} | {r.size}x{r.size} | {r.steps} | {r.one_at_a_time:.2f} "
            f"| {r.batched:.2f} | {r.ratio:.2f}x | {r.max_wait_ms:.1f} | {r.max_pixel_diff} |"
        )
    lines += ["", "bfloat16 vs float32 (batched):", ""]
    for model in dict.fromkeys(r.model for r in rows):
        by_dtype = {r.dtype: r for r in rows if r.model == model}
        if {"float32", "bfloat16"} <= by_dtype.keys():
            gain = by_dtype["bfloat16"].batched / by_dtype["float32"].batched
            lines.append(f"- {model}: {gain:.2f}x")
    fast = all(r.ratio >= 1.0 for r in rows)
    prompt = all(r.max_wait_ms <= MAX_WAIT_MS + WAIT_SLACK_MS for r in rows)
    lines += [
        "",
        f"- Batching never costs throughput (>= 1.0x): {'met' if fast else 'NOT met'}",
        f"- No queue wait over max wait (+{WAIT_SLACK_MS:g} ms slack): {'met' if prompt else 'NOT met'}",
        "",
    ]
    return "\n".join(lines)


def _load() -> str:
    return f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "?"


def _threads() -> int:
    import torch

    return int(torch.get_num_threads())


async def main_async(args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="blaze-midsize-sd-") as folder:
        build_midsize_sd().save_pretrained(folder)  # built on the fly; removed at the end
        models = [
            ("tiny-sd (builtin)", "builtin:tiny-sd", 64, args.steps),
            ("mid-size SD (28M)", folder, 128, args.mid_steps),
        ]
        for name, source, size, steps in models:
            for dtype in ("float32", "bfloat16"):
                row = await measure(name, source, dtype, size, steps, args.rounds)
                print(f"{name} {dtype}: {row.one_at_a_time:.2f} -> {row.batched:.2f} img/s", flush=True)
                rows.append(row)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="steps for the tiny pipeline")
    parser.add_argument("--mid-steps", type=int, default=5, help="steps for the mid-size pipeline")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per mode (best kept)")
    parser.add_argument(
        "--out", default=os.path.join(os.path.dirname(__file__), "results", "diffusion_throughput.md")
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    rows = asyncio.run(main_async(args))
    text = report(rows, "python " + " ".join(sys.argv), time.perf_counter() - started, args.rounds)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as out:
        out.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

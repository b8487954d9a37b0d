"""``blaze image PROMPT -o out.png``: make one image locally, with a progress bar over the steps."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from blaze_ai.engines.diffusion import SCHEDULERS, DiffusionConfig, DiffusionEngine
from blaze_ai.engines.requests import ImageRequest
from blaze_ai.errors import BlazeError


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("image", help="generate an image from a prompt (no server needed)")
    parser.add_argument("prompt", help="what to draw")
    parser.add_argument("-o", "--output", required=True, help="PNG file to write")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    parser.add_argument("--size", default=None, help="WIDTHxHEIGHT, multiples of 8 (default: the model's)")
    parser.add_argument("--seed", type=int, default=None, help="seed for a repeatable image")
    parser.add_argument("--scheduler", choices=sorted(SCHEDULERS), default=None, help="sampler to use")
    parser.add_argument("--negative-prompt", default=None, help="what to steer away from")
    parser.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale")
    parser.add_argument(
        "--model", default="builtin:tiny-sd", help="diffusers folder, cached hub id or builtin:tiny-sd"
    )
    parser.add_argument("--no-progress", action="store_true", help="do not draw the progress bar")
    parser.set_defaults(func=run)


def parse_size(text: str | None) -> tuple[int | None, int | None]:
    """``"512x768"`` -> (512, 768); None -> (None, None)."""
    if text is None:
        return None, None
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"--size must look like 512x512, not {text!r}")
    return int(parts[0]), int(parts[1])


def run(args: argparse.Namespace) -> int:
    try:
        width, height = parse_size(args.size)
        config = DiffusionConfig(source=args.model, max_batch_size=1, max_wait_ms=0)
    except ValueError as exc:
        print(f"blaze image: {exc}", file=sys.stderr)
        return 2
    request = ImageRequest(
        prompt=args.prompt,
        negative_prompt=args.negative_prompt,
        width=width,
        height=height,
        steps=args.steps,
        guidance=args.guidance,
        scheduler=args.scheduler,
        seed=args.seed,
    )
    try:
        png, seed = asyncio.run(_generate(config, request, progress=not args.no_progress))
    except BlazeError as exc:
        print(f"blaze image: {exc.message}", file=sys.stderr)
        return 1
    with open(args.output, "wb") as out:
        out.write(png)
    print(f"wrote {args.output} (seed {seed})", file=sys.stderr)
    return 0


async def _generate(config: DiffusionConfig, request: ImageRequest, *, progress: bool) -> tuple[bytes, int]:
    from diffusers.utils import logging as diffusers_logging
    from tqdm import tqdm

    diffusers_logging.disable_progress_bar()  # one bar here: the steps, not the loading of parts
    engine = DiffusionEngine(config)
    await engine.start()
    bar = tqdm(total=request.steps or config.steps, unit="step", disable=not progress, file=sys.stderr)

    def on_step(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        result = await engine.execute(request, on_step=on_step)
    finally:
        bar.close()
        await engine.stop()
    return result.images[0], result.seeds[0]

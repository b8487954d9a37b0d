"""``blaze generate PROMPT``: stream a chat answer from an LLM to the terminal."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("generate", help="stream a chat answer to PROMPT")
    parser.add_argument("prompt", metavar="PROMPT", help="the user message")
    parser.add_argument(
        "--model", default="builtin:smollm2-135m", help="built-in, local folder or hub id (%(default)s)"
    )
    parser.add_argument("--max-tokens", type=int, default=128, help="most new tokens (%(default)s)")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 is greedy (%(default)s)")
    parser.add_argument("--seed", type=int, default=None, help="seed for sampling (same seed, same answer)")
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["float32", "bfloat16", "float16", "auto"],
        help="auto: bfloat16 on a GPU, float32 on CPU (%(default)s)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return asyncio.run(_generate(args))


async def _generate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from blaze_ai.engines.llm.config import LLMConfig
    from blaze_ai.engines.llm.engine import LLMEngine
    from blaze_ai.engines.requests import GenerationRequest, SamplingParams
    from blaze_ai.errors import BadRequestError

    try:
        params = SamplingParams(max_tokens=args.max_tokens, temperature=args.temperature, seed=args.seed)
        config = LLMConfig(source=args.model, dtype=args.dtype, max_batch_size=1)
    except ValueError as exc:
        raise BadRequestError(str(exc)) from exc

    def progress(stage: str, fraction: float) -> None:
        bar.set_description(f"{args.model}: {stage}")
        bar.update(max(0, round(fraction * 100) - bar.n))

    bar = tqdm(total=100, desc=f"loading {args.model}", unit="%", file=sys.stderr, leave=False)
    engine = LLMEngine(config, progress=progress)
    try:
        await engine.start()
    finally:
        bar.close()
    try:
        request = GenerationRequest(messages=[{"role": "user", "content": args.prompt}], params=params)
        async for delta in engine.stream(request):
            print(delta.text, end="", flush=True)
        print()
    finally:
        await engine.stop()
    return 0

"""A short tour of Blaze AI for a new user: the built-in models, in process, no server.

    .venv/bin/python demo_simple.py            # SmolLM2-135M (answers questions)
    .venv/bin/python demo_simple.py --quick    # builtin:tiny-llama (fast, talks nonsense)

It loads an LLM, generates text, streams it, makes an image with ``builtin:tiny-sd``, embeds three
sentences with ``builtin:all-minilm-l6-v2``, prints what happened and writes
``blaze_ai_demo_report.json`` (``--report PATH``), validated against
``schemas/demo_report.schema.json``. The exit code is 0 only when every step passed.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # built-ins are built locally; never download

from demo_report import DEFAULT_REPORT, Report, Step

from blaze_ai.engines.diffusion import DiffusionConfig, DiffusionEngine
from blaze_ai.engines.embedding import EmbeddingConfig, EmbeddingEngine
from blaze_ai.engines.llm import LLMConfig, LLMEngine
from blaze_ai.engines.requests import (
    EmbeddingRequest,
    GenerationRequest,
    ImageRequest,
    SamplingParams,
)

QUESTION = "What is the capital of France?"
SENTENCES = ["A cat sits on the mat.", "A kitten rests on a rug.", "Stock markets fell sharply today."]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="use builtin:tiny-llama instead of SmolLM2")
    parser.add_argument("--llm", default=None, help="LLM source (default: builtin:smollm2-135m)")
    parser.add_argument("--report", default=DEFAULT_REPORT, help=f"report path (default: {DEFAULT_REPORT})")
    parser.add_argument("--image", default=None, help="also save the generated PNG here")
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args(argv)
    if args.llm is None:
        args.llm = "builtin:tiny-llama" if args.quick else "builtin:smollm2-135m"
    return args


class Tour:
    """The engines of the tour and its steps, in order."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.llm = LLMEngine(LLMConfig(source=args.llm, device="cpu", max_batch_size=8))
        self.image = DiffusionEngine(DiffusionConfig(source="builtin:tiny-sd", device="cpu", steps=4))
        self.embedder = EmbeddingEngine(EmbeddingConfig(source="builtin:all-minilm-l6-v2"))

    def params(self) -> SamplingParams:
        return SamplingParams(max_tokens=self.args.max_tokens, temperature=0.0)

    async def load(self, step: Step) -> None:
        timings: dict[str, float] = {}
        for name, engine in (("llm", self.llm), ("image", self.image), ("embedding", self.embedder)):
            t0 = time.monotonic()
            await engine.start()
            timings[f"{name}_load_s"] = time.monotonic() - t0
        step.figures.update(timings, llm_source=self.args.llm)
        step.summary = ", ".join(f"{k.removesuffix('_load_s')} {v:.2f}s" for k, v in timings.items())

    async def generate(self, step: Step) -> None:
        request = GenerationRequest(messages=[{"role": "user", "content": QUESTION}], params=self.params())
        t0 = time.monotonic()
        result = await self.llm.execute(request)
        latency = time.monotonic() - t0
        text = result.choices[0].text
        print(f"   Q: {QUESTION}\n   A: {text!r}")
        step.figures.update(
            latency_s=latency,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            tokens_per_s=result.completion_tokens / latency if latency > 0 else 0.0,
            text=text,
        )
        step.check(result.completion_tokens > 0 and bool(text.strip()), "the model produced no text")
        if self.args.llm == "builtin:smollm2-135m":
            step.check("paris" in text.lower(), f"SmolLM2 should answer Paris, said {text!r}")
        step.summary = f"{result.completion_tokens} tokens in {latency:.2f}s"

    async def stream(self, step: Step) -> None:
        request = GenerationRequest(prompt="Once upon a time", params=self.params())
        t0 = time.monotonic()
        first: float | None = None
        pieces: list[str] = []
        print("   ", end="")
        async for delta in self.llm.stream(request):
            first = first if first is not None else time.monotonic() - t0
            pieces.append(delta.text)
            print(delta.text, end="", flush=True)
        print()
        total = time.monotonic() - t0
        step.figures.update(deltas=len(pieces), ttft_s=first or 0.0, total_s=total, text="".join(pieces))
        step.check(len(pieces) > 1, f"expected several stream deltas, got {len(pieces)}")
        step.summary = f"{len(pieces)} deltas, first after {first or 0.0:.3f}s"

    async def make_image(self, step: Step) -> None:
        request = ImageRequest(prompt="a red fox in the snow", width=64, height=64, steps=4, seed=7)
        t0 = time.monotonic()
        result = await self.image.execute(request)
        latency = time.monotonic() - t0
        png = result.images[0]
        if self.args.image:
            await asyncio.to_thread(Path(self.args.image).write_bytes, png)
        step.figures.update(
            latency_s=latency,
            width=result.width,
            height=result.height,
            png_bytes=len(png),
            seed=result.seeds[0],
        )
        step.check(png.startswith(PNG_MAGIC), "the image is not a PNG")
        step.check(
            (result.width, result.height) == (64, 64), f"asked 64x64, got {result.width}x{result.height}"
        )
        step.summary = f"{result.width}x{result.height} PNG, {len(png)} bytes in {latency:.2f}s"

    async def embed(self, step: Step) -> None:
        t0 = time.monotonic()
        result = await self.embedder.execute(EmbeddingRequest(SENTENCES))
        latency = time.monotonic() - t0
        v = result.vectors
        close, far = _cosine(v[0], v[1]), _cosine(v[0], v[2])
        for sentence, vector in zip(SENTENCES[1:], v[1:], strict=True):
            print(f"   similarity({SENTENCES[0]!r}, {sentence!r}) = {_cosine(v[0], vector):.3f}")
        step.figures.update(
            latency_s=latency,
            dimensions=len(v[0]),
            similar_pair=close,
            unrelated_pair=far,
            tokens=result.prompt_tokens,
        )
        step.check(len(v) == len(SENTENCES), "one vector per sentence expected")
        step.check(close > far, f"cat/kitten ({close:.3f}) should be closer than cat/stocks ({far:.3f})")
        step.summary = f"{len(v)} vectors of {len(v[0])} dims; cat~kitten {close:.2f} > cat~stocks {far:.2f}"

    async def stop(self) -> None:
        for engine in (self.llm, self.image, self.embedder):
            await engine.stop()


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / ((math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))) or 1.0)


async def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = Report("simple", {"quick": args.quick, "llm": args.llm, "max_tokens": args.max_tokens})
    tour = Tour(args)
    try:
        if await report.run("load_models", tour.load):
            await report.run("generate", tour.generate)
            await report.run("stream", tour.stream)
            await report.run("image", tour.make_image)
            await report.run("embed", tour.embed)
    finally:
        await tour.stop()
    return report.finish(args.report)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

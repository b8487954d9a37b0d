"""``blaze embed TEXT...``: print embedding vectors or a cosine similarity matrix."""

from __future__ import annotations

import argparse
import asyncio
import math
from typing import Any

SHOWN = 6  # numbers shown per vector; the rest is elided


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("embed", help="embed texts and print vectors or similarities")
    parser.add_argument("texts", nargs="+", metavar="TEXT", help="texts to embed")
    parser.add_argument(
        "--model", default="builtin:all-minilm-l6-v2", help="built-in, local folder or hub id (%(default)s)"
    )
    parser.add_argument("--similarity", action="store_true", help="print the cosine similarity matrix")
    parser.add_argument("--dimensions", type=int, default=None, help="truncate vectors to N dimensions")
    parser.add_argument("--full", action="store_true", help="print every number of each vector")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    vectors = asyncio.run(_embed(args.model, args.texts, args.dimensions))
    if args.similarity:
        print(similarity_table(args.texts, vectors))
    else:
        for text, vector in zip(args.texts, vectors, strict=True):
            print(f"{text!r} ({len(vector)} dims): {format_vector(vector, full=args.full)}")
    return 0


async def _embed(model: str, texts: list[str], dimensions: int | None) -> list[list[float]]:
    from blaze_ai.engines.embedding import EmbeddingConfig, EmbeddingEngine
    from blaze_ai.engines.requests import EmbeddingRequest

    engine = EmbeddingEngine(EmbeddingConfig(source=model, max_inputs_per_request=max(1, len(texts))))
    await engine.start()
    try:
        result = await engine.execute(EmbeddingRequest(inputs=texts, dimensions=dimensions))
    finally:
        await engine.stop()
    return result.vectors


def format_vector(vector: list[float], *, full: bool = False) -> str:
    """``[0.0123, -0.0456, ..., 0.0789]`` (every number with ``full``)."""
    if full or len(vector) <= SHOWN:
        return "[" + ", ".join(f"{x:.4f}" for x in vector) + "]"
    head = ", ".join(f"{x:.4f}" for x in vector[: SHOWN - 1])
    return f"[{head}, ..., {vector[-1]:.4f}]"


def similarity_table(texts: list[str], vectors: list[list[float]]) -> str:
    """A cosine similarity matrix, rows and columns numbered, with a legend of the texts."""
    norms = [math.sqrt(sum(x * x for x in v)) or 1.0 for v in vectors]
    lines = ["     " + "".join(f"{j:>8}" for j in range(len(texts)))]
    unit = [[x / n for x in v] for v, n in zip(vectors, norms, strict=True)]
    for i, a in enumerate(unit):
        cells = [sum(x * y for x, y in zip(a, b, strict=True)) for b in unit]
        lines.append(f"{i:>5}" + "".join(f"{c:>8.3f}" for c in cells))
    lines.append("")
    lines.extend(f"{i:>5}  {text}" for i, text in enumerate(texts))
    return "\n".join(lines)

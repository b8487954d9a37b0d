"""LLM throughput: sequential generate vs Blaze's continuous batching vs a raw batched KV-cache loop.

Every request generates exactly ``--new-tokens`` greedy tokens (EOS ignored) so the three
ways do the same work. Usage::

    python benchmarks/llm_throughput.py --model builtin:smollm2-135m
    python benchmarks/llm_throughput.py --model builtin:tiny-llama --quick
    python benchmarks/llm_throughput.py --model builtin:smollm2-135m --device cuda --dtype bfloat16

Goals (SmolLM2, 32 concurrent requests): Blaze >= 85 % of the raw loop and >= 5x sequential.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import platform
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import torch
from transformers import DynamicCache

from blaze_ai.engines.llm.config import LLMConfig
from blaze_ai.engines.llm.engine import LLMEngine
from blaze_ai.engines.llm.loading import LoadedModel, load_model
from blaze_ai.engines.requests import GenerationRequest, SamplingParams
from blaze_ai.model_cache import ModelCache

TOPICS = ["the sea", "a robot", "Paris", "winter", "music", "bread", "a cat", "the moon", "trains", "math"]


def prompts(loaded: LoadedModel, count: int) -> list[list[int]]:
    """``count`` distinct chat prompts of slightly different lengths, as token ids."""
    tok = loaded.tokenizer
    out = []
    for i in range(count):
        words = " ".join(["please"] * (i % 5))
        message = [{"role": "user", "content": f"Write a short story about {TOPICS[i % 10]} {words} (#{i})."}]
        text = tok.apply_chat_template(message, add_generation_prompt=True, tokenize=False)
        out.append(list(tok(text, add_special_tokens=False)["input_ids"]))
    return out


def sequential(loaded: LoadedModel, batch: list[list[int]], new_tokens: int) -> float:
    """Tokens/s of ``model.generate`` called once per request."""
    start = time.perf_counter()
    for ids in batch:
        with torch.inference_mode():
            x = torch.tensor([ids], device=loaded.device)
            loaded.model.generate(
                x, attention_mask=torch.ones_like(x), max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                do_sample=False, pad_token_id=0,
            )  # fmt: skip
    return len(batch) * new_tokens / (time.perf_counter() - start)


def raw_loop(loaded: LoadedModel, batch: list[list[int]], new_tokens: int) -> float:
    """Tokens/s of a hand-written batched loop: left-padded prefill, then greedy decode with a KV cache."""
    model, device = loaded.model, loaded.device
    width = max(len(p) for p in batch)
    ids = torch.tensor([[0] * (width - len(p)) + p for p in batch], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=device)
    start = time.perf_counter()
    with torch.inference_mode():
        cache = DynamicCache(config=model.config)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, logits_to_keep=1)
        lengths = mask.sum(-1)
        for _ in range(new_tokens - 1):
            token = out.logits[:, -1].argmax(-1, keepdim=True)
            mask = torch.cat([mask, torch.ones_like(token)], dim=1)
            out = model(input_ids=token, attention_mask=mask, position_ids=lengths[:, None], cache=cache)
            lengths = lengths + 1
        out.logits[:, -1].argmax(-1).tolist()
    return len(batch) * new_tokens / (time.perf_counter() - start)


async def blaze(loaded: LoadedModel, config: LLMConfig, batch: list[list[int]], new_tokens: int) -> float:
    """Tokens/s of the engine with ``len(batch)`` requests in flight at once."""
    cache = ModelCache(1 << 40)
    engine = LLMEngine(config, model_cache=cache)
    cache.get_or_load(engine.cache_key, lambda: loaded)
    await engine.start()
    try:
        params = SamplingParams(max_tokens=new_tokens, temperature=0.0)
        start = time.perf_counter()
        results = await asyncio.gather(
            *(engine.execute(GenerationRequest(prompt_token_ids=p, params=params)) for p in batch)
        )
        elapsed = time.perf_counter() - start
    finally:
        await engine.stop()
    assert all(r.completion_tokens == new_tokens for r in results)
    return sum(r.completion_tokens for r in results) / elapsed


def in_thread(fn: Callable[..., float], *args: Any) -> float:
    """Run ``fn`` on a fresh thread, as the engine runs its model.

    On a busy 2-core machine torch's OpenMP team started from the main thread can be
    20x slower than one started from another thread; every contender runs the same way.
    """
    result: list[float] = []
    worker = threading.Thread(target=lambda: result.append(fn(*args)))
    worker.start()
    worker.join()
    return result[0]


def run(args: argparse.Namespace) -> dict[str, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    config = LLMConfig(
        source=args.model, dtype=args.dtype, device=args.device, max_batch_size=64, max_tokens_in_flight=65536
    )
    loaded = dataclasses.replace(load_model(config), eos_token_ids=())  # every request runs full length
    levels = (1, 8, 32) if args.quick else (1, 8, 32, 64)
    all_prompts = prompts(loaded, max(levels))
    raw_loop(loaded, all_prompts[:4], 4)  # warm-up
    best: dict[str, float] = {}

    def measure(name: str, tokens_per_s: float) -> None:
        best[name] = max(best.get(name, 0.0), tokens_per_s)
        print(f"  {name}: {tokens_per_s:,.0f} tokens/s", file=sys.stderr, flush=True)

    # Best of --repeats, interleaved, so that a noisy neighbour on a shared machine hurts every run alike.
    for _ in range(args.repeats):
        measure("sequential", in_thread(sequential, loaded, all_prompts[: args.sequential], args.new_tokens))
        for level in levels:
            measure(
                f"blaze@{level}", asyncio.run(blaze(loaded, config, all_prompts[:level], args.new_tokens))
            )
            if level == 32:
                measure("raw@32", in_thread(raw_loop, loaded, all_prompts[:32], args.new_tokens))
    return {"model": args.model, "dtype": args.dtype, "new_tokens": args.new_tokens,
            "device": str(loaded.device), "repeats": args.repeats, **best}  # fmt: skip


def report(results: dict[str, Any]) -> str:
    rows = [(k, v) for k, v in results.items() if isinstance(v, float)]
    lines = [
        f"model `{results['model']}`, dtype {results['dtype']}, device {results['device']}, "
        f"{results['new_tokens']} new tokens per request, greedy, best of {results['repeats']}",
        "",
        "| run | tokens/s |",
        "|---|---:|",
        *(f"| {name} | {value:,.0f} |" for name, value in rows),
        "",
        f"- Blaze@32 / raw@32: **{results['blaze@32'] / results['raw@32']:.0%}** (goal >= 85 %)",
        f"- Blaze@32 / sequential: **{results['blaze@32'] / results['sequential']:.1f}x** (goal >= 5x)",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="builtin:smollm2-135m")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--sequential", type=int, default=4, help="requests run one by one with generate")
    parser.add_argument("--repeats", type=int, default=2, help="best of N interleaved runs (%(default)s)")
    parser.add_argument("--quick", action="store_true", help="fewer tokens and no 64-request run")
    args = parser.parse_args()
    if args.quick:
        args.new_tokens, args.sequential = min(args.new_tokens, 32), min(args.sequential, 2)
    cpus, threads = os.cpu_count(), torch.get_num_threads()
    print(f"# {platform.machine()} {cpus} CPUs, torch {torch.__version__}, {threads} threads")
    print(report(run(args)))


if __name__ == "__main__":
    main()

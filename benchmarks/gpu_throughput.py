"""In-process LLM speed on a GPU: Blaze's decode step and engine beside transformers' continuous batching.

For one model folder (``benchmarks/make_random_llama.py`` builds one), in one run:

1. checks: CUDA-graph replay against the eager paged step (max logit difference over many steps),
   and float32 greedy tokens of the paged step against Hugging Face's forward (share equal);
2. the decode step: milliseconds per step at 64 rows, replayed from graphs and eager;
3. throughput at each ``--rows`` level (that many requests at once, ``--new-tokens`` greedy tokens
   each, EOS ignored): Blaze's engine and transformers' ``generate_batch`` (paged cache, CUDA
   graphs) on the same prompts.

Usage::

    python benchmarks/gpu_throughput.py --model DIR --rows 64,256 --json out.json
    python benchmarks/gpu_throughput.py --model builtin:tiny-llama --device cpu --rows 8 --new-tokens 8
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import time
from typing import Any

import torch

from blaze_ai.engines.llm.config import LLMConfig
from blaze_ai.engines.llm.core import EngineCore
from blaze_ai.engines.llm.loading import LoadedModel, load_model
from blaze_ai.engines.llm.runner import PagedRunner
from blaze_ai.engines.requests import GenerationRequest, SamplingParams
from llm_throughput import blaze, prompts


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_ms(runner: PagedRunner, batch: list[list[int]], steps: int) -> float:
    """Milliseconds per decode step of ``len(batch)`` rows, the sampled ids read back every step."""
    runner.clear()
    with torch.inference_mode():
        tokens = runner.prefill(batch, [1] * len(batch), [len(p) + steps + 8 for p in batch])[0].argmax(-1)
        for _ in range(3):
            tokens = runner.decode(tokens.tolist()).argmax(-1)
        sync(runner.device)
        start = time.perf_counter()
        for _ in range(steps):
            tokens = runner.decode(tokens.tolist()).argmax(-1)
        tokens.tolist()
    runner.clear()
    return (time.perf_counter() - start) / steps * 1000


def graph_difference(runner: PagedRunner, batch: list[list[int]], steps: int) -> float:
    """Largest logit difference between graph replay and the eager step, same inputs, many steps."""
    graphs, worst = runner.graphs, 0.0
    runner.clear()
    with torch.inference_mode():
        tokens = runner.prefill(batch, [1] * len(batch), [len(p) + steps + 8 for p in batch])[0].argmax(-1)
        for _ in range(steps):
            lengths = list(runner.cache.lengths)
            replayed = runner.decode(tokens.tolist()).clone()
            runner.cache.lengths, runner.graphs = lengths, None  # the same step again, eagerly
            eager = runner.decode(tokens.tolist())
            runner.graphs = graphs
            worst = max(worst, float((replayed.float() - eager.float()).abs().max()))
            tokens = eager.argmax(-1)
    runner.clear()
    return worst


def greedy_agreement(source: str, device: str, batch: list[list[int]], new_tokens: int) -> float:
    """Share of float32 greedy tokens where the paged step (graphs on) equals Hugging Face's forward."""
    outputs = {}
    loaded = load_model(LLMConfig(source=source, device=device, dtype="float32"))
    for path in ("hf", "paged"):
        core = EngineCore(loaded, LLMConfig(source=source, device=device, dtype="float32", decode_path=path))
        core.warm_up()
        params = SamplingParams(max_tokens=new_tokens, temperature=0.0, ignore_eos=True)
        for i, p in enumerate(batch):
            core.add_request(GenerationRequest(prompt_token_ids=p, params=params, request_id=str(i)))
        tokens: dict[str, list[int]] = {str(i): [] for i in range(len(batch))}
        while core.has_work():
            for out in core.step():
                if out.delta is not None:
                    tokens[out.request_id] += out.delta.token_ids
        outputs[path] = tokens
    pairs = [
        (a, b) for i in outputs["hf"] for a, b in zip(outputs["hf"][i], outputs["paged"][i], strict=True)
    ]
    return sum(a == b for a, b in pairs) / len(pairs)


def transformers_cb(loaded: LoadedModel, batch: list[list[int]], new_tokens: int) -> float:
    """Tokens/s of transformers' own continuous batching (``generate_batch``), after a warm-up call."""
    from transformers import GenerationConfig

    config = GenerationConfig(max_new_tokens=new_tokens, do_sample=False, eos_token_id=-1, pad_token_id=0)
    model: Any = loaded.model
    model.generate_batch(inputs=batch[:8], generation_config=config)
    sync(loaded.device)
    start = time.perf_counter()
    results = model.generate_batch(inputs=batch, generation_config=config)
    sync(loaded.device)
    elapsed = time.perf_counter() - start
    return sum(len(r.generated_tokens) for r in results.values()) / elapsed


def save(out: dict[str, Any], path: str | None) -> None:
    """Print the results so far and write them to ``path`` (a run cut short keeps what it measured)."""
    print(json.dumps(out), flush=True)
    if path:
        with open(path, "w") as f:
            json.dump(out, f, indent=2)


def run(args: argparse.Namespace) -> dict[str, Any]:
    levels = [int(r) for r in args.rows.split(",")]
    out: dict[str, Any] = {"model": args.model, "dtype": args.dtype, "device": args.device}
    out["new_tokens"] = args.new_tokens
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name()
    config = LLMConfig(
        source=args.model,
        device=args.device,
        dtype=args.dtype,
        max_batch_size=max(levels),
        max_tokens_in_flight=max(levels) * (args.new_tokens + 96),
        cuda_graph_max_context=args.graph_context,
    )
    loaded = dataclasses.replace(load_model(config), eos_token_ids=())  # every request runs full length
    batch = prompts(loaded, max(levels))
    core = EngineCore(loaded, config)
    started = time.perf_counter()
    core.warm_up()
    out["warm_up"] = {**core.warm_up_report, "seconds": round(time.perf_counter() - started, 2)}
    runner = core.runner
    if isinstance(runner, PagedRunner):
        rows = min(64, max(levels))
        out[f"step_ms@{rows}"] = round(step_ms(runner, batch[:rows], args.steps), 3)
        if runner.graphs is not None:
            out["graph_max_logit_diff"] = graph_difference(runner, batch[:rows], 40)
            graphs, runner.graphs = runner.graphs, None
            out[f"eager_step_ms@{rows}"] = round(step_ms(runner, batch[:rows], args.steps), 3)
            runner.graphs = graphs
    del core
    save(out, args.json)
    if args.compare_hf:  # the engine before the paged step, at the smallest level
        hf = dataclasses.replace(config, decode_path="hf")
        out[f"blaze-hf@{levels[0]}"] = round(
            asyncio.run(blaze(loaded, hf, batch[: levels[0]], args.new_tokens)), 1
        )
        save(out, args.json)
    for level in levels:
        out[f"blaze@{level}"] = round(asyncio.run(blaze(loaded, config, batch[:level], args.new_tokens)), 1)
        save(out, args.json)
        if not args.skip_transformers:
            out[f"transformers@{level}"] = round(transformers_cb(loaded, batch[:level], args.new_tokens), 1)
            save(out, args.json)
    if args.check_greedy:
        out["greedy_fp32_agreement"] = greedy_agreement(args.model, args.device, batch[:8], 32)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="model folder or builtin:NAME")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--rows", default="64,256", help="concurrent requests per run (%(default)s)")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--steps", type=int, default=50, help="decode steps timed (%(default)s)")
    parser.add_argument(
        "--graph-context", type=int, default=1024, help="cuda_graph_max_context (%(default)s)"
    )
    parser.add_argument("--skip-transformers", action="store_true")
    parser.add_argument("--compare-hf", action="store_true", help="also the engine on Hugging Face's forward")
    parser.add_argument("--check-greedy", action="store_true", help="float32 paged vs HF greedy tokens")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    save(run(args), args.json)


if __name__ == "__main__":
    main()

"""What structured outputs, penalties and log probabilities cost inside continuous batching.

The same engine serves the same prompts from ``--concurrency`` closed-loop clients (each sends
its next request as soon as the last one ends, so the batch stays full) in several modes,
interleaved over ``--rounds``:

- ``plain``: free text (the reference);
- ``json-schema``: every request constrained to a JSON Schema (llguidance masks every row, every step),
  compared with ``plain-as-json``: free text of exactly the lengths the JSON answers had, so that
  both do the same work (a JSON answer ends when its object closes, earlier than free text);
- ``penalties``: frequency, presence and repetition penalties plus a ``logit_bias`` on every request;
- ``logprobs``: every token's log probability with 5 alternatives.

Every mode but ``json-schema`` ignores EOS and generates exactly its ``max_tokens``: the same
number of prefills and decode steps, only the per-step work differs. Tokens/s of each mode is
reported as a ratio to ``plain`` of the same round (``json-schema`` to ``plain-as-json``). Goals (issue 16,
SmolLM2 on this CPU, 32 concurrent requests): JSON schema >= 90 % of plain; penalties and
logprobs >= 95 %. Usage::

    python benchmarks/structured_outputs.py --model builtin:smollm2-135m --rounds 3
    python benchmarks/structured_outputs.py --model builtin:tiny-llama --requests 64 --rounds 1
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import jsonschema
import torch

from blaze_ai.engines.llm.config import LLMConfig
from blaze_ai.engines.llm.engine import LLMEngine
from blaze_ai.engines.requests import GenerationRequest, SamplingParams, StructuredOutput

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "city": {"type": "string", "maxLength": 24},
        "hobbies": {"type": "array", "items": {"type": "string", "maxLength": 16}, "maxItems": 3},
        "member": {"type": "boolean"},
    },
    "required": ["name", "age", "city", "hobbies", "member"],
    "additionalProperties": False,
}
PEOPLE = ["a baker", "a pilot", "a teacher", "a farmer", "a nurse", "a painter", "a chef", "a diver"]
MODES = ("plain", "json-schema", "plain-as-json", "penalties", "logprobs")
#: Each mode's reference: the mode whose tokens/s it is divided by.
REFERENCE = {"json-schema": "plain-as-json"}


def params_for(mode: str, max_tokens: int) -> SamplingParams:
    """The sampling parameters of one mode (greedy; all but json-schema run to max_tokens)."""
    base: dict[str, Any] = {"max_tokens": max_tokens, "temperature": 0.0, "ignore_eos": True}
    if mode == "json-schema":
        base.update(structured=StructuredOutput("json", json.dumps(SCHEMA)), ignore_eos=False)
    elif mode == "penalties":
        base.update(frequency_penalty=0.5, presence_penalty=0.3, repetition_penalty=1.1)
        base["logit_bias"] = ((0, -100.0), (1, 5.0))
    elif mode == "logprobs":
        base["logprobs"] = 5
    return SamplingParams(**base)


def request(i: int, mode: str, max_tokens: int) -> GenerationRequest:
    content = f"Describe {PEOPLE[i % len(PEOPLE)]} (#{i}) as a JSON object with name, age, city and hobbies."
    return GenerationRequest(
        messages=[{"role": "user", "content": content}], params=params_for(mode, max_tokens)
    )


async def run_mode(
    engine: LLMEngine, mode: str, args: argparse.Namespace, lengths: dict[int, int]
) -> dict[str, Any]:
    """Closed loop: ``concurrency`` clients share ``requests`` requests; tokens/s and output checks.

    ``json-schema`` records each request's answer length in ``lengths``; ``plain-as-json`` uses them.
    """
    queue = list(range(args.requests))
    tokens, valid, finished_by_length = 0, 0, 0

    async def client() -> None:
        nonlocal tokens, valid, finished_by_length
        while queue:
            i = queue.pop()
            budget = lengths.get(i, args.max_tokens) if mode == "plain-as-json" else args.max_tokens
            result = await engine.execute(request(i, mode, budget))
            if mode == "json-schema":
                lengths[i] = result.completion_tokens
            tokens += result.completion_tokens
            choice = result.choices[0]
            finished_by_length += choice.finish_reason == "length"
            valid += mode == "json-schema" and _validates(choice.text)

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(args.concurrency)))
    seconds = time.perf_counter() - start
    row = {"mode": mode, "tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds}
    row["cut_by_max_tokens"] = finished_by_length
    if mode == "json-schema":
        row["valid_json"] = f"{valid}/{args.requests}"
    return row


def _validates(text: str) -> bool:
    try:
        jsonschema.validate(json.loads(text), SCHEMA)
    except (ValueError, jsonschema.ValidationError):
        return False
    return True


def machine() -> dict[str, Any]:
    """The machine, read from the machine."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu, "torch": torch.__version__, "load_1m": load}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    config = LLMConfig(
        source=args.model, device=args.device, dtype=args.dtype, max_batch_size=args.concurrency
    )
    engine = LLMEngine(config)
    await engine.start()
    try:
        await run_mode(engine, "json-schema", _warmup(args), {})  # compile the grammar, warm the kernels
        rounds: list[dict[str, dict[str, Any]]] = []
        for number in range(args.rounds):
            rows: dict[str, dict[str, Any]] = {}
            lengths: dict[int, int] = {}
            for mode in args.modes:
                rows[mode] = await run_mode(engine, mode, args, lengths)
                print(f"round {number + 1}: {mode} {rows[mode]['tokens_per_s']:.1f} tokens/s", flush=True)
            rounds.append(rows)
    finally:
        await engine.stop()
    return {
        "machine": machine(),
        "date": datetime.date.today().isoformat(),
        "args": vars(args),
        "rounds": rounds,
    }


def _warmup(args: argparse.Namespace) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), "requests": min(args.requests, args.concurrency)})


def report(results: dict[str, Any], emit: Callable[[str], None] = print) -> None:
    """A table of tokens/s per mode and round, with each mode's median ratio to plain."""
    emit(f"machine: {results['machine']}  date: {results['date']}")
    emit(f"{'mode':<14} {'tokens/s per round':<30} {'ratio to reference (median)':>28}  notes")
    for mode in results["args"]["modes"]:
        speeds = [r[mode]["tokens_per_s"] for r in results["rounds"]]
        reference = REFERENCE.get(mode, "plain")
        ratios = [r[mode]["tokens_per_s"] / r[reference]["tokens_per_s"] for r in results["rounds"]]
        last = results["rounds"][-1][mode]
        notes = f"cut by max_tokens {last['cut_by_max_tokens']}" + (
            f", valid JSON {last['valid_json']}" if "valid_json" in last else ""
        )
        shown = ", ".join(f"{s:.1f}" for s in speeds)
        emit(f"{mode:<14} {shown:<30} {statistics.median(ratios):>19.3f} / {reference:<7}  {notes}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="builtin:smollm2-135m")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--requests", type=int, default=128, help="requests per mode and round")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", type=lambda s: s.split(","), default=list(MODES))
    parser.add_argument("--json", help="also write the results to this file")
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    if "plain" not in arguments.modes:
        arguments.modes = ["plain", *arguments.modes]
    if "json-schema" in arguments.modes and "plain-as-json" not in arguments.modes:
        arguments.modes.append("plain-as-json")
    arguments.modes.sort(key=MODES.index)  # json-schema runs before plain-as-json (it sets the lengths)
    outcome = asyncio.run(main(arguments))
    report(outcome)
    if arguments.json:
        with open(arguments.json, "w") as out:
            json.dump(outcome, out, indent=2)

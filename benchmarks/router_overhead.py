"""Router overhead: requests/s and added latency over no-op replicas, next to LiteLLM's Router.

Run: ``.venv/bin/python benchmarks/router_overhead.py [--quick]`` (needs ``pip install litellm``
for the comparison; skipped with a note if missing). Targets 127.0.0.1 only; every loop is bounded.
Writes ``benchmarks/results/router_overhead.md``.

1) In process: a no-op replica called directly vs through ``Router`` (three no-op replicas), and
   LiteLLM's ``Router`` with three ``mock_response`` deployments: sequential p50 per call and
   requests/s at 32 concurrent calls.
2) Over HTTP: one replica server (``tests/e2e/replica_server.py``) called through
   ``RemoteReplica`` directly vs through a ``Router`` over it; added p50.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from blaze_ai.engines.requests import GenerationRequest
from blaze_ai.engines.router import BLAZE_HEALTH_PATH, RemoteReplica, Router, RouterConfig

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "router_overhead.md"
Call = Callable[[], Awaitable[Any]]


class NoopReplica:
    def __init__(self, name: str) -> None:
        self.name = name

    async def execute(self, request: Any) -> str:
        return "ok"

    async def stream(self, request: Any) -> Any:
        yield "ok"

    async def probe(self) -> bool:
        return True


async def sequential_p50_us(call: Call, n: int) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter_ns()
        await call()
        times.append(time.perf_counter_ns() - start)
    return statistics.median(times) / 1000


async def throughput(call: Call, total: int, concurrency: int = 32) -> float:
    counter = iter(range(total))

    async def worker() -> None:
        for _ in counter:
            await call()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total / (time.perf_counter() - start)


async def interleaved_p50s(calls: dict[str, Call], n: int, rounds: int = 5) -> dict[str, float]:
    """Median per call of each, measured in alternating rounds so machine noise hits all alike."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            samples[name].append(await sequential_p50_us(call, n // rounds))
    return {name: statistics.median(values) for name, values in samples.items()}


async def in_process(quick: bool) -> dict[str, float]:
    request = GenerationRequest(prompt="hi")
    direct = NoopReplica("direct")
    router = Router([NoopReplica(f"r{i}") for i in range(3)], RouterConfig(strategy="power_of_two"))
    n = 5_000 if quick else 20_000
    calls = {"direct": lambda: direct.execute(request), "router": lambda: router.execute(request)}
    p50 = await interleaved_p50s(calls, n)
    return {
        "direct_p50_us": p50["direct"],
        "router_p50_us": p50["router"],
        "direct_rps": await throughput(lambda: direct.execute(request), n),
        "router_rps": await throughput(lambda: router.execute(request), n),
    }


async def litellm_numbers(quick: bool) -> dict[str, float] | None:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        from litellm import Router as LiteLLMRouter  # type: ignore[import-not-found]
    except ImportError:
        return None
    params = {"model": "openai/noop", "api_key": "sk-noop", "mock_response": "ok"}
    router = LiteLLMRouter(model_list=[{"model_name": "m", "litellm_params": dict(params)} for _ in range(3)])
    messages = [{"role": "user", "content": "hi"}]

    async def call() -> Any:
        return await router.acompletion(model="m", messages=messages)

    await call()  # warm up
    n = 100 if quick else 300
    return {"p50_us": await sequential_p50_us(call, n), "rps": await throughput(call, 3 * n)}


def start_replica_server() -> tuple[subprocess.Popen[bytes], str]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ROOT / "tests" / "e2e" / "replica_server.py"
    cmd = [sys.executable, str(server), "--port", str(port), "--name", "noop"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):  # up to 30 s
        try:
            if httpx.get(url + "/health/ready", timeout=0.5).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("replica server did not start")


async def over_http(url: str, quick: bool) -> dict[str, float]:
    request = GenerationRequest(messages=[{"role": "user", "content": "hi"}])
    direct = RemoteReplica(url, model="noop", name="direct", health_path=BLAZE_HEALTH_PATH)
    routed = RemoteReplica(url, model="noop", name="routed", health_path=BLAZE_HEALTH_PATH)
    router = Router([routed], RouterConfig(strategy="power_of_two"))
    try:
        for _ in range(50):  # warm the connection pools
            await direct.execute(request)
            await router.execute(request)
        n = 500 if quick else 2_000
        calls = {"direct": lambda: direct.execute(request), "router": lambda: router.execute(request)}
        p50 = await interleaved_p50s(calls, n, rounds=10)
        return {"direct_p50_us": p50["direct"], "router_p50_us": p50["router"]}
    finally:
        await direct.aclose()
        await router.stop()


def report(local: dict[str, float], lite: dict[str, float] | None, http: dict[str, float], cmd: str) -> str:
    added_local = local["router_p50_us"] - local["direct_p50_us"]
    added_http = http["router_p50_us"] - http["direct_p50_us"]
    lines = [
        "# Router overhead",
        "",
        f"Command: `{cmd}`  ",
        "Machine: 2-core CPU, no GPU (shared with other work while measured)  ",
        "Date: 2026-11-27",
        "",
        "## In process (no-op replicas; Blaze router over 3, power of two choices)",
        "",
        "| what | p50 per sequential call | requests/s at 32 concurrent |",
        "|---|---|---|",
        f"| no-op replica called directly | {local['direct_p50_us']:.1f} µs | {local['direct_rps']:,.0f} |",
        f"| Blaze `Router` | {local['router_p50_us']:.1f} µs | {local['router_rps']:,.0f} |",
    ]
    if lite is not None:
        lines.append(f"| LiteLLM `Router` (`mock_response`) | {lite['p50_us']:.1f} µs | {lite['rps']:,.0f} |")
    lines += ["", f"- Added by the Blaze router at p50: **{added_local:.1f} µs** (goal < 100 µs)."]
    if lite is not None:
        ratio = local["router_rps"] / lite["rps"]
        lines.append(f"- Requests/s, Blaze / LiteLLM: **{ratio:,.0f}x** (goal >= 20x).")
        slower = lite["p50_us"] / local["router_p50_us"]
        lines.append(f"- Sequential latency, LiteLLM / Blaze: {slower:,.0f}x.")
    else:
        lines.append("- LiteLLM not installed: `pip install litellm` to compare.")
    lines += [
        "",
        "## Over HTTP (one replica server on 127.0.0.1, chat completion)",
        "",
        "| what | p50 |",
        "|---|---|",
        f"| `RemoteReplica` called directly | {http['direct_p50_us']:.0f} µs |",
        f"| through `Router` | {http['router_p50_us']:.0f} µs |",
        "",
        f"- Added by the router at p50: **{added_http:.0f} µs** (goal < 1000 µs).",
        "",
    ]
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description="router overhead benchmark")
    parser.add_argument("--quick", action="store_true", help="fewer calls (a smoke run)")
    args = parser.parse_args()
    local = await in_process(args.quick)
    lite = await litellm_numbers(args.quick)
    proc, url = start_replica_server()
    try:
        http = await over_http(url, args.quick)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    cmd = ".venv/bin/python benchmarks/router_overhead.py" + (" --quick" if args.quick else "")
    text = report(local, lite, http, cmd)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    asyncio.run(main())

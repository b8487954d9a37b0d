"""The whole Blaze AI system in one process, and what it does under load and faults.

    .venv/bin/python demo_refactored_system.py            # 16 concurrent requests, 32 tokens each
    .venv/bin/python demo_refactored_system.py --quick    # 8 concurrent requests, 8 tokens each

The demo writes its config as a mapping (what a YAML file would hold), parses it with
``blaze_ai.config.parse_config`` and runs it with ``blaze_ai.system.System``, the system ``blaze
serve`` runs: two ``builtin:tiny-llama`` LLM replicas (engines ``llm#0``, ``llm#1``), a
``builtin:tiny-sd`` diffusion engine, a ``builtin:all-minilm-l6-v2`` embedding engine and two fake
replicas (``fake#0``, ``fake#1``, for the fault steps, with short breaker timings), one ``Router``
per model. The response cache (``blaze_ai.cache``) sits in front as the server puts it, so every
request walks the server's path: cache -> router -> manager (breaker) -> engine -> scheduler or
batcher -> model.

Steps: batching (concurrent requests; batch sizes read from engine stats), streaming, a cache hit
(miss and hit latency), a breaker trip and recovery, a failover (an LLM replica crashes; requests
still succeed, the manager restarts it), an image, embeddings, a clean shutdown. It prints what
happened and writes ``blaze_ai_demo_report.json`` (``--report PATH``), validated against
``schemas/demo_report.schema.json``; the exit code is 0 only when every step passed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # built-ins are built locally; never download

from demo_report import DEFAULT_REPORT, Report, Step

from blaze_ai.cache import CachedDispatch, MemoryBackend, ResponseCache, cache_config
from blaze_ai.config import BlazeConfig, parse_config
from blaze_ai.engines import FakeEngine
from blaze_ai.engines.requests import (
    EmbeddingRequest,
    GenerationRequest,
    ImageRequest,
    SamplingParams,
)
from blaze_ai.engines.router import Router
from blaze_ai.server.dispatch import RequestContext
from blaze_ai.system import System, engine_names

# Short timings so a trip and a recovery take about a second, not the production 5 s to 60 s.
FAST_BREAKER = {
    "failure_threshold": 3,
    "open_base_s": 1.0,
    "open_max_s": 2.0,
    "jitter": 0.0,
    "half_open_max_calls": 1,
    "success_threshold": 1,
}
# Fast router health checks (every 0.5 s, down after 2 failures, up after 1 success).
FAST_HEALTH = {"health_interval_s": 0.5, "health_rise": 1, "health_fall": 2}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer and shorter requests")
    parser.add_argument("--llm", default="builtin:tiny-llama", help="LLM source of both replicas")
    parser.add_argument("--report", default=DEFAULT_REPORT, help=f"report path (default: {DEFAULT_REPORT})")
    args = parser.parse_args(argv)
    args.concurrency, args.max_tokens = (8, 8) if args.quick else (16, 32)
    return args


def config_mapping(llm_source: str) -> dict[str, Any]:
    """The demo's config, as a YAML file would hold it."""
    return {
        "server": {"drain_grace_s": 5.0},
        "manager": {
            "health_interval_s": 0.5,
            "unhealthy_after": 2,
            "restart_base_s": 0.2,
            "restart_max_s": 1.0,
        },
        "cache": {"backend": "memory", "max_bytes": 64 << 20, "ttl_s": 600, "mode": "deterministic"},
        "models": [
            {
                "name": "llm",
                "kind": "llm",
                "llm": {"source": llm_source, "device": "cpu", "max_batch_size": 16},
                "replicas": 2,
                "router": {"strategy": "least_connections", **FAST_HEALTH},
            },
            {
                "name": "image",
                "kind": "diffusion",
                "diffusion": {"device": "cpu", "steps": 4},
                "router": {"strategy": "power_of_two", **FAST_HEALTH},
            },
            {
                "name": "embed",
                "kind": "embedding",
                "embedding": {},
                "router": {"strategy": "power_of_two", **FAST_HEALTH},
            },
            {
                "name": "fake",
                "kind": "fake",
                "fake": {"delay_s": 0.005},
                "replicas": 2,
                "breaker": FAST_BREAKER,  # the manager's breaker on each replica and the router's
                "router": {"strategy": "round_robin", **FAST_HEALTH},
            },
        ],
    }


class Demo:
    """``blaze_ai.system.System`` behind the response cache, wired the way ``blaze serve`` does it."""

    def __init__(self, args: argparse.Namespace, config: BlazeConfig) -> None:
        self.args = args
        self.config = config
        self.system = System(config)
        self.llm_engines = engine_names(config.model("llm"))  # llm#0, llm#1
        self.fake_engines = engine_names(config.model("fake"))  # fake#0, fake#1
        # As install_cache does: open_cache(cache_config(...)) wrapped around the system's dispatch.
        settings = cache_config(config.cache)
        assert settings.backend == "memory"
        self.cache = ResponseCache(
            MemoryBackend(settings.max_bytes), settings.ttl_s, max_entry_bytes=settings.max_bytes
        )
        self.dispatch = CachedDispatch(self.system, self.cache, mode=settings.mode)

    def router(self, model: str) -> Router:
        return self.system.routers[model]

    def ctx(self) -> RequestContext:
        return RequestContext(request_id=f"demo-{time.monotonic_ns()}", client_ip="127.0.0.1")

    def text(self, prompt: str, temperature: float = 0.0) -> GenerationRequest:
        params = SamplingParams(max_tokens=self.args.max_tokens, temperature=temperature)
        return GenerationRequest(prompt=prompt, params=params)

    async def generate(self, prompt: str, temperature: float = 0.0) -> Any:
        return await self.dispatch.execute("llm", self.text(prompt, temperature), self.ctx())

    # -- steps ---------------------------------------------------------------------------------
    async def start(self, step: Step) -> None:
        t0 = time.monotonic()
        await self.system.start()  # every engine (one at a time), then every router
        snapshot = self.system.manager.snapshot()
        statuses = {name: entry["status"] for name, entry in snapshot.items()}
        step.figures.update(
            start_s=time.monotonic() - t0, engines=sorted(statuses), ready=self.system.manager.is_ready
        )
        step.check(all(s == "ready" for s in statuses.values()), f"not every engine is ready: {statuses}")
        step.summary = f"{len(statuses)} engines ready in {time.monotonic() - t0:.2f}s: {', '.join(statuses)}"

    async def batching(self, step: Step) -> None:
        before = {name: self.system.manager.get(name).stats() for name in self.llm_engines}
        seen: dict[str, set[int]] = {name: set() for name in self.llm_engines}
        sampler = asyncio.create_task(self._sample_batches(seen))
        n = self.args.concurrency
        t0 = time.monotonic()
        try:
            results = await asyncio.gather(*(self.generate(f"Request number {i} says") for i in range(n)))
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        wall = time.monotonic() - t0
        tokens = sum(r.completion_tokens for r in results)
        steps = sum(
            self.system.manager.get(x).stats()["steps"] - before[x]["steps"] for x in self.llm_engines
        )
        sizes = sorted(set().union(*seen.values()))
        picks = {x: s["picks"] for x, s in self.router("llm").stats()["replicas"].items()}
        step.figures.update(
            requests=n, wall_s=wall, completion_tokens=tokens, tokens_per_s=tokens / wall,
            batch_sizes_seen=sizes, max_batch_size_seen=max(sizes, default=0),
            mean_rows_per_step=tokens / steps if steps else 0.0, router_picks=str(picks),
        )  # fmt: skip
        step.check(len(results) == n and tokens > 0, "some concurrent requests produced nothing")
        step.check(max(sizes, default=0) > 1, f"no batch above 1 was seen (sizes {sizes})")
        step.summary = f"{n} concurrent requests, {tokens / wall:.0f} tok/s, batch sizes seen {sizes}"

    async def _sample_batches(self, seen: dict[str, set[int]]) -> None:
        while True:
            for name in self.llm_engines:
                stats = self.system.manager.get(name).stats()
                for key in ("batch_size", "running"):
                    if stats.get(key):
                        seen[name].add(int(stats[key]))
            await asyncio.sleep(0.002)

    async def streaming(self, step: Step) -> None:
        request = self.text("Streaming shows tokens as they come", temperature=0.7)
        t0 = time.monotonic()
        first: float | None = None
        pieces: list[str] = []
        async for delta in self.dispatch.stream("llm", request, self.ctx()):
            first = first if first is not None else time.monotonic() - t0
            pieces.append(delta.text)
        total = time.monotonic() - t0
        step.figures.update(deltas=len(pieces), ttft_s=first or 0.0, total_s=total)
        step.check(len(pieces) > 1, f"expected several deltas, got {len(pieces)}")
        step.summary = f"{len(pieces)} deltas, first after {first or 0.0:.3f}s, all in {total:.2f}s"

    async def cache_hit(self, step: Step) -> None:
        before = self.cache.stats()
        latencies = []
        texts = []
        for _ in range(2):
            t0 = time.monotonic()
            result = await self.generate("The cache answers this twice")
            latencies.append(time.monotonic() - t0)
            texts.append(result.choices[0].text)
        after = self.cache.stats()
        hits, misses = after["hits"] - before["hits"], after["misses"] - before["misses"]
        step.figures.update(
            miss_latency_s=latencies[0], hit_latency_s=latencies[1],
            speedup=latencies[0] / max(latencies[1], 1e-9), hits=hits, misses=misses,
        )  # fmt: skip
        step.check(
            (misses, hits) == (1, 1), f"expected one miss then one hit, got {misses} misses, {hits} hits"
        )
        step.check(texts[0] == texts[1], "the cached answer differs from the computed one")
        step.summary = f"miss {latencies[0] * 1000:.1f} ms, hit {latencies[1] * 1000:.2f} ms"

    async def breaker(self, step: Step) -> None:
        name = self.fake_engines[0]  # fake#0
        victim, fake = self.system.manager.get(name), self.router("fake")
        assert isinstance(victim, FakeEngine)
        victim.set_mode(fail_rate=1.0)
        errors, sent = 0, 0
        while self._breaker_state(name) != "open" and sent < 20:
            sent += 1
            errors += await self._try_fake()
        opened = self._breaker_state(name)
        print(f"   {name} failing: breaker {opened} after {sent} requests, {errors} client errors")
        victim.set_mode(fail_rate=0.0)
        t0 = time.monotonic()
        while self._breaker_state(name) != "closed" and time.monotonic() - t0 < 10:
            errors += await self._try_fake()
            await asyncio.sleep(0.05)
        closed_after = time.monotonic() - t0
        final = self._breaker_state(name)
        open_time = self.config.model("fake").breaker.open_base_s
        router_state = fake.stats()["replicas"][name]["breaker_state"]
        step.figures.update(
            requests_until_open=sent, client_errors=errors, closed_after_s=closed_after,
            open_time_s=open_time, final_state=final, router_breaker_state=router_state,
        )  # fmt: skip
        step.check(opened == "open", f"the breaker did not open after {sent} failing requests")
        step.check(final == "closed", f"the breaker did not close again (state {final})")
        step.check(errors == 0, f"{errors} requests failed although another replica was healthy")
        step.summary = (
            f"opened after {sent} requests, closed {closed_after:.2f}s after healing, {errors} errors"
        )

    def _breaker_state(self, name: str) -> str:
        return str(self.system.manager.snapshot()[name]["breaker"]["state"])

    async def _try_fake(self) -> int:
        try:
            await self.dispatch.execute(
                "fake", GenerationRequest(prompt="ping", params=SamplingParams(temperature=1)), self.ctx()
            )
        except Exception:
            return 1
        return 0

    async def failover(self, step: Step) -> None:
        crashed = self.llm_engines[1]
        await self.system.manager.get(crashed).stop()  # the engine dies under the manager's feet
        retries0 = self.router("llm").stats()["retries"]
        outcomes = await asyncio.gather(
            *(self.generate(f"Failover request {i}", temperature=1.0) for i in range(6)),
            return_exceptions=True,
        )
        failed = [repr(o) for o in outcomes if isinstance(o, BaseException)]
        retries = self.router("llm").stats()["retries"] - retries0
        succeeded = len(outcomes) - len(failed)
        print(f"   {crashed} crashed: {succeeded}/{len(outcomes)} succeeded, {retries} retries")
        t0 = time.monotonic()
        while (
            self.system.manager.snapshot()[crashed]["restarts"] < 1
            or self.system.manager.status(crashed).value != "ready"
        ):
            await asyncio.sleep(0.1)
            if time.monotonic() - t0 > 60:
                break
        recovery = time.monotonic() - t0
        recovered = self.system.manager.status(crashed).value == "ready"
        direct = (
            await self.system.manager.execute(crashed, self.text("back again", 1.0)) if recovered else None
        )
        step.figures.update(
            requests=len(outcomes), failed=len(failed), router_retries=retries, recovered=recovered,
            recovery_s=recovery, restarts=self.system.manager.snapshot()[crashed]["restarts"],
        )  # fmt: skip
        step.check(not failed, f"requests failed during failover: {failed[:2]}")
        step.check(direct is not None and direct.completion_tokens > 0, f"{crashed} was not restarted")
        step.summary = (
            f"0 of {len(outcomes)} failed ({retries} retried); {crashed} restarted in {recovery:.1f}s"
        )

    async def image(self, step: Step) -> None:
        requests = [
            ImageRequest("a lighthouse at dusk", width=64, height=64, steps=4, seed=s) for s in (1, 2)
        ]
        t0 = time.monotonic()
        results = await asyncio.gather(*(self.dispatch.execute("image", r, self.ctx()) for r in requests))
        latency = time.monotonic() - t0
        pngs = [r.images[0] for r in results]
        stats = self.system.manager.get("image").stats()
        step.figures.update(
            images=len(pngs), latency_s=latency, png_bytes=[len(p) for p in pngs],
            batches=str(stats.get("batcher", {})),
        )  # fmt: skip
        step.check(all(p.startswith(b"\x89PNG") for p in pngs), "an image is not a PNG")
        step.check(pngs[0] != pngs[1], "different seeds gave the same image")
        step.summary = f"{len(pngs)} 64x64 PNGs in {latency:.2f}s"

    async def embeddings(self, step: Step) -> None:
        inputs = ["the router picks a replica", "a replica is chosen by the router", "bananas are yellow"]
        t0 = time.monotonic()
        result = await self.dispatch.execute("embed", EmbeddingRequest(inputs), self.ctx())
        latency = time.monotonic() - t0
        sims = [sum(a * b for a, b in zip(result.vectors[0], v, strict=True)) for v in result.vectors[1:]]
        step.figures.update(latency_s=latency, dimensions=len(result.vectors[0]), similarities=sims)
        step.check(sims[0] > sims[1], f"paraphrase ({sims[0]:.2f}) should beat unrelated ({sims[1]:.2f})")
        step.summary = (
            f"{len(result.vectors)} vectors of {len(result.vectors[0])} dims in {latency * 1000:.0f} ms"
        )

    async def shutdown(self, step: Step) -> None:
        t0 = time.monotonic()
        clean = await self.system.stop(self.config.server.drain_grace_s)  # drain, then stop all
        await self.cache.aclose()  # as the server's lifespan does
        statuses = {name: entry["status"] for name, entry in self.system.manager.snapshot().items()}
        step.figures.update(
            clean=clean, shutdown_s=time.monotonic() - t0, events=len(self.system.manager.events(1000))
        )
        step.check(clean and set(statuses.values()) == {"stopped"}, f"unclean shutdown: {statuses}")
        step.summary = f"drained and stopped {len(statuses)} engines in {time.monotonic() - t0:.2f}s"


async def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    options = {
        "quick": args.quick,
        "llm": args.llm,
        "concurrency": args.concurrency,
        "max_tokens": args.max_tokens,
    }
    report = Report("refactored_system", options)
    demo = Demo(args, parse_config(config_mapping(args.llm), env={}))
    if await report.run("start", demo.start):
        for name in ("batching", "streaming", "cache_hit", "breaker", "failover", "image", "embeddings"):
            await report.run(name, getattr(demo, name))
    await report.run("shutdown", demo.shutdown)
    return report.finish(args.report)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

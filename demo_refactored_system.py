"""The whole Blaze AI system in one process, and what it does under load and faults.

    .venv/bin/python demo_refactored_system.py            # 16 concurrent requests, 32 tokens each
    .venv/bin/python demo_refactored_system.py --quick    # 8 concurrent requests, 8 tokens each

One ``EngineManager`` runs two ``builtin:tiny-llama`` LLM replicas, a ``builtin:tiny-sd`` diffusion
engine, a ``builtin:all-minilm-l6-v2`` embedding engine and two ``FakeEngine`` replicas (for the
fault steps, with short breaker timings). A ``Router`` per model balances over its replicas, and the
response cache (``blaze_ai.cache``) sits in front, so every request walks the server's path:
cache -> router -> manager (breaker) -> engine -> scheduler or batcher -> model.

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
from collections.abc import AsyncIterator
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # built-ins are built locally; never download

from demo_report import DEFAULT_REPORT, Report, Step

from blaze_ai.cache import CachedDispatch, MemoryBackend, ResponseCache
from blaze_ai.engines import BreakerConfig, EngineManager, FakeConfig, FakeEngine, ManagerConfig
from blaze_ai.engines.diffusion import DiffusionConfig, DiffusionEngine
from blaze_ai.engines.embedding import EmbeddingConfig, EmbeddingEngine
from blaze_ai.engines.llm import LLMConfig, LLMEngine
from blaze_ai.engines.requests import (
    EmbeddingRequest,
    GenerationRequest,
    ImageRequest,
    SamplingParams,
)
from blaze_ai.engines.router import LocalReplica, Router, RouterConfig
from blaze_ai.server.dispatch import RequestContext

# Short timings so a trip and a recovery take about a second, not the production 5 s to 60 s.
FAST_BREAKER = BreakerConfig(
    failure_threshold=3,
    open_base_s=1.0,
    open_max_s=2.0,
    jitter=0.0,
    half_open_max_calls=1,
    success_threshold=1,
)
MANAGER = ManagerConfig(health_interval_s=0.5, unhealthy_after=2, restart_base_s=0.2, restart_max_s=1.0)
LLM_REPLICAS = ("llm-0", "llm-1")
FAKE_REPLICAS = ("fake-0", "fake-1")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer and shorter requests")
    parser.add_argument("--llm", default="builtin:tiny-llama", help="LLM source of both replicas")
    parser.add_argument("--report", default=DEFAULT_REPORT, help=f"report path (default: {DEFAULT_REPORT})")
    args = parser.parse_args(argv)
    args.concurrency, args.max_tokens = (8, 8) if args.quick else (16, 32)
    return args


def _router_config(strategy: str = "power_of_two", breaker: BreakerConfig | None = None) -> RouterConfig:
    """Fast health checks (every 0.5 s, down after 2 failures, up after 1 success)."""
    return RouterConfig(
        strategy, breaker=breaker or BreakerConfig(), health_interval_s=0.5, health_rise=1, health_fall=2
    )


class RouterDispatch:
    """The server's dispatch seam over one ``Router`` per model (what ``CachedDispatch`` wraps)."""

    def __init__(self, routers: dict[str, tuple[str, Router]]) -> None:
        self.routers = routers  # model -> (kind, router)

    async def execute(self, model: str, request: Any, ctx: RequestContext) -> Any:
        return await self.routers[model][1].execute(request)

    def stream(self, model: str, request: Any, ctx: RequestContext) -> AsyncIterator[Any]:
        return self.routers[model][1].stream(request)

    def models(self) -> dict[str, str]:
        return {model: kind for model, (kind, _) in self.routers.items()}


class System:
    """Manager, routers, cache and dispatch, built the way ``blaze serve`` wires them."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.manager = EngineManager(MANAGER)
        llm = LLMConfig(source=args.llm, device="cpu", max_batch_size=16)
        for name in LLM_REPLICAS:
            self.manager.register(name, LLMEngine(llm))
        self.manager.register("image", DiffusionEngine(DiffusionConfig(device="cpu", steps=4)))
        self.manager.register("embed", EmbeddingEngine(EmbeddingConfig()))
        for name in FAKE_REPLICAS:
            self.manager.register(name, FakeEngine(FakeConfig(delay_s=0.005)), FAST_BREAKER)
        self.routers = {
            "llm": ("llm", self._router(LLM_REPLICAS, _router_config("least_connections"))),
            "image": ("diffusion", self._router(("image",), _router_config())),
            "embed": ("embedding", self._router(("embed",), _router_config())),
            "fake": ("fake", self._router(FAKE_REPLICAS, _router_config("round_robin", FAST_BREAKER))),
        }
        self.cache = ResponseCache(MemoryBackend(64 << 20), ttl_s=600)
        self.dispatch = CachedDispatch(RouterDispatch(self.routers), self.cache, mode="deterministic")

    def _router(self, names: tuple[str, ...], config: RouterConfig) -> Router:
        return Router([LocalReplica.from_manager(self.manager, name) for name in names], config)

    def router(self, model: str) -> Router:
        return self.routers[model][1]

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
        await self.manager.start()
        for _, router in self.routers.values():
            await router.start()
        snapshot = self.manager.snapshot()
        statuses = {name: entry["status"] for name, entry in snapshot.items()}
        step.figures.update(
            start_s=time.monotonic() - t0, engines=sorted(statuses), ready=self.manager.is_ready
        )
        step.check(all(s == "ready" for s in statuses.values()), f"not every engine is ready: {statuses}")
        step.summary = f"{len(statuses)} engines ready in {time.monotonic() - t0:.2f}s: {', '.join(statuses)}"

    async def batching(self, step: Step) -> None:
        before = {name: self.manager.get(name).stats() for name in LLM_REPLICAS}
        seen: dict[str, set[int]] = {name: set() for name in LLM_REPLICAS}
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
        steps = sum(self.manager.get(x).stats()["steps"] - before[x]["steps"] for x in LLM_REPLICAS)
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
            for name in LLM_REPLICAS:
                stats = self.manager.get(name).stats()
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
        victim, fake = self.manager.get(FAKE_REPLICAS[0]), self.router("fake")
        assert isinstance(victim, FakeEngine)
        victim.set_mode(fail_rate=1.0)
        errors, sent = 0, 0
        while self._breaker_state(FAKE_REPLICAS[0]) != "open" and sent < 20:
            sent += 1
            errors += await self._try_fake()
        opened = self._breaker_state(FAKE_REPLICAS[0])
        print(
            f"   {FAKE_REPLICAS[0]} failing: breaker {opened} after {sent} requests, {errors} client errors"
        )
        victim.set_mode(fail_rate=0.0)
        t0 = time.monotonic()
        while self._breaker_state(FAKE_REPLICAS[0]) != "closed" and time.monotonic() - t0 < 10:
            errors += await self._try_fake()
            await asyncio.sleep(0.05)
        closed_after = time.monotonic() - t0
        final = self._breaker_state(FAKE_REPLICAS[0])
        router_state = fake.stats()["replicas"][FAKE_REPLICAS[0]]["breaker_state"]
        step.figures.update(
            requests_until_open=sent, client_errors=errors, closed_after_s=closed_after,
            open_time_s=FAST_BREAKER.open_base_s, final_state=final, router_breaker_state=router_state,
        )  # fmt: skip
        step.check(opened == "open", f"the breaker did not open after {sent} failing requests")
        step.check(final == "closed", f"the breaker did not close again (state {final})")
        step.check(errors == 0, f"{errors} requests failed although another replica was healthy")
        step.summary = (
            f"opened after {sent} requests, closed {closed_after:.2f}s after healing, {errors} errors"
        )

    def _breaker_state(self, name: str) -> str:
        return str(self.manager.snapshot()[name]["breaker"]["state"])

    async def _try_fake(self) -> int:
        try:
            await self.dispatch.execute(
                "fake", GenerationRequest(prompt="ping", params=SamplingParams(temperature=1)), self.ctx()
            )
        except Exception:
            return 1
        return 0

    async def failover(self, step: Step) -> None:
        crashed = LLM_REPLICAS[1]
        await self.manager.get(crashed).stop()  # the engine dies under the manager's feet
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
            self.manager.snapshot()[crashed]["restarts"] < 1 or self.manager.status(crashed).value != "ready"
        ):
            await asyncio.sleep(0.1)
            if time.monotonic() - t0 > 60:
                break
        recovery = time.monotonic() - t0
        recovered = self.manager.status(crashed).value == "ready"
        direct = await self.manager.execute(crashed, self.text("back again", 1.0)) if recovered else None
        step.figures.update(
            requests=len(outcomes), failed=len(failed), router_retries=retries, recovered=recovered,
            recovery_s=recovery, restarts=self.manager.snapshot()[crashed]["restarts"],
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
        stats = self.manager.get("image").stats()
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
        for _, router in self.routers.values():
            await router.stop()
        clean = await self.manager.shutdown(grace_s=5.0)
        await self.cache.aclose()
        statuses = {name: entry["status"] for name, entry in self.manager.snapshot().items()}
        step.figures.update(
            clean=clean, shutdown_s=time.monotonic() - t0, events=len(self.manager.events(1000))
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
    system = System(args)
    if await report.run("start", system.start):
        for name in ("batching", "streaming", "cache_hit", "breaker", "failover", "image", "embeddings"):
            await report.run(name, getattr(system, name))
    await report.run("shutdown", system.shutdown)
    return report.finish(args.report)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

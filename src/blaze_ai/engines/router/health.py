"""Active health checks: probe every target on an interval, with rise and fall thresholds.

Defaults follow HAProxy and Kubernetes: every 5 s with 10 % jitter and a random first offset,
2 s per probe, unhealthy after 3 failures in a row, healthy again after 2 successes. Targets
start healthy. A probe that raises, returns False or overruns its timeout is a failure; nothing a
probe does can kill the loop. The last healthy target is never marked unhealthy: with every
replica failing its probes, traffic still goes to one (breakers then fail requests fast).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

Probe = Callable[[], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class HealthConfig:
    interval_s: float = 5.0
    timeout_s: float = 2.0
    rise: int = 2
    fall: int = 3
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.interval_s <= 0 or self.timeout_s <= 0:
            raise ValueError("health interval_s and timeout_s must be positive (seconds)")
        if self.rise < 1 or self.fall < 1:
            raise ValueError("health rise and fall must be at least 1 (checks in a row)")
        if not 0 <= self.jitter < 1:
            raise ValueError("health jitter must be in [0, 1), e.g. 0.1 for 10 %")


@dataclass(slots=True)
class _Target:
    probe: Probe
    healthy: bool = True
    streak: int = 0  # consecutive results against the current state
    checks: int = 0
    failures: int = 0
    last_error: str = ""


class HealthChecker:
    """Probes named targets in the background; ``is_healthy(name)`` is read on every request."""

    def __init__(
        self,
        probes: Mapping[str, Probe],
        config: HealthConfig | None = None,
        *,
        on_change: Callable[[str, bool], None] | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or HealthConfig()
        self._targets = {name: _Target(probe) for name, probe in probes.items()}
        self._on_change = on_change
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self.rounds = 0
        self.last_round_at: float | None = None

    def is_healthy(self, name: str) -> bool:
        return self._targets[name].healthy

    async def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop(), name="blaze-health-checker")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _loop(self) -> None:
        cfg = self.config
        await self._sleep(self._rng.uniform(0, cfg.interval_s))  # spread checkers that start together
        while True:
            try:
                await self.check_once()
            except Exception:  # a bug here must not stop health checking
                log.exception("health check round failed")
            await self._sleep(cfg.interval_s * (1 + self._rng.uniform(-cfg.jitter, cfg.jitter)))

    async def check_once(self) -> None:
        """Probe every target once, concurrently, and apply the rise/fall rules."""
        names = list(self._targets)
        results = await asyncio.gather(*(self._run_probe(name) for name in names))
        for name, (ok, error) in zip(names, results, strict=True):
            self._apply(name, ok, error)
        self.rounds += 1
        self.last_round_at = self._clock()

    async def _run_probe(self, name: str) -> tuple[bool, str]:
        try:
            async with asyncio.timeout(self.config.timeout_s):
                ok = bool(await self._targets[name].probe())
        except TimeoutError:
            return False, f"probe timed out after {self.config.timeout_s}s"
        except Exception as exc:
            return False, f"{type(exc).__name__}: {exc}"
        return ok, "" if ok else "probe answered not ready"

    def _apply(self, name: str, ok: bool, error: str) -> None:
        target = self._targets[name]
        target.checks += 1
        if not ok:
            target.failures += 1
            target.last_error = error
        if ok == target.healthy:
            target.streak = 0
            return
        target.streak += 1
        needed = self.config.rise if ok else self.config.fall
        if target.streak < needed:
            return
        if not ok and sum(t.healthy for t in self._targets.values()) == 1:
            return  # never eject the last healthy target
        target.healthy, target.streak = ok, 0
        log.warning("replica %s is now %s", name, "healthy" if ok else f"unhealthy ({error})")
        if self._on_change is not None:
            self._on_change(name, ok)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {
            name: {
                "healthy": t.healthy,
                "checks": t.checks,
                "failures": t.failures,
                "streak": t.streak,
                "last_error": t.last_error,
            }
            for name, t in self._targets.items()
        }

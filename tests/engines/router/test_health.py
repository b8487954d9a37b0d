"""The health checker: rise/fall thresholds, timeouts, jitter, and a loop nothing can kill."""

from __future__ import annotations

import asyncio
import random

import pytest

from blaze_ai.engines.router import HealthChecker, HealthConfig


class ScriptedProbe:
    """Answers from a script: True, False, an exception to raise, or "hang"."""

    def __init__(self, *answers: object) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def __call__(self) -> bool:
        self.calls += 1
        answer = self.answers.pop(0) if self.answers else True
        if answer == "hang":
            await asyncio.Event().wait()
        if isinstance(answer, BaseException):
            raise answer
        return bool(answer)


async def always_ok() -> bool:
    return True


async def test_unhealthy_after_three_failures_and_healthy_after_two_successes() -> None:
    changes: list[tuple[str, bool]] = []
    probe = ScriptedProbe(False, False, False, True, True)
    checker = HealthChecker({"a": probe, "b": always_ok}, on_change=lambda n, h: changes.append((n, h)))
    for expected in (True, True, False, False, True):
        await checker.check_once()
        assert checker.is_healthy("a") is expected
    assert changes == [("a", False), ("a", True)]
    assert checker.snapshot()["a"]["failures"] == 3


async def test_a_success_resets_the_failure_streak() -> None:
    probe = ScriptedProbe(False, False, True, False, False)
    checker = HealthChecker({"a": probe, "b": always_ok})
    for _ in range(5):
        await checker.check_once()
    assert checker.is_healthy("a")


async def test_raising_and_hanging_probes_count_as_failures() -> None:
    probe = ScriptedProbe(RuntimeError("boom"), "hang", ConnectionError("refused"))
    checker = HealthChecker({"a": probe, "b": always_ok}, HealthConfig(timeout_s=0.01))
    for _ in range(3):
        await checker.check_once()
    assert not checker.is_healthy("a")
    assert "ConnectionError" in checker.snapshot()["a"]["last_error"]


async def test_the_last_healthy_target_is_never_ejected() -> None:
    checker = HealthChecker({"a": ScriptedProbe(*[False] * 10), "b": ScriptedProbe(*[False] * 10)})
    for _ in range(10):
        await checker.check_once()
    assert [checker.is_healthy("a"), checker.is_healthy("b")].count(True) == 1


async def test_loop_survives_probe_errors_and_sleeps_with_jitter() -> None:
    sleeps: list[float] = []
    enough = asyncio.Event()

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) >= 20:
            enough.set()
        await asyncio.sleep(0)

    probe = ScriptedProbe(*[ValueError("bad")] * 30)
    config = HealthConfig(interval_s=5.0, jitter=0.1)
    checker = HealthChecker({"a": probe, "b": always_ok}, config, sleep=fake_sleep, rng=random.Random(7))
    await checker.start()
    await asyncio.wait_for(enough.wait(), timeout=10)
    await checker.stop()
    assert 0 <= sleeps[0] <= 5.0  # random first offset
    assert all(4.5 <= s <= 5.5 for s in sleeps[1:])
    assert len(set(sleeps[1:])) > 1  # jittered, not fixed
    assert probe.calls >= 19 and checker.rounds >= 19
    assert not checker.is_healthy("a")


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="rise and fall"):
        HealthConfig(rise=0)
    with pytest.raises(ValueError, match="jitter"):
        HealthConfig(jitter=1.5)

"""The dashboard's ring of recent samples, with a fake clock."""

from __future__ import annotations

import pytest

from blaze_ai.observability import readings
from blaze_ai.observability.timeline import Timeline


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_series_folds_seconds_into_steps() -> None:
    clock = Clock()
    timeline = Timeline(keep_s=60, clock=clock)
    for latency in (0.010, 0.020, 0.030, 0.040):
        timeline.add_request(latency, 200, tokens=5)
    clock.now += 1
    timeline.add_request(0.5, 503, tokens=0)
    s = timeline.series(window_s=20, step_s=10)
    assert len(s["t"]) == 2
    assert s["rps"] == [0.0, 0.5]  # five requests in the last 10-second step
    assert s["errors_per_s"] == [0.0, 0.1]
    assert s["tokens_per_s"] == [0.0, 2.0]
    assert s["p50_ms"] == [None, 30.0]
    assert s["p95_ms"] == [None, 500.0]


def test_old_seconds_fall_out_of_the_window() -> None:
    clock = Clock()
    timeline = Timeline(keep_s=60, clock=clock)
    timeline.add_request(0.1, 200, tokens=1)
    clock.now += 100
    assert sum(timeline.series(window_s=60, step_s=5)["rps"]) == 0


def test_cache_hit_ratio_is_per_step() -> None:
    clock = Clock()
    timeline = Timeline(keep_s=60, clock=clock)
    assert timeline.needs_sample()
    timeline.sample({"queue": 2, "in_flight": 1, "cache_hits": 10, "cache_misses": 10})
    assert not timeline.needs_sample()  # one sample per second is enough
    clock.now += 5
    assert timeline.needs_sample()
    timeline.sample({"queue": 0, "in_flight": 0, "cache_hits": 13, "cache_misses": 11})
    s = timeline.series(window_s=10, step_s=5)
    assert s["queue"] == [2, 0]
    assert s["cache_hit_ratio"] == [None, 0.75]  # 3 hits out of 4 lookups since the last sample


def test_keep_must_be_reasonable() -> None:
    with pytest.raises(ValueError, match="keep_s"):
        Timeline(keep_s=1)


def test_readings_understand_each_engine_shape() -> None:
    llm = {"waiting": 3, "running": 2, "batch_size": 2, "tokens_per_s": 41.5}
    diffusion = {"batcher": {"queued": 4, "running": 1, "items": 10, "mean_queue_wait_s": 0.2,
                             "batch_size_histogram": {1: 2, 4: 2}, "last_batch_size": 4}}  # fmt: skip
    embedding = {"batch_queued": 5, "batch_running": 0, "batch_items": 4, "batch_mean_queue_wait_s": 0.5}
    assert readings.queue_length(llm) == 3 and readings.running(llm) == 2 and readings.batch_size(llm) == 2
    assert readings.queue_length(diffusion) == 4 and readings.batch_size(diffusion) == 4
    assert readings.queue_wait(diffusion) == pytest.approx((10, 2.0))
    assert readings.batch_histogram(diffusion) == {1: 2, 4: 2}
    assert readings.queue_length(embedding) == 5 and readings.queue_wait(embedding) == (4, 2.0)
    assert readings.queue_length({"tokens": 3}) == 0 and readings.batch_histogram({}) is None
    assert readings.number(True) is None and readings.hit_ratio(0, 0) is None

"""A small in-memory ring of recent traffic for the dashboard's charts.

The middleware adds each API request to a one-second bucket; gauges (queue
depth, in flight, cache hits and misses) are sampled at most once a second,
when requests end and when the dashboard asks. :meth:`Timeline.series`
folds the buckets into fixed steps for the charts. No background task: the
ring costs nothing while idle.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

LATENCIES_PER_BUCKET = 200  # enough for a p95 per second; more would only cost memory


@dataclass
class _Bucket:
    second: int
    requests: int = 0
    errors: int = 0
    tokens: int = 0
    latencies: list[float] = field(default_factory=list)
    gauges: dict[str, float] = field(default_factory=dict)


class Timeline:
    """Per-second buckets of requests, errors, latency, tokens and sampled gauges."""

    def __init__(self, keep_s: int = 600, *, clock: Callable[[], float] = time.monotonic) -> None:
        if keep_s < 10:
            raise ValueError("keep_s must be at least 10 seconds")
        self._clock = clock
        self._wall_offset = time.time() - clock()
        self._buckets: deque[_Bucket] = deque(maxlen=keep_s)

    def _bucket(self) -> _Bucket:
        second = int(self._clock())
        if not self._buckets or self._buckets[-1].second != second:
            self._buckets.append(_Bucket(second))
        return self._buckets[-1]

    def add_request(self, seconds: float, status: int, tokens: int) -> None:
        """Count one finished API request."""
        bucket = self._bucket()
        bucket.requests += 1
        bucket.errors += status >= 500
        bucket.tokens += tokens
        if len(bucket.latencies) < LATENCIES_PER_BUCKET:
            bucket.latencies.append(seconds)

    def needs_sample(self) -> bool:
        """True when the current second has no gauge sample yet."""
        return (
            not self._buckets
            or self._buckets[-1].second != int(self._clock())
            or not self._buckets[-1].gauges
        )

    def sample(self, gauges: dict[str, float]) -> None:
        """Record gauge readings for the current second."""
        self._bucket().gauges.update(gauges)

    def series(self, window_s: int = 300, step_s: int = 5) -> dict[str, list[Any]]:
        """Charts' data: one point per ``step_s`` over the last ``window_s`` seconds."""
        now = int(self._clock())
        first = now - window_s + 1
        steps = math.ceil(window_s / step_s)
        groups: list[list[_Bucket]] = [[] for _ in range(steps)]
        for bucket in self._buckets:
            if bucket.second >= first:
                groups[min((bucket.second - first) // step_s, steps - 1)].append(bucket)
        out: dict[str, list[Any]] = {
            k: [] for k in ("t", "rps", "errors_per_s", "p50_ms", "p95_ms", "tokens_per_s")
        }
        out.update(queue=[], in_flight=[], cache_hit_ratio=[])
        previous: dict[str, float] = {}
        for index, group in enumerate(groups):
            out["t"].append(round(self._wall_offset + first + (index + 1) * step_s - 1, 3))
            previous = _fold(out, group, step_s, previous)
        return out


def _fold(
    out: dict[str, list[Any]], group: list[_Bucket], step_s: int, previous: dict[str, float]
) -> dict[str, float]:
    """Append one step's points; returns the last gauge sample (the next step's baseline)."""
    latencies = sorted(x for b in group for x in b.latencies)
    out["rps"].append(round(sum(b.requests for b in group) / step_s, 3))
    out["errors_per_s"].append(round(sum(b.errors for b in group) / step_s, 3))
    out["tokens_per_s"].append(round(sum(b.tokens for b in group) / step_s, 3))
    out["p50_ms"].append(_percentile(latencies, 0.50))
    out["p95_ms"].append(_percentile(latencies, 0.95))
    sampled = [b.gauges for b in group if b.gauges]
    out["queue"].append(max((g.get("queue", 0.0) for g in sampled), default=None))
    out["in_flight"].append(max((g.get("in_flight", 0.0) for g in sampled), default=None))
    last = sampled[-1] if sampled else previous
    base = previous or (sampled[0] if sampled else {})
    out["cache_hit_ratio"].append(_ratio(base, last))
    return last


def _ratio(base: dict[str, float], last: dict[str, float]) -> float | None:
    """Hit ratio of the lookups made between two samples of the cumulative counters."""
    keys = ("cache_hits", "cache_misses")
    if not all(k in base and k in last for k in keys):
        return None
    hits = last["cache_hits"] - base["cache_hits"]
    looked = hits + last["cache_misses"] - base["cache_misses"]
    return round(hits / looked, 4) if looked > 0 else None


def _percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile in milliseconds; None for an empty step."""
    if not sorted_values:
        return None
    rank = max(0, math.ceil(q * len(sorted_values)) - 1)
    return round(sorted_values[rank] * 1000, 3)

"""Read the numbers metrics and the dashboard need out of plain engine, router and cache stats.

Engines report their own shapes (see each engine's ``stats()``): the LLM engine
has ``waiting`` / ``running`` / ``batch_size`` / ``tokens_per_s``; engines built
on :class:`~blaze_ai.batching.DynamicBatcher` nest its numbers under
``batcher`` (diffusion) or flatten them with a ``batch_`` prefix (embeddings).
These helpers hide the difference and never raise on a missing or odd value.
"""

from __future__ import annotations

from typing import Any


def number(value: Any) -> float | None:
    """``value`` as a float when it is a real number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def batcher(stats: dict[str, Any]) -> dict[str, Any] | None:
    """The engine's DynamicBatcher stats, nested or ``batch_``-prefixed; None when it has none."""
    nested = stats.get("batcher")
    if isinstance(nested, dict) and nested:
        return nested
    if "batch_queued" in stats:
        return {key[len("batch_") :]: value for key, value in stats.items() if key.startswith("batch_")}
    return None


def queue_length(stats: dict[str, Any]) -> float:
    """Requests waiting to be scheduled (LLM ``waiting`` or the batcher's ``queued``)."""
    waiting = number(stats.get("waiting"))
    if waiting is not None:
        return waiting
    b = batcher(stats)
    return (number(b.get("queued")) or 0.0) if b else 0.0


def running(stats: dict[str, Any]) -> float | None:
    """Requests (or batch items) being computed now, when the engine says."""
    value = number(stats.get("running"))
    if value is not None:
        return value
    b = batcher(stats)
    return number(b.get("running")) if b else None


def queue_wait(stats: dict[str, Any]) -> tuple[float, float] | None:
    """(items, total seconds waited) from the batcher, for a count/sum summary."""
    b = batcher(stats)
    if not b:
        return None
    items, mean = number(b.get("items")), number(b.get("mean_queue_wait_s"))
    if items is None or mean is None:
        return None
    return items, items * mean


def batch_histogram(stats: dict[str, Any]) -> dict[int, int] | None:
    """Batch size -> number of batches of that size, from the batcher."""
    b = batcher(stats)
    raw = b.get("batch_size_histogram") if b else None
    if not isinstance(raw, dict):
        return None
    out: dict[int, int] = {}
    for size, count in raw.items():
        try:
            out[int(size)] = int(count)
        except (TypeError, ValueError):
            continue
    return out


def batch_size(stats: dict[str, Any]) -> float | None:
    """The size of the last batch or step (LLM ``batch_size``, batcher ``last_batch_size``)."""
    value = number(stats.get("batch_size"))
    if value is not None:
        return value
    b = batcher(stats)
    return number(b.get("last_batch_size")) if b else None


def tokens_per_s(stats: dict[str, Any]) -> float:
    """Generated tokens per second as the engine measures it (0 when it does not)."""
    return number(stats.get("tokens_per_s")) or 0.0


def hit_ratio(hits: float, misses: float) -> float | None:
    """hits / (hits + misses), None before any lookup."""
    total = hits + misses
    return hits / total if total > 0 else None


def current_gauges(state: Any) -> dict[str, float]:
    """Totals sampled for the dashboard: queue depth, in flight, cache hits and misses."""
    gauges = {"queue": 0.0, "in_flight": 0.0}
    manager = getattr(state, "manager", None)
    if manager is not None:
        for snap in manager.snapshot().values():
            gauges["queue"] += queue_length(snap.get("stats") or {})
            gauges["in_flight"] += number(snap.get("in_flight")) or 0.0
    cache = getattr(state, "response_cache", None)
    if cache is not None:
        stats = cache.stats()
        gauges["cache_hits"] = number(stats.get("hits")) or 0.0
        gauges["cache_misses"] = number(stats.get("misses")) or 0.0
    return gauges

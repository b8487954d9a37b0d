"""Prometheus metrics: the one module of Blaze AI that imports ``prometheus_client``.

Two sources feed one :class:`CollectorRegistry` per app (never the global
one, so a process, or a test, can build many apps):

- request-level metrics, recorded as requests pass by
  (:class:`RequestMetrics`, driven by :mod:`blaze_ai.observability.middleware`);
- engine, breaker, router, response cache and model cache numbers, read at
  scrape time from their plain ``snapshot()`` / ``stats()`` dicts by
  :class:`SnapshotCollector` (engines never import prometheus_client).

Every name starts with ``blaze_``; counters end in ``_total``, times are in
seconds and sizes in bytes. The full list is in ``docs/observability.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)

from blaze_ai.engines.base import EngineStatus
from blaze_ai.engines.breaker import BreakerState
from blaze_ai.observability import readings

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
TPOT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class RequestMetrics:
    """Counters and histograms recorded per request by the ASGI middleware."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(name: str, doc: str, labels: tuple[str, ...]) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        self.requests = counter(
            "blaze_requests_total", "HTTP requests by route, method, model and status.",
            ("route", "method", "model", "status"),
        )  # fmt: skip
        self.duration = Histogram(
            "blaze_request_duration_seconds", "End-to-end request latency (to the last body byte).",
            ("route", "model"), buckets=LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip
        self.ttft = Histogram(
            "blaze_time_to_first_token_seconds", "Streams: request start to the first chunk with a token.",
            ("model",), buckets=TTFT_BUCKETS, registry=registry,
        )  # fmt: skip
        self.tpot = Histogram(
            "blaze_time_per_output_token_seconds", "Streams: time between output tokens after the first.",
            ("model",), buckets=TPOT_BUCKETS, registry=registry,
        )  # fmt: skip
        self.prompt_tokens = counter("blaze_prompt_tokens_total", "Prompt tokens (from usage).", ("model",))
        self.generated_tokens = counter(
            "blaze_generation_tokens_total",
            "Generated tokens (usage, or token chunks of a stream).",
            ("model",),
        )
        self.in_flight = Gauge(
            "blaze_http_requests_in_flight", "HTTP requests being served.", registry=registry
        )
        self.loads = counter("blaze_model_loads_total", "Models loaded through the admin API.", ("model",))
        self.unloads = counter(
            "blaze_model_unloads_total", "Models unloaded through the admin API.", ("model",)
        )

    def observe_request(self, route: str, method: str, model: str, status: str, seconds: float) -> None:
        self.requests.labels(route, method, model, status).inc()
        self.duration.labels(route, model).observe(seconds)

    def observe_tokens(self, model: str, prompt: int, generated: int) -> None:
        if prompt:
            self.prompt_tokens.labels(model).inc(prompt)
        if generated:
            self.generated_tokens.labels(model).inc(generated)

    def observe_first_token(self, model: str, seconds: float) -> None:
        self.ttft.labels(model).observe(seconds)

    def observe_token_gap(self, model: str, seconds: float, tokens: int) -> None:
        """A chunk of ``tokens`` tokens arrived ``seconds`` after the previous one."""
        if tokens > 0:
            histogram = self.tpot.labels(model)
            for _ in range(tokens):
                histogram.observe(seconds / tokens)


class _Families:
    """Metric families built during one scrape, created on first use."""

    def __init__(self) -> None:
        self._families: dict[str, Metric] = {}

    def _get(self, make: Callable[..., Metric], name: str, doc: str, labels: tuple[str, ...]) -> Any:
        family = self._families.get(name)
        if family is None:
            family = self._families[name] = make(name, doc, labels=list(labels))
        return family

    def gauge(self, name: str, doc: str, labels: dict[str, str], value: float | None) -> None:
        if value is not None:
            self._get(GaugeMetricFamily, name, doc, tuple(labels)).add_metric(list(labels.values()), value)

    def counter(self, name: str, doc: str, labels: dict[str, str], value: float | None) -> None:
        if value is not None:
            self._get(CounterMetricFamily, name, doc, tuple(labels)).add_metric(list(labels.values()), value)

    def summary(self, name: str, doc: str, labels: dict[str, str], count: float, total: float) -> None:
        family = self._get(SummaryMetricFamily, name, doc, tuple(labels))
        family.add_metric(list(labels.values()), count_value=count, sum_value=total)

    def histogram(self, name: str, doc: str, labels: dict[str, str], sizes: dict[int, int]) -> None:
        buckets, total = [], 0
        for bound in BATCH_BUCKETS:
            buckets.append((str(float(bound)), sum(c for s, c in sizes.items() if s <= bound)))
        buckets.append(("+Inf", sum(sizes.values())))
        total = sum(s * c for s, c in sizes.items())
        family = self._get(HistogramMetricFamily, name, doc, tuple(labels))
        family.add_metric(list(labels.values()), buckets, total)

    def all(self) -> list[Metric]:
        return list(self._families.values())


class SnapshotCollector:
    """Reads engines, routers and caches from ``app.state`` at scrape time."""

    def __init__(self, state: Any) -> None:
        self._state = state

    def describe(self) -> list[Metric]:
        return []  # names vary with what is loaded; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        out = _Families()
        sections: list[Callable[[_Families], None]] = [
            self._engines, self._routers, self._response_cache, self._model_cache,
        ]  # fmt: skip
        for section in sections:
            try:
                section(out)
            except Exception:  # a broken snapshot must not break the whole scrape
                log.exception("metrics: %s failed", section.__name__)
        yield from out.all()

    def _engines(self, out: _Families) -> None:
        manager = getattr(self._state, "manager", None)
        if manager is None:
            return
        for name, snap in manager.snapshot().items():
            e = {"engine": name}
            for status in EngineStatus:
                out.gauge(
                    "blaze_engine_status", "1 for the engine's current status, 0 for the others.",
                    {**e, "kind": str(snap.get("kind", "")), "status": status.value},
                    1.0 if snap.get("status") == status.value else 0.0,
                )  # fmt: skip
            out.gauge("blaze_engine_in_flight", "Requests inside the engine.", e, snap.get("in_flight"))
            out.counter("blaze_engine_restarts_total", "Automatic restarts.", e, snap.get("restarts"))
            _breaker(out, "blaze_breaker", e, snap.get("breaker") or {})
            _engine_stats(out, e, snap.get("stats") or {})

    def _routers(self, out: _Families) -> None:
        routers = getattr(self._state, "routers", None) or {}
        for model, router in routers.items():
            stats = router.stats()
            m = {"model": model}
            out.counter("blaze_router_requests_total", "Requests routed.", m, stats.get("requests"))
            out.counter("blaze_router_retries_total", "Retries on another replica.", m, stats.get("retries"))
            out.counter("blaze_router_rejected_total", "No eligible replica.", m, stats.get("rejected"))
            for replica, r in (stats.get("replicas") or {}).items():
                _replica(out, {"model": model, "replica": replica}, r)

    def _response_cache(self, out: _Families) -> None:
        cache = getattr(self._state, "response_cache", None)
        if cache is None:
            return
        s = cache.stats()
        for key in ("hits", "misses", "errors", "bypasses", "shared", "stores"):
            out.counter(f"blaze_cache_{key}_total", f"Response cache {key}.", {}, readings.number(s.get(key)))
        written = readings.number(s.get("bytes_stored"))
        out.counter("blaze_cache_written_bytes_total", "Bytes written to the cache.", {}, written)
        out.gauge(
            "blaze_cache_bytes", "Bytes held by the backend.", {}, readings.number(s.get("backend_bytes"))
        )
        entries = readings.number(s.get("backend_entries"))
        out.gauge("blaze_cache_entries", "Entries held by the backend.", {}, entries)

    def _model_cache(self, out: _Families) -> None:
        cache = getattr(self._state, "model_cache", None)
        if cache is None:
            return
        s = cache.stats()
        n = readings.number
        out.gauge("blaze_model_memory_bytes", "Memory used by loaded models.", {}, n(s.get("bytes_loaded")))
        out.gauge("blaze_model_memory_budget_bytes", "Model memory budget.", {}, n(s.get("budget_bytes")))
        out.gauge("blaze_model_memory_pinned_bytes", "Memory of models in use.", {}, n(s.get("bytes_pinned")))
        out.gauge("blaze_model_cache_models", "Models held by the model cache.", {}, n(s.get("models")))
        out.counter("blaze_model_cache_loads_total", "Model loads into memory.", {}, n(s.get("loads")))
        out.counter(
            "blaze_model_cache_evictions_total", "Models unloaded to free memory.", {}, n(s.get("evictions"))
        )
        failures = n(s.get("load_failures"))
        out.counter("blaze_model_cache_load_failures_total", "Model loads that failed.", {}, failures)


def _breaker(out: _Families, prefix: str, labels: dict[str, str], snap: dict[str, Any]) -> None:
    for state in BreakerState:
        current = 1.0 if snap.get("state") == state.value else 0.0
        out.gauge(
            f"{prefix}_state", "1 for the breaker's current state.", {**labels, "state": state.value}, current
        )
    n = readings.number
    out.counter(f"{prefix}_trips_total", "Times the breaker opened.", labels, n(snap.get("trips")))
    out.counter(f"{prefix}_rejections_total", "Calls refused while open.", labels, n(snap.get("rejections")))
    out.counter(f"{prefix}_failures_total", "Counted failures.", labels, n(snap.get("failures")))


def _engine_stats(out: _Families, e: dict[str, str], stats: dict[str, Any]) -> None:
    n = readings.number
    out.gauge(
        "blaze_queue_length", "Requests waiting in the engine's queue.", e, readings.queue_length(stats)
    )
    out.gauge("blaze_engine_running", "Requests being computed.", e, readings.running(stats))
    out.gauge("blaze_engine_batch_size", "Size of the last batch or step.", e, readings.batch_size(stats))
    out.gauge(
        "blaze_engine_tokens_per_second",
        "Generated tokens/s (engine-measured).",
        e,
        n(stats.get("tokens_per_s")),
    )
    out.gauge("blaze_engine_memory_bytes", "Memory of the engine's model.", e, n(stats.get("memory_bytes")))
    out.counter("blaze_engine_steps_total", "Engine steps.", e, n(stats.get("steps")))
    out.counter(
        "blaze_engine_generated_tokens_total",
        "Tokens generated (engine count).",
        e,
        n(stats.get("generated_tokens")),
    )
    out.counter(
        "blaze_engine_prompt_tokens_total", "Prompt tokens (engine count).", e, n(stats.get("prompt_tokens"))
    )
    wait = readings.queue_wait(stats)
    if wait is not None:
        out.summary("blaze_queue_time_seconds", "Time items waited in the batch queue.", e, *wait)
    sizes = readings.batch_histogram(stats)
    if sizes is not None:
        out.histogram("blaze_batch_size", "Items per executed batch.", e, sizes)


def _replica(out: _Families, r: dict[str, str], s: dict[str, Any]) -> None:
    n = readings.number
    healthy = 1.0 if s.get("healthy") else 0.0
    out.gauge("blaze_replica_healthy", "1 when the replica passes health checks.", r, healthy)
    out.gauge("blaze_replica_traffic_share", "Share of the model's picks (0..1).", r, n(s.get("share")))
    out.gauge("blaze_replica_in_flight", "Requests on the replica.", r, n(s.get("in_flight")))
    ewma = n(s.get("latency_ewma_ms"))
    out.gauge(
        "blaze_replica_latency_ewma_seconds", "Peak EWMA latency.", r, None if ewma is None else ewma / 1000
    )
    out.counter("blaze_replica_picks_total", "Times the router picked the replica.", r, n(s.get("picks")))
    out.counter("blaze_replica_errors_total", "Failed calls on the replica.", r, n(s.get("errors")))
    _breaker(out, "blaze_replica_breaker", r, s.get("breaker") or {"state": s.get("breaker_state")})


class Metrics:
    """One app's registry: request metrics plus the scrape-time collector."""

    def __init__(self, state: Any) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = RequestMetrics(self.registry)
        self.registry.register(SnapshotCollector(state))

    def render(self) -> bytes:
        """The Prometheus text exposition of everything."""
        data: bytes = generate_latest(self.registry)
        return data

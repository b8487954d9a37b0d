"""The monitoring dashboard: ``GET /dashboard`` (one static page) and ``GET /dashboard/data`` (JSON).

The page (``dashboard.html`` next to this module: vanilla JS and inline SVG,
no build step, nothing fetched from the internet) polls ``/dashboard/data``
every few seconds. The data is built from the same snapshots ``/metrics``
reads, plus the :class:`~blaze_ai.observability.timeline.Timeline` of recent
traffic. Operator actions on the page call the existing admin routes
(``/admin/engines/{name}/drain|restart``, ``POST /admin/models``,
``DELETE /admin/models/{name}``). When API keys are configured,
``/dashboard/data`` needs an admin key, like the admin routes; the page asks
for it and sends it as ``Authorization: Bearer``.
"""

from __future__ import annotations

import time
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

import blaze_ai
from blaze_ai.observability import readings
from blaze_ai.observability.timeline import Timeline
from blaze_ai.server.auth import require_admin_key

PAGE = Path(__file__).with_name("dashboard.html")
RECENT_EVENTS = 40
RECENT_ERRORS = 20

router = APIRouter(include_in_schema=False)


@cache
def _page() -> str:
    return PAGE.read_text(encoding="utf-8")


@router.get("/dashboard", response_class=HTMLResponse)
async def dashboard() -> HTMLResponse:
    return HTMLResponse(_page(), headers={"Cache-Control": "no-cache"})


@router.get("/dashboard/data", dependencies=[Depends(require_admin_key)])
async def data(request: Request, window_s: int = 300, step_s: int = 5) -> dict[str, Any]:
    window_s, step_s = min(max(window_s, 30), 600), min(max(step_s, 1), 60)
    state = request.app.state
    timeline: Timeline = state.observability.timeline
    return dashboard_data(state, timeline, window_s, step_s)


def dashboard_data(state: Any, timeline: Timeline, window_s: int = 300, step_s: int = 5) -> dict[str, Any]:
    """Everything the page shows, as plain JSON."""
    manager = state.manager
    snapshot = manager.snapshot()
    if timeline.needs_sample():
        timeline.sample(readings.current_gauges(state))
    return {
        "time": time.time(),
        "version": blaze_ai.__version__,
        "ready": manager.is_ready,
        "draining": bool(getattr(state, "draining", False) or manager.draining),
        "engines": [_engine(name, snap) for name, snap in snapshot.items()],
        "routers": _routers(state),
        "cache": _cache(state),
        "model_cache": _model_cache(state),
        "errors": _errors(snapshot),
        "events": list(reversed(manager.events(RECENT_EVENTS))),
        "series": timeline.series(window_s, step_s),
    }


def _engine(name: str, snap: dict[str, Any]) -> dict[str, Any]:
    stats = snap.get("stats") or {}
    breaker = snap.get("breaker") or {}
    return {
        "name": name,
        "kind": snap.get("kind"),
        "status": snap.get("status"),
        "breaker": breaker.get("state"),
        "trips": breaker.get("trips", 0),
        "retry_after_s": breaker.get("retry_after_s", 0),
        "in_flight": snap.get("in_flight", 0),
        "queue": readings.queue_length(stats),
        "batch_size": readings.batch_size(stats),
        "tokens_per_s": readings.tokens_per_s(stats),
        "restarts": snap.get("restarts", 0),
        "last_error": snap.get("last_error"),
    }


def _routers(state: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for model, router_ in (getattr(state, "routers", None) or {}).items():
        stats = router_.stats()
        replicas = [
            {
                "name": name,
                "healthy": bool(r.get("healthy")),
                "breaker": r.get("breaker_state"),
                "share": r.get("share", 0.0),
                "in_flight": r.get("in_flight", 0),
                "latency_ewma_ms": r.get("latency_ewma_ms"),
                "errors": r.get("errors", 0),
            }
            for name, r in (stats.get("replicas") or {}).items()
        ]
        out[model] = {
            "strategy": stats.get("strategy"),
            "requests": stats.get("requests"),
            "replicas": replicas,
        }
    return out


def _cache(state: Any) -> dict[str, Any] | None:
    cache_ = getattr(state, "response_cache", None)
    if cache_ is None:
        return None
    s = cache_.stats()
    hits, misses = readings.number(s.get("hits")) or 0.0, readings.number(s.get("misses")) or 0.0
    return {
        "hits": hits,
        "misses": misses,
        "errors": s.get("errors", 0),
        "hit_ratio": readings.hit_ratio(hits, misses),
    }


def _model_cache(state: Any) -> dict[str, Any] | None:
    cache_ = getattr(state, "model_cache", None)
    if cache_ is None:
        return None
    s = cache_.stats()
    keys = ("models", "bytes_loaded", "budget_bytes", "loads", "evictions")
    return {key: s.get(key) for key in keys}


def _errors(snapshot: dict[str, dict[str, Any]]) -> list[dict[str, str]]:
    errors = [
        {"engine": name, "message": str(message)}
        for name, snap in snapshot.items()
        for message in snap.get("recent_errors") or ()
    ]
    return errors[-RECENT_ERRORS:]

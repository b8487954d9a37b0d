"""Observability: Prometheus metrics, structured logs and the live dashboard.

``install_observability(app)`` adds, to an app built by ``create_app``:

- the request observer middleware (request metrics, logging request id, dashboard timeline);
- ``GET /metrics`` (Prometheus text format, a registry of the app's own);
- ``GET /dashboard`` and ``GET /dashboard/data``.

Call it before the app starts serving. Logging is set up separately, once per
process, with :func:`configure_logging` (``blaze serve`` does it from
``server.log_level`` and ``server.log_json``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Response
from starlette.middleware import Middleware

from blaze_ai.observability import readings
from blaze_ai.observability.logging import JsonFormatter, RequestIdFilter, configure_logging, request_id_var
from blaze_ai.observability.metrics import CONTENT_TYPE, Metrics
from blaze_ai.observability.middleware import ObservabilityMiddleware
from blaze_ai.observability.timeline import Timeline

__all__ = [
    "JsonFormatter",
    "Observability",
    "RequestIdFilter",
    "configure_logging",
    "install_observability",
    "request_id_var",
]


@dataclass(frozen=True, slots=True)
class Observability:
    """What ``install_observability`` put on ``app.state.observability``."""

    metrics: Metrics
    timeline: Timeline


def install_observability(app: FastAPI) -> None:
    """Add the observer middleware, ``/metrics``, ``/dashboard`` and ``/dashboard/data`` (idempotent)."""
    from blaze_ai.observability.dashboard import router as dashboard_router

    state = app.state
    if getattr(state, "observability", None) is not None:
        return
    if app.middleware_stack is not None:
        raise RuntimeError("call install_observability(app) before the app serves its first request")
    obs = Observability(Metrics(state), Timeline())
    state.observability = obs
    middleware = Middleware(
        ObservabilityMiddleware,
        metrics=obs.metrics.requests,
        timeline=obs.timeline,
        state=state,
        sample=lambda: readings.current_gauges(state),
    )
    app.user_middleware.insert(_inside_request_id(app), middleware)
    app.add_api_route("/metrics", _metrics_endpoint(obs), methods=["GET"], include_in_schema=False)
    app.include_router(dashboard_router)


def _inside_request_id(app: FastAPI) -> int:
    """The middleware slot just inside the gateway's RequestIdMiddleware (outermost when absent).

    ``app.user_middleware`` lists layers outermost first; sitting inside the
    request-id layer lets the observer read the id and see gate refusals.
    """
    from blaze_ai.server.middleware import RequestIdMiddleware

    for index, layer in enumerate(app.user_middleware):
        if getattr(layer, "cls", None) is RequestIdMiddleware:
            return index + 1
    return 0


def _metrics_endpoint(obs: Observability) -> Any:
    async def metrics() -> Response:
        return Response(obs.metrics.render(), media_type=CONTENT_TYPE)

    return metrics

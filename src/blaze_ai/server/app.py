"""The FastAPI application: ``create_app(config, manager)``.

Layers, outermost first: request id (and the catch-all 500), CORS (only when
``server.cors_origins`` is set), body limit (413), gate (503 while draining,
429 past ``server.max_concurrency``), then the routes. Route dependencies
check the API key (401/403) and the per-key rate limits (429).

``app.state`` holds: ``server_config``, ``manager``, ``dispatch`` (the seam to
the model; see :mod:`blaze_ai.server.dispatch`), ``keys``, ``limiter``,
``images`` (the image URL store), ``load_model`` (admin loader), ``draining``.
The lifespan starts the manager in the background (so ``/health/live`` answers
while models load and ``/health/ready`` says 503 until they are loaded) and
shuts it down, draining engines within ``server.drain_grace_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi

import blaze_ai
from blaze_ai.engines.manager import EngineManager
from blaze_ai.server.auth import KeySet, require_admin_key
from blaze_ai.server.dispatch import ManagerDispatch
from blaze_ai.server.errors import install_error_handlers
from blaze_ai.server.image_store import ImageStore
from blaze_ai.server.limits import BodyLimitMiddleware, GateMiddleware, RateLimiter, rate_limit
from blaze_ai.server.middleware import RequestIdMiddleware
from blaze_ai.server.routes import (
    admin,
    chat,
    completions,
    embeddings,
    health,
    images,
    models,
    responses,
    tokenize,
)

EXPOSED_HEADERS = [
    "x-request-id",
    "x-blaze-cache",
    "retry-after",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
]


def create_app(config: Any = None, manager: EngineManager | None = None) -> FastAPI:
    """Build the app for ``config`` (a ``BlazeConfig`` or a ``ServerConfig``).

    A ``BlazeConfig`` with no ``manager`` builds the whole system
    (:class:`blaze_ai.system.System`: engines, manager, a router per model, the
    model cache) and the response cache in front of it. With an explicit
    ``manager`` (tests, embedding), requests go straight to its engines.
    """
    from blaze_ai.cache import install_cache
    from blaze_ai.config import BlazeConfig, ServerConfig
    from blaze_ai.observability import install_observability
    from blaze_ai.system import System

    if config is None:
        config = ServerConfig()
    full = isinstance(config, BlazeConfig)
    server_config = config.server if full else config
    system = System(config) if full and manager is None else None
    app = FastAPI(
        title="Blaze AI",
        version=blaze_ai.__version__,
        description="OpenAI-compatible API for LLMs, image generation and embeddings.",
        lifespan=_lifespan,
    )
    state = app.state
    state.server_config = server_config
    state.system = system
    if system is not None:
        state.manager = system.manager
        state.dispatch = system
        state.routers = system.routers
        state.model_cache = system.model_cache
        state.load_model = lambda _manager, entry: system.load(entry)
        state.unload_model = system.unload
    else:
        state.manager = manager if manager is not None else EngineManager()
        state.dispatch = ManagerDispatch(state.manager)
        state.load_model = admin.load_from_config_entry
        state.unload_model = state.manager.unregister
    state.keys = KeySet(tuple(server_config.api_keys), tuple(server_config.admin_keys))
    state.limiter = RateLimiter(server_config.rate_limit_rpm, server_config.rate_limit_tpm)
    state.images = ImageStore(server_config.image_url_ttl_s)
    state.response_cache = None
    state.draining = False
    state.started_at = int(time.time())
    state.start_task = None

    install_error_handlers(app)
    v1 = [Depends(rate_limit)]
    for module in (models, chat, completions, responses, images, embeddings, tokenize):
        app.include_router(module.router, dependencies=v1)
    app.include_router(admin.router, dependencies=[Depends(require_admin_key)])
    app.include_router(health.router)
    _install_middleware(app, server_config)
    if full:
        install_cache(app, config.cache)  # sets state.response_cache
    install_observability(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, minus the 422 it adds: validation errors here are 400."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                operation.get("responses", {}).pop("422", None)
        for name in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(name, None)
        app.openapi_schema = schema
    return app.openapi_schema


def _install_middleware(app: FastAPI, server_config: Any) -> None:
    # add_middleware puts each new layer outside the previous ones: add innermost first.
    app.add_middleware(
        GateMiddleware,
        max_concurrency=server_config.max_concurrency,
        is_draining=lambda: bool(app.state.draining),
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=server_config.max_body_bytes)
    if server_config.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(server_config.cors_origins),
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "X-Request-Id", "X-Session-Id"],
            expose_headers=EXPOSED_HEADERS,
        )
    app.add_middleware(RequestIdMiddleware)


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    state = app.state
    runner = state.system or state.manager
    state.start_task = asyncio.create_task(runner.start(), name="blaze-start-engines")
    try:
        yield
    finally:
        state.draining = True
        if not state.start_task.done():
            state.start_task.cancel()
        with contextlib.suppress(BaseException):
            await state.start_task
        grace = state.server_config.drain_grace_s
        await (state.system.stop(grace) if state.system else state.manager.shutdown(grace))
        state.images.clear()

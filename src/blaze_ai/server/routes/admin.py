"""Admin routes: see engines and routers, load and unload models, drain or restart an engine.

All need an admin key when keys are configured (see ``blaze_ai.server.auth``).
Loading takes a model entry in the config file's shape::

    POST /admin/models  {"name": "tiny", "kind": "llm", "llm": {"source": "builtin:tiny-llama"}}
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request

from blaze_ai.engines.manager import EngineManager
from blaze_ai.errors import BadRequestError, ConfigError, NotFoundError
from blaze_ai.server.schemas import ERROR_RESPONSES

router = APIRouter(prefix="/admin", tags=["admin"], responses=ERROR_RESPONSES)

RECENT_EVENTS = 100


def _manager(request: Request) -> EngineManager:
    manager: EngineManager = request.app.state.manager
    return manager


@router.get("/engines", summary="Every engine: status, breaker, in flight, errors; recent events")
async def engines(request: Request) -> dict[str, Any]:
    manager = _manager(request)
    return {
        "ready": manager.is_ready,
        "draining": bool(request.app.state.draining or manager.draining),
        "engines": manager.snapshot(),
        "events": manager.events(RECENT_EVENTS),
    }


@router.get("/engines/{name}", summary="One engine's snapshot")
async def engine(name: str, request: Request) -> dict[str, Any]:
    manager = _manager(request)
    manager.get(name)  # 404 when unknown
    return manager.snapshot()[name]


@router.get("/routers", summary="Every model's router: strategy, retries, per-replica health and breaker")
async def routers(request: Request) -> dict[str, Any]:
    served = getattr(request.app.state, "routers", None) or {}
    return {model: model_router.stats() for model, model_router in served.items()}


@router.post("/engines/{name}/drain", summary="Stop admitting, finish in-flight work, stop the engine")
async def drain(name: str, request: Request) -> dict[str, Any]:
    clean = await _manager(request).drain(name)
    return {"engine": name, "drained": clean, "status": _manager(request).status(name).value}


@router.post("/engines/{name}/restart", summary="Restart an engine (also lifts a quarantine)")
async def restart(name: str, request: Request) -> dict[str, Any]:
    ready = await _manager(request).restart(name)
    return {"engine": name, "ready": ready, "status": _manager(request).status(name).value}


@router.post("/models", status_code=201, summary="Load a model from a config entry and start it")
async def load_model(request: Request, entry: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
    manager = _manager(request)
    name = entry.get("name")
    if isinstance(name, str) and name in manager.names():
        raise BadRequestError(f"a model named {name!r} is already loaded", param="name")
    loader = request.app.state.load_model
    try:
        name = await loader(manager, entry)
    except ConfigError as exc:
        raise BadRequestError(exc.message, param="model") from exc
    engines = [n for n in manager.names() if n == name or n.startswith(f"{name}#")]
    return {"model": name, "status": manager.status(engines[0]).value if engines else "remote"}


@router.delete("/models/{name}", summary="Drain, stop and forget a model")
async def unload_model(name: str, request: Request) -> dict[str, Any]:
    if name not in request.app.state.dispatch.models():
        raise NotFoundError(f"The model '{name}' does not exist", param="model")
    await request.app.state.unload_model(name)
    return {"model": name, "unloaded": True}


async def load_from_config_entry(manager: EngineManager, entry: dict[str, Any]) -> str:
    """Default model loader: parse one config entry, build its engine, register and start it."""
    from blaze_ai.config import engine_class, parse_config

    model = parse_config({"models": [entry]}, env={}).models[0]
    if model.replicas != 1 or model.remotes:
        raise ConfigError(
            "admin loading supports one local replica; put replicas and remotes in the config file"
        )
    engine = engine_class(model.kind)(model.engine)
    manager.register(model.name, engine, model.breaker)
    await manager.start_engine(model.name)
    return model.name

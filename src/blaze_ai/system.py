"""The running system built from a config: model cache, engines, manager and one router per model.

:class:`System` is what ``blaze serve`` runs and what the gateway dispatches to
(it has the ``execute`` / ``stream`` / ``models`` shape of
``blaze_ai.server.dispatch.Dispatch``). Each model gets a
:class:`~blaze_ai.engines.router.Router` over its replicas: in-process engines
run by the :class:`~blaze_ai.engines.manager.EngineManager`, remote servers by
URL, and Ray actors when the model asks for them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from blaze_ai.config import BlazeConfig, ModelConfig, engine_class, parse_config
from blaze_ai.engines.manager import EngineManager
from blaze_ai.engines.router import LocalReplica, RemoteReplica, Replica, Router, RouterConfig, RoutingContext
from blaze_ai.errors import BadRequestError, ConfigError, NotFoundError
from blaze_ai.memory import MIB, Budget, default_budget

log = logging.getLogger(__name__)


def engine_names(model: ModelConfig) -> list[str]:
    """The manager's names for a model's in-process replicas."""
    if model.replicas == 1:
        return [model.name]
    return [f"{model.name}#{i}" for i in range(model.replicas)]


def build_engine(model: ModelConfig, model_cache: Any | None) -> Any:
    """One engine for ``model`` (its kind's engine class on its config)."""
    return engine_class(model.kind)(model.engine, model_cache=model_cache)


def build_model_cache(config: BlazeConfig) -> Any | None:
    """The shared model cache, sized by ``server.model_memory_budget_mb`` (none for fakes only)."""
    if all(m.kind == "fake" for m in config.models):
        return None
    from blaze_ai.model_cache import ModelCache

    budget = model_budget(config)
    log.info("model memory budget: %s", budget.describe())
    return ModelCache(budget.bytes, budget_origin=budget.origin)


def model_budget(config: BlazeConfig) -> Budget:
    """``server.model_memory_budget_mb``, or when it is 0 the default for where the models load."""
    mb = config.server.model_memory_budget_mb
    if mb:
        return Budget(mb * MIB, f"server.model_memory_budget_mb={mb}")
    placed = [getattr(m.engine, "device", "cpu") for m in config.models if m.replicas and m.kind != "fake"]
    budget = default_budget(placed)
    return Budget(budget.bytes, f"server.model_memory_budget_mb=0: {budget.origin}")


def router_config(model: ModelConfig, trusted_proxies: tuple[str, ...]) -> RouterConfig:
    """The model's ``router:`` mapping as a RouterConfig (server's trusted proxies by default)."""
    options = dict(model.router)
    options.setdefault("trusted_proxies", trusted_proxies)
    options.setdefault("breaker", model.breaker)
    try:
        return RouterConfig(**options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"models[{model.name}].router: {exc}") from exc


def remote_replicas(model: ModelConfig) -> list[Replica]:
    """The model's ``remotes:`` entries as replicas speaking the OpenAI HTTP API."""
    replicas: list[Replica] = []
    for i, entry in enumerate(model.remotes):
        options = {k: v for k, v in entry.items() if k != "url"}
        options.setdefault("model", model.name)
        options.setdefault("name", f"{model.name}@remote{i}")
        try:
            replicas.append(RemoteReplica(entry["url"], **options))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"models[{model.name}].remotes[{i}]: {exc!r}") from exc
    return replicas


class System:
    """Everything ``blaze serve`` runs; see the module docstring."""

    def __init__(self, config: BlazeConfig, *, model_cache: Any | None = None) -> None:
        self.config = config
        self.model_cache = model_cache if model_cache is not None else build_model_cache(config)
        self.manager = EngineManager(config.manager)
        self.routers: dict[str, Router] = {}  # model -> its router (a live view for metrics and admin)
        self._kinds: dict[str, str] = {}
        self._engines: dict[str, list[str]] = {}  # model -> its in-process engines' names
        for model in config.models:
            self._add(model)

    # -- dispatch (the gateway's seam) ----------------------------------------------
    async def execute(self, model: str, request: Any, ctx: Any = None) -> Any:
        router = self._router(model)
        return await router.execute(request, routing_context(ctx, router.config.session_header))

    def stream(self, model: str, request: Any, ctx: Any = None) -> AsyncIterator[Any]:
        router = self._router(model)
        return router.stream(request, routing_context(ctx, router.config.session_header))

    def models(self) -> dict[str, str]:
        return dict(self._kinds)

    def _router(self, model: str) -> Router:
        try:
            return self.routers[model]
        except KeyError:
            raise NotFoundError(f"The model '{model}' does not exist", param="model") from None

    @property
    def is_ready(self) -> bool:
        """Local engines past their first load (see ``EngineManager.is_ready``) and a replica to send to.

        A router-only server (every model on remotes or Ray) is ready once a replica is eligible.
        """
        if self.manager.draining or not self.routers:
            return False
        if self.manager.names() and not self.manager.is_ready:
            return False
        return any(router.eligible() for router in self.routers.values())

    # -- lifecycle ------------------------------------------------------------------
    async def start(self) -> None:
        """Start every engine (one at a time: loading is memory-heavy) and every router."""
        await self.manager.start()
        await asyncio.gather(*(router.start() for router in self.routers.values()))

    async def stop(self, grace_s: float | None = None) -> bool:
        """Drain in-flight work within ``grace_s``, then stop routers and engines."""
        clean = await self.manager.shutdown(grace_s)
        await asyncio.gather(*(router.stop() for router in self.routers.values()))
        return clean

    async def load(self, entry: Mapping[str, Any]) -> str:
        """Load a model at run time from a config entry (the config file's shape)."""
        try:
            model = parse_config({"models": [dict(entry)]}, env={}).models[0]
        except ConfigError as exc:
            raise BadRequestError(exc.message, param="model") from exc
        if model.name in self.routers:
            raise BadRequestError(f"a model named {model.name!r} is already loaded", param="name")
        router = self._add(model)
        for name in self._engines[model.name]:
            await self.manager.start_engine(name)
        await router.start()
        return model.name

    async def unload(self, name: str) -> None:
        """Drain and stop a model's engines and router, and forget it."""
        self._router(name)  # 404 when unknown
        router = self.routers.pop(name)
        del self._kinds[name]
        await router.stop()
        for engine in self._engines.pop(name):
            await self.manager.unregister(engine)

    def _add(self, model: ModelConfig) -> Router:
        names = engine_names(model) if model.replicas else []
        replicas: list[Replica] = []
        for engine in names:
            self.manager.register(engine, build_engine(model, self.model_cache), model.breaker)
            replicas.append(LocalReplica.from_manager(self.manager, engine))
        replicas += remote_replicas(model)
        replicas += ray_replicas(model)
        router = Router(replicas, router_config(model, self.config.server.trusted_proxies))
        self.routers[model.name] = router
        self._kinds[model.name] = model.kind
        self._engines[model.name] = names
        return router


def ray_replicas(model: ModelConfig) -> list[Replica]:
    """Replicas on a Ray cluster when the model asks for them (imports Ray only then)."""
    if model.ray is None:
        return []
    from blaze_ai.distributed import build_ray_replicas

    return list(build_ray_replicas(model.name, model.kind, model.engine, model.ray))


def routing_context(ctx: Any, session_header: str = "x-session-id") -> RoutingContext | None:
    """The router's view of the gateway's request context (None outside HTTP).

    The session id comes from the router's ``session_header`` when the request has it, else
    from the gateway's (``X-Session-Id``, then the body's ``user``).
    """
    if ctx is None:
        return None
    forwarded = tuple(h.strip() for h in (ctx.forwarded_for or "").split(",") if h.strip())
    session = ctx.headers.get(session_header.lower()) or ctx.session_id
    return RoutingContext(
        client_ip=ctx.client_ip, forwarded_for=forwarded, api_key=ctx.api_key, session_id=session
    )

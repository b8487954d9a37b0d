"""Build the running system from a config: the model cache, engines and the manager."""

from __future__ import annotations

from typing import Any

from blaze_ai.config import BlazeConfig, ModelConfig, engine_class
from blaze_ai.engines.manager import EngineManager


def engine_names(model: ModelConfig) -> list[str]:
    """The manager's names for a model's in-process replicas."""
    if model.replicas == 1:
        return [model.name]
    return [f"{model.name}#{i}" for i in range(model.replicas)]


def build_engine(model: ModelConfig, model_cache: Any | None) -> Any:
    """One engine for ``model`` (its kind's engine class on its config)."""
    return engine_class(model.kind)(model.engine, model_cache=model_cache)


def build_manager(config: BlazeConfig, model_cache: Any | None = None) -> EngineManager:
    """An engine manager with every configured model's in-process replicas registered."""
    if model_cache is None and any(m.kind != "fake" for m in config.models):
        from blaze_ai.model_cache import ModelCache

        model_cache = ModelCache(config.server.model_memory_budget_mb * 1024 * 1024)
    manager = EngineManager(config.manager)
    for model in config.models:
        for name in engine_names(model):
            manager.register(name, build_engine(model, model_cache), model.breaker)
    return manager

"""``CacheConfig`` (the ``cache:`` section of the YAML config) and ``install_cache(app, mapping)``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from blaze_ai.cache.backends import Backend, MemoryBackend, RedisBackend
from blaze_ai.cache.cache import ResponseCache
from blaze_ai.cache.keys import MODES

BACKENDS = ("memory", "redis")


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """Response cache settings; ``mode: off`` turns the cache off."""

    backend: str = "memory"  # memory | redis
    url: str = "redis://127.0.0.1:6379/0"  # the redis backend's server
    ttl_s: float = 600.0
    max_bytes: int = 268_435_456  # the memory backend's budget; no entry larger than this is stored
    mode: str = "deterministic"  # deterministic | all | off
    timeout_s: float = 0.5  # redis connect and command timeout
    retry_s: float = 1.0  # after a redis failure, serve without it this long before trying again

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}")
        if self.mode not in MODES:
            raise ValueError(
                f"mode must be one of {', '.join(MODES)} (off disables the cache), not {self.mode!r}"
            )
        if not self.url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("url must be a redis URL such as redis://127.0.0.1:6379/0")
        if self.ttl_s <= 0 or self.timeout_s <= 0 or self.retry_s <= 0:
            raise ValueError("ttl_s, timeout_s and retry_s must be positive (seconds)")
        if self.max_bytes < 1024:
            raise ValueError("max_bytes must be at least 1024 (for example 268435456 for 256 MiB)")


def cache_config(mapping: Mapping[str, Any]) -> CacheConfig:
    """The validated config of the ``cache:`` mapping (ConfigError naming the key on a mistake)."""
    from blaze_ai.config import build

    config: CacheConfig = build(CacheConfig, mapping, "cache")
    return config


def open_backend(config: CacheConfig) -> Backend:
    if config.backend == "redis":
        return RedisBackend(config.url, timeout_s=config.timeout_s, retry_s=config.retry_s)
    return MemoryBackend(config.max_bytes)


def open_cache(config: CacheConfig) -> ResponseCache:
    """A ResponseCache on the configured backend."""
    return ResponseCache(open_backend(config), config.ttl_s, max_entry_bytes=config.max_bytes)


def install_cache(app: Any, cache_mapping: Mapping[str, Any]) -> ResponseCache | None:
    """Put the cache in front of ``app.state.dispatch`` and add its header middleware.

    Call it after anything else that replaces ``app.state.dispatch`` (the
    router), so requests go route -> cache -> router. Returns the cache (also
    ``app.state.response_cache``, for metrics), or None with ``mode: off``. The app's
    lifespan closes the cache at shutdown.
    """
    from blaze_ai.cache.dispatch import CachedDispatch
    from blaze_ai.cache.middleware import CacheHeaderMiddleware

    config = cache_config(cache_mapping)
    app.state.response_cache = None
    if config.mode == "off":
        return None
    cache = open_cache(config)
    app.state.dispatch = CachedDispatch(app.state.dispatch, cache, config.mode)
    app.state.response_cache = cache
    app.add_middleware(CacheHeaderMiddleware)
    inner_lifespan = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(lifespan_app: Any) -> AsyncIterator[Any]:
        async with inner_lifespan(lifespan_app) as state:
            try:
                yield state
            finally:
                await cache.aclose()

    app.router.lifespan_context = lifespan
    return cache

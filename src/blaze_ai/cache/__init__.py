"""The response cache: deterministic answers served again without running the model.

Put it in front of an app with ``install_cache(app, {"backend": "memory"})``,
or wrap any dispatch by hand::

    cache = ResponseCache(MemoryBackend(max_bytes=64 << 20), ttl_s=600)
    dispatch = CachedDispatch(ManagerDispatch(manager), cache, mode="deterministic")

See docs/cache.md for keys, modes, backends and outage behaviour.
"""

from blaze_ai.cache.backends import Backend, CacheUnavailableError, MemoryBackend, RedisBackend
from blaze_ai.cache.cache import ResponseCache
from blaze_ai.cache.config import CacheConfig, cache_config, install_cache, open_cache
from blaze_ai.cache.dispatch import CachedDispatch
from blaze_ai.cache.keys import cache_key, cacheable, deterministic
from blaze_ai.cache.middleware import HEADER, CacheHeaderMiddleware, CacheStatus

__all__ = [
    "HEADER",
    "Backend",
    "CacheConfig",
    "CacheHeaderMiddleware",
    "CacheStatus",
    "CacheUnavailableError",
    "CachedDispatch",
    "MemoryBackend",
    "RedisBackend",
    "ResponseCache",
    "cache_config",
    "cache_key",
    "cacheable",
    "deterministic",
    "install_cache",
    "open_cache",
]

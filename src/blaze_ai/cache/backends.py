"""Where cache entries live: in process (:class:`MemoryBackend`) or in Redis (:class:`RedisBackend`).

A backend stores bytes under string keys for a time to live. Its three calls
(``get``, ``set``, ``aclose``) either work or raise :class:`CacheUnavailableError`;
the cache treats that as a miss, so a broken backend never fails a request.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

from blaze_ai.errors import UnavailableError

log = logging.getLogger("blaze_ai.cache")

Clock = Callable[[], float]


class CacheUnavailableError(UnavailableError):
    """The cache backend cannot be reached; serve without the cache."""


class Backend(Protocol):
    """Bytes by key, each for ``ttl_s`` seconds."""

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_s: float) -> None: ...

    async def aclose(self) -> None: ...

    def stats(self) -> dict[str, Any]: ...


class MemoryBackend:
    """An in-process LRU with a time to live per entry and a byte budget (keys + values)."""

    def __init__(self, max_bytes: int, *, clock: Clock = time.monotonic) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        self.max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self.bytes = 0
        self.evictions = 0

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, expires = entry
        if self._clock() >= expires:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        size = _size(key, value)
        if key in self._entries:
            self._drop(key)
        if size > self.max_bytes:  # would evict everything and still not fit
            return
        while self.bytes + size > self.max_bytes:
            oldest = next(iter(self._entries))
            self._drop(oldest)
            self.evictions += 1
        self._entries[key] = (value, self._clock() + ttl_s)
        self.bytes += size

    async def aclose(self) -> None:
        self._entries.clear()
        self.bytes = 0

    def stats(self) -> dict[str, Any]:
        return {
            "kind": "memory",
            "entries": len(self._entries),
            "bytes": self.bytes,
            "evictions": self.evictions,
        }

    def __len__(self) -> int:
        return len(self._entries)

    def _drop(self, key: str) -> None:
        value, _ = self._entries.pop(key)
        self.bytes -= _size(key, value)


def _size(key: str, value: bytes) -> int:
    return len(key.encode("utf-8")) + len(value)


class RedisBackend:
    """Entries in Redis (``SET key value EX ttl``), reached through redis-py's asyncio client.

    When Redis fails, calls raise :class:`CacheUnavailableError` and, for
    ``retry_s`` seconds, fail at once without touching the network (no hammering
    a server that is down). One warning is logged per outage and one info line
    when Redis answers again; the client reconnects by itself.
    """

    def __init__(
        self, url: str, *, timeout_s: float = 0.5, retry_s: float = 1.0, clock: Clock = time.monotonic
    ) -> None:
        try:
            import redis.asyncio as aioredis
        except ImportError as exc:  # pragma: no cover - redis is in the dev extras
            raise ImportError(
                "the redis cache backend needs redis-py: pip install 'blaze-ai[redis]'"
            ) from exc
        self.url = url
        self.retry_s = retry_s
        self._clock = clock
        self._client: Any = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry_on_timeout=False,
            retry=None,
        )
        self._down_until: float | None = None  # set while an outage lasts
        self.failures = 0
        self.outages = 0

    async def get(self, key: str) -> bytes | None:
        value = await self._call("GET", key)
        return None if value is None else bytes(value)

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        await self._call("SET", key, value, "EX", max(1, math.ceil(ttl_s)))

    async def aclose(self) -> None:
        await self._client.aclose()

    def stats(self) -> dict[str, Any]:
        return {
            "kind": "redis",
            "available": self._down_until is None,
            "failures": self.failures,
            "outages": self.outages,
        }

    async def _call(self, *command: Any) -> Any:
        from redis.exceptions import RedisError

        now = self._clock()
        if self._down_until is not None and now < self._down_until:
            raise CacheUnavailableError(f"redis cache at {self._where()} is down; retrying soon")
        try:
            result = await self._client.execute_command(*command)
        except (RedisError, OSError) as exc:
            self._fail(exc)
            raise CacheUnavailableError(f"redis cache at {self._where()} failed: {exc}") from exc
        if self._down_until is not None:
            self._down_until = None
            log.info("redis cache at %s is back; caching resumes", self._where())
        return result

    def _fail(self, exc: BaseException) -> None:
        self.failures += 1
        if self._down_until is None:
            self.outages += 1
            log.warning(
                "redis cache at %s is unavailable (%s); serving without the cache", self._where(), exc
            )
        self._down_until = self._clock() + self.retry_s

    def _where(self) -> str:
        """The URL without a password, for logs."""
        scheme, sep, rest = self.url.partition("://")
        return f"{scheme}{sep}{rest.rpartition('@')[2]}"

"""The Redis backend against a real redis-server: hits, TTL expiry, and surviving an outage."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from blaze_ai.cache import (
    CachedDispatch,
    CacheUnavailableError,
    RedisBackend,
    ResponseCache,
    cache_key,
    install_cache,
)
from blaze_ai.config import ServerConfig
from blaze_ai.engines import EngineManager, FakeConfig, FakeEngine
from blaze_ai.engines.requests import GenerationRequest, SamplingParams
from blaze_ai.server.app import create_app

from .conftest import CTX, CountingDispatch, RedisServer


def greedy(prompt: str = "one two three") -> GenerationRequest:
    return GenerationRequest(prompt=prompt, params=SamplingParams(temperature=0.0))


def on_redis(server: RedisServer, inner: Any, ttl_s: float = 60, retry_s: float = 0.2) -> CachedDispatch:
    backend = RedisBackend(server.url, timeout_s=0.5, retry_s=retry_s)
    return CachedDispatch(inner, ResponseCache(backend, ttl_s=ttl_s))


async def test_hits_and_misses_are_stored_in_redis(
    redis_server: RedisServer, counting: CountingDispatch
) -> None:
    dispatch = on_redis(redis_server, counting, ttl_s=120)
    try:
        for prompt in ("a b", "a b", "c", "a b", "c"):
            result = await dispatch.execute("fake", greedy(prompt), CTX)
            assert result.choices[0].text == prompt
        assert counting.executes == 2
        stats = dispatch.cache.stats()
        assert (stats["misses"], stats["hits"], stats["errors"], stats["stores"]) == (2, 3, 0, 2)
        client = aioredis.Redis.from_url(redis_server.url)
        keys = await client.keys("blaze:v2:*")
        assert len(keys) == 2
        assert 0 < await client.ttl(keys[0]) <= 120
        await client.aclose()
    finally:
        await dispatch.cache.aclose()


async def test_entries_expire_after_their_ttl(redis_server: RedisServer, counting: CountingDispatch) -> None:
    dispatch = on_redis(redis_server, counting, ttl_s=1)
    try:
        await dispatch.execute("fake", greedy(), CTX)
        await dispatch.execute("fake", greedy(), CTX)
        assert counting.executes == 1
        key = cache_key("fake", greedy(), "execute")
        assert key is not None and await dispatch.cache.backend.get(key) is not None
        for _ in range(300):  # wait (bounded) until Redis has expired the 1 s entry
            if await dispatch.cache.backend.get(key) is None:
                break
            await asyncio.sleep(0.01)
        await dispatch.execute("fake", greedy(), CTX)
        assert counting.executes == 2
        assert dispatch.cache.stats()["misses"] == 2
    finally:
        await dispatch.cache.aclose()


async def test_redis_outage_serves_without_cache_then_resumes(
    redis_server: RedisServer, counting: CountingDispatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="blaze_ai.cache")
    dispatch = on_redis(redis_server, counting, retry_s=0.2)
    cache = dispatch.cache
    try:
        await dispatch.execute("fake", greedy(), CTX)
        await dispatch.execute("fake", greedy(), CTX)
        assert counting.executes == 1

        # 1) Redis dies: every request still succeeds, from the engine.
        redis_server.kill()
        results = [await dispatch.execute("fake", greedy(), CTX) for _ in range(5)]
        results += await asyncio.gather(*(dispatch.execute("fake", greedy(f"p{i}"), CTX) for i in range(10)))
        await asyncio.sleep(0.3)  # past retry_s: the next call tries Redis again, and fails again
        results.append(await dispatch.execute("fake", greedy(), CTX))
        assert [r.choices[0].text for r in results[:5]] == ["one two three"] * 5
        assert counting.executes == 1 + 5 + 10 + 1
        assert cache.stats()["errors"] >= 16 and cache.stats()["backend_available"] is False
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "unavailable" in r.message]
        assert len(warnings) == 1  # once per outage, not once per request
        with pytest.raises(CacheUnavailableError):
            await cache.backend.get("anything")

        # 2) Redis returns on the same port: caching resumes after retry_s.
        redis_server.start()
        for _ in range(200):
            await dispatch.execute("fake", greedy("back"), CTX)
            if cache.stats()["backend_available"] and cache.stats()["stores"] >= 2:
                break
            await asyncio.sleep(0.02)
        before = counting.executes
        again = await dispatch.execute("fake", greedy("back"), CTX)
        assert again.choices[0].text == "back" and counting.executes == before
        assert any("is back" in r.message for r in caplog.records)
    finally:
        await cache.aclose()


async def test_app_with_redis_backend_from_config(redis_server: RedisServer) -> None:
    engine = FakeEngine(FakeConfig())
    manager = EngineManager()
    manager.register("fake", engine)
    app = create_app(ServerConfig(), manager)
    cache = install_cache(app, {"backend": "redis", "url": redis_server.url, "ttl_s": 30, "retry_s": 0.1})
    assert cache is not None and isinstance(cache.backend, RedisBackend)
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    await app.state.start_task
    body = {"model": "fake", "messages": [{"role": "user", "content": "hi there"}], "temperature": 0}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        first = await client.post("/v1/chat/completions", json=body)
        second = await client.post("/v1/chat/completions", json=body)
        redis_server.kill()
        down = await client.post("/v1/chat/completions", json=body)
    await lifespan.__aexit__(None, None, None)
    assert [r.headers["x-blaze-cache"] for r in (first, second, down)] == ["miss", "hit", "miss"]
    assert down.status_code == 200 and down.json()["choices"][0]["message"]["content"] == "hi there"
    assert engine.requests == 2

"""The cache in a real app: x-blaze-cache on whole and streamed responses, Cache-Control bypass."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from blaze_ai.cache import ResponseCache, install_cache
from blaze_ai.config import ServerConfig
from blaze_ai.engines import EngineManager, FakeConfig, FakeEngine
from blaze_ai.errors import ConfigError
from blaze_ai.server.app import create_app

Serve = Callable[..., Any]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """``await serve(cache_mapping)`` -> (client, engine, cache) on a started app; closed at teardown."""
    opened: list[tuple[Any, httpx.AsyncClient]] = []

    async def make(mapping: dict[str, Any]) -> tuple[httpx.AsyncClient, FakeEngine, ResponseCache | None]:
        engine = FakeEngine(FakeConfig())
        manager = EngineManager()
        manager.register("fake", engine)
        app = create_app(ServerConfig(), manager)
        cache = install_cache(app, mapping)
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        await app.state.start_task
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
        opened.append((lifespan, client))
        return client, engine, cache

    yield make
    for lifespan, client in reversed(opened):
        await client.aclose()
        await lifespan.__aexit__(None, None, None)


def chat(content: str = "hello there world", **extra: Any) -> dict[str, Any]:
    return {"model": "fake", "messages": [{"role": "user", "content": content}], "temperature": 0, **extra}


def streamed_text(response: httpx.Response) -> str:
    events = [line[len("data: ") :] for line in response.text.split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    return "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])


def same_answer(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal bodies apart from the per-request id and timestamp."""
    return {k: v for k, v in a.items() if k not in ("id", "created")} == {
        k: v for k, v in b.items() if k not in ("id", "created")
    }


async def test_chat_miss_then_hit(serve: Serve) -> None:
    client, engine, cache = await serve({})
    first = await client.post("/v1/chat/completions", json=chat())
    second = await client.post("/v1/chat/completions", json=chat())
    assert first.status_code == second.status_code == 200
    assert (first.headers["x-blaze-cache"], second.headers["x-blaze-cache"]) == ("miss", "hit")
    assert engine.requests == 1
    answer = second.json()["choices"][0]["message"]["content"]
    assert answer == first.json()["choices"][0]["message"]["content"] == "hello there world"
    assert second.json()["id"] == f"chatcmpl-{second.headers['x-request-id']}"
    assert cache is not None and cache.stats()["hits"] == 1


async def test_streamed_chat_miss_then_hit_replays(serve: Serve) -> None:
    client, engine, _ = await serve({})
    first = await client.post("/v1/chat/completions", json=chat("a b c", stream=True))
    second = await client.post("/v1/chat/completions", json=chat("a b c", stream=True))
    assert first.headers["content-type"].startswith("text/event-stream")
    assert (first.headers["x-blaze-cache"], second.headers["x-blaze-cache"]) == ("miss", "hit")
    assert streamed_text(first) == streamed_text(second) == "a b c"
    assert engine.requests == 1


@pytest.mark.parametrize(
    "header",
    [{"Cache-Control": "no-cache"}, {"Cache-Control": "max-age=0, No-Store"}, {"Pragma": "no-cache"}],
)
async def test_no_cache_bypasses_whole_and_streamed(serve: Serve, header: dict[str, str]) -> None:
    client, engine, _ = await serve({})
    await client.post("/v1/chat/completions", json=chat())
    await client.post("/v1/chat/completions", json=chat(stream=True))
    whole = await client.post("/v1/chat/completions", json=chat(), headers=header)
    streamed = await client.post("/v1/chat/completions", json=chat(stream=True), headers=header)
    assert whole.status_code == streamed.status_code == 200
    assert whole.headers["x-blaze-cache"] == streamed.headers["x-blaze-cache"] == "bypass"
    assert streamed_text(streamed) == "hello there world"
    assert engine.requests == 4


async def test_sampled_requests_bypass_and_mode_all_caches_them(serve: Serve) -> None:
    client, engine, _ = await serve({"mode": "deterministic"})
    for _ in range(2):
        response = await client.post("/v1/chat/completions", json=chat(temperature=0.9))
        assert response.headers["x-blaze-cache"] == "bypass"
    assert engine.requests == 2
    client, engine, _ = await serve({"mode": "all"})
    headers = [
        (await client.post("/v1/chat/completions", json=chat(temperature=0.9))).headers["x-blaze-cache"]
        for _ in range(2)
    ]
    assert headers == ["miss", "hit"] and engine.requests == 1


async def test_completions_embeddings_and_images(serve: Serve) -> None:
    client, engine, _ = await serve({})
    calls = [
        ("/v1/completions", {"model": "fake", "prompt": ["a b", "c"], "temperature": 0}),
        ("/v1/embeddings", {"model": "fake", "input": ["x y"]}),
        ("/v1/images/generations", {"model": "fake", "prompt": "cat", "seed": 4, "size": "8x8",
                                    "response_format": "b64_json"}),
    ]  # fmt: skip
    for path, body in calls:
        first = await client.post(path, json=body)
        second = await client.post(path, json=body)
        assert first.status_code == second.status_code == 200, first.text
        assert (first.headers["x-blaze-cache"], second.headers["x-blaze-cache"]) == ("miss", "hit")
        assert same_answer(first.json(), second.json())
    assert engine.requests == 4  # two prompts, one embedding, one image


async def test_routes_without_a_model_call_have_no_header_and_mode_off_installs_nothing(serve: Serve) -> None:
    client, _, _ = await serve({})
    assert "x-blaze-cache" not in (await client.get("/v1/models")).headers
    client, _, cache = await serve({"mode": "off"})
    assert cache is None
    response = await client.post("/v1/chat/completions", json=chat())
    assert response.status_code == 200 and "x-blaze-cache" not in response.headers


async def test_errors_are_not_cached_and_keep_their_status(serve: Serve) -> None:
    client, engine, _ = await serve({})
    engine.set_mode(crash=True)
    failed = await client.post("/v1/chat/completions", json=chat())
    assert failed.status_code >= 500 and failed.headers["x-blaze-cache"] == "miss"
    engine.set_mode(crash=False)
    ok = await client.post("/v1/chat/completions", json=chat())
    assert ok.status_code == 200 and ok.headers["x-blaze-cache"] == "miss"


def test_bad_cache_config_names_the_key() -> None:
    app = create_app(ServerConfig(), EngineManager())
    with pytest.raises(ConfigError, match=r"cache: mode must be one of"):
        install_cache(app, {"mode": "sometimes"})
    with pytest.raises(ConfigError, match=r"cache\.size: unknown key"):
        install_cache(app, {"size": 1})


async def test_no_cache_stores_the_fresh_answer_but_no_store_does_not(serve: Serve) -> None:
    client, engine, _ = await serve({})
    await client.post("/v1/chat/completions", json=chat("fresh"), headers={"Cache-Control": "no-cache"})
    after_no_cache = await client.post("/v1/chat/completions", json=chat("fresh"))
    await client.post("/v1/chat/completions", json=chat("secret"), headers={"Cache-Control": "no-store"})
    after_no_store = await client.post("/v1/chat/completions", json=chat("secret"))
    assert after_no_cache.headers["x-blaze-cache"] == "hit"
    assert after_no_store.headers["x-blaze-cache"] == "miss"
    assert engine.requests == 3

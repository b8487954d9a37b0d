"""In-process apps with observability installed, over FakeEngines (httpx ASGITransport)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from blaze_ai.config import ServerConfig
from blaze_ai.engines import EngineManager, FakeConfig, FakeEngine
from blaze_ai.observability import install_observability
from blaze_ai.server import create_app

MakeApp = Callable[..., Any]


@pytest.fixture
async def make_app() -> AsyncIterator[MakeApp]:
    """``await make_app(engines, **server_settings) -> (app, client)``; lifespans closed at teardown."""
    opened: list[tuple[Any, httpx.AsyncClient]] = []

    async def make(
        engines: dict[str, FakeEngine] | None = None, **settings: Any
    ) -> tuple[FastAPI, httpx.AsyncClient]:
        manager = EngineManager()
        for name, engine in (engines or {"fake": FakeEngine(FakeConfig())}).items():
            manager.register(name, engine)
        app = create_app(dataclasses.replace(ServerConfig(), **settings), manager)
        install_observability(app)
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        await app.state.start_task
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
        opened.append((lifespan, client))
        return app, client

    yield make
    for lifespan, client in reversed(opened):
        await client.aclose()
        await lifespan.__aexit__(None, None, None)


async def scrape(client: httpx.AsyncClient) -> dict[str, Any]:
    """``/metrics`` parsed: family name -> family."""
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(response.text)}


def value(families: dict[str, Any], sample_name: str, **labels: str) -> float:
    """The value of the one sample named ``sample_name`` whose labels include ``labels`` (0 if none)."""
    family_name = sample_name
    for suffix in ("_total", "_count", "_sum", "_bucket", "_created"):
        if sample_name.endswith(suffix):
            family_name = sample_name[: -len(suffix)]
    family = families.get(family_name) or families.get(sample_name)
    if family is None:
        return 0.0
    matches = [
        s.value
        for s in family.samples
        if s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(matches) <= 1, f"{sample_name}{labels} matches {len(matches)} samples"
    return float(matches[0]) if matches else 0.0

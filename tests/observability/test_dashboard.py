"""The dashboard page and its JSON endpoint, in process."""

from __future__ import annotations

import re

from blaze_ai.cache.backends import MemoryBackend
from blaze_ai.cache.cache import ResponseCache
from blaze_ai.model_cache import ModelCache

from .conftest import MakeApp, scrape, value

ADMIN = "admin-key-1"


async def test_page_is_self_contained(make_app: MakeApp) -> None:
    _, client = await make_app(api_keys=("user-key",), admin_keys=(ADMIN,))
    response = await client.get("/dashboard")  # the page itself holds no data: no key needed
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "/dashboard/data" in page and "/admin/engines/" in page
    # no build step, no CDN: no external scripts, styles or fonts
    assert not re.search(r"<(script|link)[^>]+(src|href)=", page)
    assert not re.findall(r"https?://(?!www\.w3\.org/2000/svg)", page)


async def test_data_needs_the_admin_key_when_keys_are_set(make_app: MakeApp) -> None:
    _, client = await make_app(api_keys=("user-key",), admin_keys=(ADMIN,))
    assert (await client.get("/dashboard/data")).status_code == 401
    user = {"Authorization": "Bearer user-key"}
    assert (await client.get("/dashboard/data", headers=user)).status_code == 403
    admin = {"Authorization": f"Bearer {ADMIN}"}
    assert (await client.get("/dashboard/data", headers=admin)).status_code == 200


async def test_data_shows_engines_traffic_and_events(make_app: MakeApp) -> None:
    _, client = await make_app()
    for _ in range(3):
        body = {"model": "fake", "messages": [{"role": "user", "content": "one two"}]}
        assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
    data = (await client.get("/dashboard/data")).json()
    (engine,) = data["engines"]
    assert engine["name"] == "fake" and engine["status"] == "ready" and engine["breaker"] == "closed"
    series = data["series"]
    assert len(series["t"]) == len(series["rps"]) == 60  # 5 minutes in 5 s steps
    assert sum(series["rps"]) * 5 == 3
    assert sum(series["tokens_per_s"]) * 5 == 6
    assert any(p is not None for p in series["p95_ms"])
    assert any(e["event"] == "status" for e in data["events"])
    assert data["ready"] is True and data["cache"] is None and data["routers"] == {}


async def test_caches_show_in_data_and_metrics(make_app: MakeApp) -> None:
    app, client = await make_app()
    response_cache = ResponseCache(MemoryBackend(1 << 20), ttl_s=60)
    response_cache.counts.hits, response_cache.counts.misses = 3, 1
    model_cache = ModelCache(1 << 30)
    app.state.response_cache, app.state.model_cache = response_cache, model_cache
    data = (await client.get("/dashboard/data")).json()
    assert data["cache"]["hit_ratio"] == 0.75
    assert data["model_cache"]["budget_bytes"] == 1 << 30
    families = await scrape(client)
    assert value(families, "blaze_cache_hits_total") == 3
    assert value(families, "blaze_cache_misses_total") == 1
    assert value(families, "blaze_model_memory_budget_bytes") == 1 << 30
    assert "blaze_model_cache_loads" in families

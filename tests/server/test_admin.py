"""Admin routes and readiness."""

from __future__ import annotations

import httpx

from blaze_ai.config import parse_config
from blaze_ai.engines import FakeConfig, FakeEngine
from blaze_ai.server import create_app

from .conftest import MakeClient, chat_body


async def test_snapshot_shows_status_breaker_in_flight_and_events(client: httpx.AsyncClient) -> None:
    await client.post("/v1/chat/completions", json=chat_body())
    data = (await client.get("/admin/engines")).json()
    fake = data["engines"]["fake"]
    assert fake["status"] == "ready" and fake["in_flight"] == 0
    assert fake["breaker"]["state"] == "closed"
    assert fake["stats"]["requests"] == 1
    assert any(e["event"] == "status" for e in data["events"])
    assert (await client.get("/admin/engines/fake")).json()["kind"] == "fake"
    assert (await client.get("/admin/engines/missing")).status_code == 404


async def test_drain_then_restart(client: httpx.AsyncClient) -> None:
    drained = (await client.post("/admin/engines/fake/drain")).json()
    assert drained == {"engine": "fake", "drained": True, "status": "stopped"}
    assert (await client.post("/v1/chat/completions", json=chat_body())).status_code == 503
    restarted = (await client.post("/admin/engines/fake/restart")).json()
    assert restarted["ready"] is True
    assert (await client.post("/v1/chat/completions", json=chat_body())).status_code == 200


async def test_load_and_unload_a_model(client: httpx.AsyncClient) -> None:
    loaded = await client.post(
        "/admin/models", json={"name": "echo2", "kind": "fake", "fake": {"delay_s": 0}}
    )
    assert loaded.status_code == 201 and loaded.json() == {"model": "echo2", "status": "ready"}
    assert "echo2" in [m["id"] for m in (await client.get("/v1/models")).json()["data"]]
    assert (await client.post("/v1/chat/completions", json=chat_body(model="echo2"))).status_code == 200
    again = await client.post("/admin/models", json={"name": "echo2", "kind": "fake"})
    assert again.status_code == 400
    bad = await client.post("/admin/models", json={"name": "x", "kind": "fake", "fake": {"nope": 1}})
    assert bad.status_code == 400 and "nope" in bad.json()["error"]["message"]
    assert (await client.delete("/admin/models/echo2")).json() == {"model": "echo2", "unloaded": True}
    assert (await client.post("/v1/chat/completions", json=chat_body(model="echo2"))).status_code == 404


async def test_ready_is_503_while_loading(make_client: MakeClient) -> None:
    slow_start = FakeEngine(FakeConfig(start_delay_s=30))
    client = await make_client(engines={"fake": slow_start}, wait_ready=False)
    response = await client.get("/health/ready")
    assert response.status_code == 503 and response.json() == {"status": "loading"}
    assert (await client.get("/health/live")).json() == {"status": "ok"}


async def test_ready_once_loaded(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health/ready")).json() == {"status": "ready"}


async def test_routers_show_each_replicas_health_breaker_and_picks() -> None:
    config = parse_config({"models": [{"name": "echo", "kind": "fake", "replicas": 2}]}, env={})
    app = create_app(config)
    async with app.router.lifespan_context(app):
        await app.state.start_task
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            answer = await client.post("/v1/chat/completions", json=chat_body(model="echo"))
            assert answer.status_code == 200
            data = (await client.get("/admin/routers")).json()
    replicas = data["echo"]["replicas"]
    assert data["echo"]["requests"] == 1 and sorted(replicas) == ["echo#0", "echo#1"]
    assert sum(r["picks"] for r in replicas.values()) == 1
    assert all(r["healthy"] and r["breaker_state"] == "closed" for r in replicas.values())


async def test_routers_is_empty_without_a_system(client: httpx.AsyncClient) -> None:
    assert (await client.get("/admin/routers")).json() == {}


async def test_a_routers_own_session_header_pins_a_conversation() -> None:
    model = {
        "name": "echo", "kind": "fake", "replicas": 3,
        "router": {"strategy": "sticky", "strategy_options": {"fallback": "round_robin"},
                   "session_header": "x-conversation"},
    }  # fmt: skip
    app = create_app(parse_config({"models": [model]}, env={}))
    async with app.router.lifespan_context(app):
        await app.state.start_task
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            for _ in range(6):
                answer = await client.post(
                    "/v1/chat/completions", json=chat_body(model="echo"), headers={"x-conversation": "c-1"}
                )
                assert answer.status_code == 200
            replicas = (await client.get("/admin/routers")).json()["echo"]["replicas"]
    assert sorted(r["picks"] for r in replicas.values()) == [0, 0, 6]  # round robin would spread them

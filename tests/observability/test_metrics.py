"""/metrics: the names exist, follow Prometheus conventions, and move with real traffic."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from blaze_ai.engines import FakeConfig, FakeEngine
from blaze_ai.engines.requests import StreamDelta
from blaze_ai.observability.metrics import Metrics

from .conftest import MakeApp, scrape, value

CHAT = "/v1/chat/completions"


def chat(prompt: str, **extra: object) -> dict[str, object]:
    return {"model": "fake", "messages": [{"role": "user", "content": prompt}], **extra}


async def test_metric_names_follow_conventions(make_app: MakeApp) -> None:
    _, client = await make_app()
    assert (await client.post(CHAT, json=chat("hello there"))).status_code == 200
    families = await scrape(client)
    expected = {
        "blaze_requests": "counter",
        "blaze_request_duration_seconds": "histogram",
        "blaze_prompt_tokens": "counter",
        "blaze_generation_tokens": "counter",
        "blaze_http_requests_in_flight": "gauge",
        "blaze_engine_status": "gauge",
        "blaze_engine_in_flight": "gauge",
        "blaze_engine_restarts": "counter",
        "blaze_breaker_state": "gauge",
        "blaze_breaker_trips": "counter",
        "blaze_queue_length": "gauge",
    }
    for name, kind in expected.items():
        assert families[name].type == kind, name
    for family in families.values():
        assert family.name.startswith("blaze_"), family.name
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples), family.name
        if family.type in ("histogram", "summary") and "duration" in family.name:
            assert family.name.endswith("_seconds")


async def test_whole_request_moves_counters_and_histograms(make_app: MakeApp) -> None:
    _, client = await make_app()
    before = await scrape(client)
    response = await client.post(CHAT, json=chat("one two three four"))
    assert response.status_code == 200
    usage = response.json()["usage"]
    after = await scrape(client)

    labels = {"route": CHAT, "model": "fake", "status": "200"}
    assert (
        value(after, "blaze_requests_total", **labels) - value(before, "blaze_requests_total", **labels) == 1
    )
    duration = {"route": CHAT, "model": "fake"}
    assert value(after, "blaze_request_duration_seconds_count", **duration) == 1
    assert value(after, "blaze_request_duration_seconds_bucket", le="+Inf", **duration) == 1
    assert value(after, "blaze_request_duration_seconds_sum", **duration) > 0
    assert value(after, "blaze_prompt_tokens_total", model="fake") == usage["prompt_tokens"] > 0
    assert value(after, "blaze_generation_tokens_total", model="fake") == usage["completion_tokens"] == 4


async def test_stream_records_time_to_first_token_and_per_token(make_app: MakeApp) -> None:
    _, client = await make_app()
    body = chat("alpha beta gamma delta epsilon", stream=True)
    async with client.stream("POST", CHAT, json=body) as response:
        assert response.status_code == 200
        text = "".join([chunk async for chunk in response.aiter_text()])
    assert "[DONE]" in text
    families = await scrape(client)
    assert value(families, "blaze_time_to_first_token_seconds_count", model="fake") == 1
    # five tokens: the first gives the TTFT, each of the other four a time per output token
    assert value(families, "blaze_time_per_output_token_seconds_count", model="fake") == 4
    assert value(families, "blaze_generation_tokens_total", model="fake") == 5


async def test_stream_usage_chunk_gives_prompt_tokens(make_app: MakeApp) -> None:
    _, client = await make_app()
    body = chat("a b c", stream=True, stream_options={"include_usage": True})
    async with client.stream("POST", CHAT, json=body) as response:
        events = [line async for line in response.aiter_lines() if line.startswith("data: {")]
    usage = json.loads(events[-1][6:])["usage"]
    families = await scrape(client)
    assert value(families, "blaze_prompt_tokens_total", model="fake") == usage["prompt_tokens"] > 0
    assert value(families, "blaze_generation_tokens_total", model="fake") == usage["completion_tokens"]


class QueuedFake(FakeEngine):
    """Streams six one-token pieces without a pause: they queue up and leave as one merged chunk."""

    async def stream(self, request: Any) -> AsyncIterator[StreamDelta]:
        for i in range(6):
            yield StreamDelta(0, f" w{i}", [i], "length" if i == 5 else None, 4, i + 1)


async def test_a_merged_chunk_counts_every_token_it_carries(make_app: MakeApp) -> None:
    _, client = await make_app({"fake": QueuedFake(FakeConfig())})
    async with client.stream("POST", CHAT, json=chat("hi", stream=True)) as response:
        events = [line async for line in response.aiter_lines() if line.startswith("data: {")]
    contents = [json.loads(e[6:])["choices"][0]["delta"].get("content") for e in events]
    assert [c for c in contents if c] == [" w0 w1 w2 w3 w4 w5"]  # one chunk, six tokens
    families = await scrape(client)
    assert value(families, "blaze_generation_tokens_total", model="fake") == 6
    assert value(families, "blaze_prompt_tokens_total", model="fake") == 4  # counted without include_usage
    assert value(families, "blaze_time_to_first_token_seconds_count", model="fake") == 1
    # the five tokens after the first came with it: five gaps of zero
    assert value(families, "blaze_time_per_output_token_seconds_count", model="fake") == 5
    assert value(families, "blaze_time_per_output_token_seconds_sum", model="fake") == 0


async def test_unknown_model_is_not_a_label(make_app: MakeApp) -> None:
    _, client = await make_app()
    response = await client.post(CHAT, json={**chat("hi"), "model": "no-such-model-123"})
    assert response.status_code == 404
    families = await scrape(client)
    assert value(families, "blaze_requests_total", route=CHAT, model="unknown", status="404") == 1
    assert "no-such-model-123" not in (await client.get("/metrics")).text


async def test_breaker_trips_and_engine_status(make_app: MakeApp) -> None:
    engine = FakeEngine(FakeConfig())
    _, client = await make_app({"fake": engine})
    engine.set_mode(fail_rate=1.0)
    statuses = [(await client.post(CHAT, json=chat("x"))).status_code for _ in range(6)]
    assert 503 in statuses  # the breaker opened and refused the last call
    families = await scrape(client)
    assert value(families, "blaze_breaker_trips_total", engine="fake") == 1
    assert value(families, "blaze_breaker_state", engine="fake", state="open") == 1
    assert value(families, "blaze_breaker_state", engine="fake", state="closed") == 0
    assert value(families, "blaze_requests_total", route=CHAT, model="fake", status="500") >= 1

    assert (await client.post("/admin/engines/fake/drain")).status_code == 200
    families = await scrape(client)
    assert value(families, "blaze_engine_status", engine="fake", status="stopped") == 1
    assert value(families, "blaze_engine_status", engine="fake", status="ready") == 0


async def test_admin_load_and_unload_are_counted(make_app: MakeApp) -> None:
    _, client = await make_app()
    entry = {"name": "extra", "kind": "fake", "fake": {}}
    assert (await client.post("/admin/models", json=entry)).status_code == 201
    assert (await client.delete("/admin/models/extra")).status_code == 200
    families = await scrape(client)
    assert value(families, "blaze_model_loads_total", model="extra") == 1
    assert value(families, "blaze_model_unloads_total", model="extra") == 1


async def test_each_app_has_its_own_registry(make_app: MakeApp) -> None:
    _, first = await make_app()
    _, second = await make_app()
    assert (await first.post(CHAT, json=chat("hi"))).status_code == 200
    assert value(await scrape(first), "blaze_requests_total", route=CHAT, model="fake", status="200") == 1
    assert value(await scrape(second), "blaze_requests_total", route=CHAT, model="fake", status="200") == 0


def test_a_broken_snapshot_does_not_break_the_scrape() -> None:
    class Broken:
        def snapshot(self) -> dict[str, object]:
            raise RuntimeError("boom")

    class State:
        manager = Broken()
        response_cache = None

    metrics = Metrics(State())
    metrics.requests.observe_request("/v1/x", "POST", "m", "200", 0.1)
    assert b"blaze_requests_total" in metrics.render()


class BatchingFake(FakeEngine):
    """A fake reporting DynamicBatcher-shaped stats, as the diffusion engine does."""

    def stats(self) -> dict[str, object]:
        batcher = {"queued": 2, "running": 1, "items": 10, "batches": 4, "mean_queue_wait_s": 0.05,
                   "batch_size_histogram": {1: 1, 3: 3}, "last_batch_size": 3}  # fmt: skip
        return {**super().stats(), "batcher": batcher}


async def test_batch_size_histogram_and_queue_from_engine_stats(make_app: MakeApp) -> None:
    _, client = await make_app({"img": BatchingFake(FakeConfig())})
    families = await scrape(client)
    assert families["blaze_batch_size"].type == "histogram"
    assert value(families, "blaze_batch_size_bucket", engine="img", le="1.0") == 1
    assert value(families, "blaze_batch_size_bucket", engine="img", le="4.0") == 4
    assert value(families, "blaze_batch_size_count", engine="img") == 4
    assert value(families, "blaze_batch_size_sum", engine="img") == 10
    assert value(families, "blaze_queue_time_seconds_count", engine="img") == 10
    assert value(families, "blaze_queue_time_seconds_sum", engine="img") == 0.5
    assert value(families, "blaze_queue_length", engine="img") == 2


async def test_router_replicas_show_health_breaker_and_share(make_app: MakeApp) -> None:
    from blaze_ai.engines.requests import GenerationRequest, SamplingParams
    from blaze_ai.engines.router import LocalReplica, Router, RoutingContext

    app, client = await make_app()
    engines = [FakeEngine(FakeConfig()), FakeEngine(FakeConfig())]
    for engine in engines:
        await engine.start()
    router = Router([LocalReplica("r0", engines[0]), LocalReplica("r1", engines[1])])
    app.state.routers = {"fake": router}
    for _ in range(4):
        await router.execute(GenerationRequest(prompt="hi", params=SamplingParams()), RoutingContext())
    families = await scrape(client)
    shares = [value(families, "blaze_replica_traffic_share", model="fake", replica=r) for r in ("r0", "r1")]
    assert sum(shares) == 1.0
    assert value(families, "blaze_replica_healthy", model="fake", replica="r0") == 1
    assert value(families, "blaze_replica_breaker_state", model="fake", replica="r1", state="closed") == 1
    assert value(families, "blaze_router_requests_total", model="fake") == 4
    replicas = (await client.get("/dashboard/data")).json()["routers"]["fake"]["replicas"]
    assert {r["name"] for r in replicas} == {"r0", "r1"}


async def test_responses_api_usage_and_first_token_are_counted(make_app: MakeApp) -> None:
    _, client = await make_app()
    whole = await client.post("/v1/responses", json={"model": "fake", "input": "one two three"})
    assert whole.status_code == 200
    usage = whole.json()["usage"]
    families = await scrape(client)
    assert value(families, "blaze_prompt_tokens_total", model="fake") == usage["input_tokens"] > 0
    assert value(families, "blaze_generation_tokens_total", model="fake") == usage["output_tokens"] == 3
    body = {"model": "fake", "input": "alpha beta gamma", "stream": True}
    async with client.stream("POST", "/v1/responses", json=body) as response:
        assert response.status_code == 200
        _ = [chunk async for chunk in response.aiter_text()]
    families = await scrape(client)
    assert value(families, "blaze_time_to_first_token_seconds_count", model="fake") == 1
    assert value(families, "blaze_generation_tokens_total", model="fake") == 6

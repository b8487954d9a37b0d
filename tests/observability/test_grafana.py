"""The Grafana dashboard only queries metrics the exporter really emits."""

from __future__ import annotations

import json
import re
from pathlib import Path

from blaze_ai.cache.backends import MemoryBackend
from blaze_ai.cache.cache import ResponseCache
from blaze_ai.engines import FakeConfig, FakeEngine
from blaze_ai.engines.router import LocalReplica, Router
from blaze_ai.model_cache import ModelCache

from .conftest import MakeApp
from .test_metrics import BatchingFake

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "blaze-dashboard.json"


class LLMShapedFake(BatchingFake):
    def stats(self) -> dict[str, object]:
        llm = {"running": 1, "batch_size": 2, "tokens_per_s": 12.5, "memory_bytes": 1000, "steps": 3,
               "generated_tokens": 4, "prompt_tokens": 5}  # fmt: skip
        return {**super().stats(), **llm}


async def test_every_queried_metric_is_exported(make_app: MakeApp) -> None:
    app, client = await make_app({"fake": LLMShapedFake(FakeConfig())})
    app.state.routers = {"fake": Router([LocalReplica("r0", FakeEngine(FakeConfig()))])}
    app.state.response_cache = ResponseCache(MemoryBackend(1 << 20), ttl_s=60)
    app.state.model_cache = ModelCache(1 << 20)
    body = {
        "model": "fake",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "a b c"}],
    }
    assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
    assert (
        await client.post("/admin/models", json={"name": "x", "kind": "fake", "fake": {}})
    ).status_code == 201
    assert (await client.delete("/admin/models/x")).status_code == 200
    exported = set(re.findall(r"^(blaze_\w+?)(?:\{| )", (await client.get("/metrics")).text, re.M))

    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    queried = set(re.findall(r"blaze_\w+", " ".join(exprs)))
    assert len(queried) > 30
    assert queried - exported == set()

"""System's model cache: an explicit budget is kept, 0 is sized for the devices the models load on."""

from __future__ import annotations

from typing import Any

import pytest

from blaze_ai import system
from blaze_ai.config import parse_config
from blaze_ai.memory import GIB, MIB, Budget


def config(server: dict[str, Any], *models: dict[str, Any]) -> Any:
    return parse_config({"server": server, "models": list(models)}, env={})


LLM_CPU = {"name": "chat", "kind": "llm", "llm": {"source": "builtin:tiny-llama", "device": "cpu"}}
EMBED = {"name": "embed", "kind": "embedding", "embedding": {"device": "cpu"}}
FAKE = {"name": "fake", "kind": "fake"}
REMOTE_ONLY = {
    "name": "far",
    "kind": "llm",
    "llm": {"device": "cuda:3"},
    "replicas": 0,
    "remotes": [{"url": "http://127.0.0.1:9"}],
}


@pytest.fixture
def placed(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The device lists default_budget is asked about (it answers 6 GiB)."""
    calls: list[list[str]] = []

    def fake_default(devices: list[str]) -> Budget:
        calls.append(sorted(devices))
        return Budget(6 * GIB, "75% of 8,192 MiB RAM")

    monkeypatch.setattr(system, "default_budget", fake_default)
    return calls


def test_an_explicit_budget_is_kept(placed: list[list[str]]) -> None:
    cache = system.build_model_cache(config({"model_memory_budget_mb": 2048}, LLM_CPU))
    assert cache is not None and cache.budget_bytes == 2048 * MIB
    assert cache.budget_origin == "server.model_memory_budget_mb=2048"
    assert placed == []


def test_zero_sizes_the_budget_for_the_devices_of_local_models(placed: list[list[str]]) -> None:
    cache = system.build_model_cache(config({}, LLM_CPU, EMBED, FAKE, REMOTE_ONLY))
    assert placed == [["cpu", "cpu"]]  # neither the fake nor the remote-only model loads here
    assert cache is not None and cache.budget_bytes == 6 * GIB
    assert cache.budget_origin == "server.model_memory_budget_mb=0: 75% of 8,192 MiB RAM"


def test_the_default_is_zero_and_a_negative_budget_is_refused() -> None:
    assert config({}).server.model_memory_budget_mb == 0
    with pytest.raises(ValueError, match="0 \\(size it from the device's memory\\) or a number of MiB"):
        config({"model_memory_budget_mb": -1})


def test_the_env_variable_sets_it() -> None:
    parsed = parse_config({}, env={"BLAZE_MODEL_MEMORY_BUDGET_MB": "512"})
    assert parsed.server.model_memory_budget_mb == 512


def test_fakes_only_need_no_cache(placed: list[list[str]]) -> None:
    assert system.build_model_cache(config({}, FAKE)) is None

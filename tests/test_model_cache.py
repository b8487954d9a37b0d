"""ModelCache: budget, LRU eviction, pinning, errors, and memory really freed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass

import pytest
import torch

from blaze_ai.errors import EngineFailureError, OverloadedError, UnavailableError
from blaze_ai.model_cache import ModelCache, memory_of


@dataclass
class Blob:
    """A stand-in model whose size the test decides."""

    name: str
    size: int


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0  # every reading is later than the last: a strict LRU order
        return self.now


def make_cache(budget: int) -> ModelCache:
    return ModelCache(budget, clock=Clock(), sizer=lambda m: m.size if isinstance(m, Blob) else 0)


def loader(name: str, size: int, calls: list[str] | None = None):  # type: ignore[no-untyped-def]
    def load() -> Blob:
        if calls is not None:
            calls.append(name)
        return Blob(name, size)

    return load


def test_loads_once_then_hits() -> None:
    cache = make_cache(100)
    calls: list[str] = []
    first = cache.get_or_load("a", loader("a", 10, calls))
    again = cache.get_or_load("a", loader("a", 10, calls))
    assert first is again
    assert calls == ["a"]
    stats = cache.stats()
    assert (stats["loads"], stats["hits"], stats["misses"], stats["bytes_loaded"]) == (1, 1, 1, 10)


def test_evicts_the_least_recently_used_and_reloads_it() -> None:
    cache = make_cache(100)
    calls: list[str] = []
    cache.get_or_load("a", loader("a", 40, calls))
    cache.get_or_load("b", loader("b", 40, calls))
    cache.get_or_load("a", loader("a", 40, calls))  # a is now more recent than b
    cache.get_or_load("c", loader("c", 40, calls))  # needs room: b goes
    assert "b" not in cache
    assert "a" in cache and "c" in cache
    cache.get_or_load("b", loader("b", 40, calls))  # reload: a is now the oldest and goes
    assert calls == ["a", "b", "c", "b"]
    assert sorted(e["key"] for e in cache.entries()) == ["b", "c"]
    assert cache.stats()["evictions"] == 2
    assert next(e for e in cache.entries() if e["key"] == "b")["loads"] == 2
    assert cache.stats()["bytes_loaded"] <= 100


def test_never_evicts_a_model_in_use() -> None:
    cache = make_cache(100)
    with cache.use("a", loader("a", 60)) as model:
        assert model.name == "a"
        assert cache.entries()[0]["in_use"] is True
        with pytest.raises(OverloadedError, match="in use"):
            cache.get_or_load("b", loader("b", 60))
        assert "a" in cache
        with pytest.raises(UnavailableError, match="in use"):
            cache.unload("a")
    assert cache.entries()[0]["in_use"] is False
    cache.get_or_load("b", loader("b", 60))  # idle now: a may go
    assert "a" not in cache


def test_pins_nest_and_unpin_checks() -> None:
    cache = make_cache(100)
    cache.get_or_load("a", loader("a", 60), pin=True)
    cache.pin("a")
    cache.unpin("a")
    with pytest.raises(OverloadedError):
        cache.get_or_load("b", loader("b", 60))
    cache.unpin("a")
    with pytest.raises(KeyError):
        cache.unpin("a")
    with pytest.raises(KeyError):
        cache.pin("missing")


def test_extra_bytes_count_against_the_budget() -> None:
    cache = make_cache(100)
    cache.get_or_load("a", loader("a", 30), extra_bytes=40)
    assert cache.entries()[0]["bytes"] == 70
    cache.get_or_load("b", loader("b", 31))
    assert "a" not in cache


def test_extra_bytes_may_be_measured_on_the_loaded_model() -> None:
    # An LLM's KV-cache reservation depends on its config, known only once it is loaded.
    cache = make_cache(100)
    cache.get_or_load("a", loader("a", 30), extra_bytes=lambda model: model.size)
    assert cache.entries()[0]["bytes"] == 60 and cache.entries()[0]["extra_bytes"] == 30
    cache.get_or_load("b", loader("b", 41))
    assert "a" not in cache


def test_a_model_larger_than_the_budget_is_refused_clearly() -> None:
    cache = make_cache(100)
    with pytest.raises(UnavailableError, match="budget"):
        cache.get_or_load("huge", loader("huge", 101))
    assert "huge" not in cache
    assert cache.stats()["load_failures"] == 1


def test_the_refusal_says_what_the_model_needs_the_budget_and_the_shortfall() -> None:
    mib = 1 << 20
    cache = ModelCache(
        100 * mib,
        sizer=lambda m: m.size if isinstance(m, Blob) else 0,
        budget_origin="server.model_memory_budget_mb=100",
    )
    with pytest.raises(UnavailableError) as info:
        cache.get_or_load("llm:big", loader("llm:big", 80 * mib), extra_bytes=lambda m: 45 * mib)
    message = info.value.message
    assert (
        "model 'llm:big' needs 125.0 MiB (80.0 MiB of weights + 45.0 MiB of KV cache or activations)"
        in message
    )
    assert "budget is 100.0 MiB (server.model_memory_budget_mb=100): 25.0 MiB short" in message
    assert "server.model_memory_budget_mb" in message and "max_tokens_in_flight" in message


def test_a_failing_loader_leaves_the_cache_usable() -> None:
    cache = make_cache(100)

    def broken() -> Blob:
        raise OSError("no such file")

    with pytest.raises(EngineFailureError, match="no such file") as info:
        cache.get_or_load("a", broken)
    assert isinstance(info.value.__cause__, OSError)
    assert cache.get_or_load("a", loader("a", 10)).name == "a"


def test_concurrent_gets_of_one_key_load_it_once() -> None:
    cache = make_cache(100)
    started = threading.Event()
    release = threading.Event()
    calls: list[str] = []

    def slow() -> Blob:
        calls.append("a")
        started.set()
        release.wait(5)
        return Blob("a", 10)

    got: list[Blob] = []
    threads = [threading.Thread(target=lambda: got.append(cache.get_or_load("a", slow))) for _ in range(4)]
    threads[0].start()
    started.wait(5)
    for t in threads[1:]:
        t.start()
    assert cache.get_or_load("other", loader("other", 5)).name == "other"  # not blocked by the load
    release.set()
    for t in threads:
        t.join(5)
    assert calls == ["a"]
    assert len(got) == 4 and all(m is got[0] for m in got)


def test_unload_and_clear() -> None:
    cache = make_cache(100)
    cache.get_or_load("a", loader("a", 10))
    cache.get_or_load("b", loader("b", 10), pin=True)
    assert cache.unload("a") is True
    assert cache.unload("a") is False
    cache.clear()
    assert [e["key"] for e in cache.entries()] == ["b"]


def test_memory_of_counts_parameters_and_buffers_once() -> None:
    linear = torch.nn.Linear(10, 10)  # 110 float32 parameters
    assert memory_of(linear) == 110 * 4
    norm = torch.nn.BatchNorm1d(8)  # weight, bias, mean, var: 4 * 8 floats + an int64 counter
    assert memory_of(norm) == 4 * 8 * 4 + 8
    tied = torch.nn.Sequential(linear, torch.nn.Linear(10, 10))
    tied[1].weight = linear.weight  # shared storage counts once
    assert memory_of(tied) == 110 * 4 + 10 * 4

    class Pipeline:  # a diffusers-style pipeline: modules in .components
        def __init__(self) -> None:
            self.components = {"unet": linear, "scheduler": object(), "vae": norm}

    assert memory_of(Pipeline()) == 110 * 4 + 4 * 8 * 4 + 8
    assert memory_of({"model": linear, "tokenizer": "x"}) == 110 * 4
    assert memory_of("not a model") == 0


MEMORY_SCENARIO = """
import gc, json, os, torch
from blaze_ai.model_cache import ModelCache

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

class Big(torch.nn.Module):
    def __init__(self, n):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(n))  # ones, not zeros: pages really touched

size = 200 * 1024 * 1024
cache = ModelCache(size + 1024 * 1024)
gc.collect()
before = rss()
cache.get_or_load("big", lambda: Big(size // 4))
loaded = rss()
entry_bytes = cache.entries()[0]["bytes"]
cache.get_or_load("small", lambda: torch.nn.Linear(1024, 1024))  # 4 MB: no room left, "big" goes
print(json.dumps({"before": before, "loaded": loaded, "after": rss(), "entry_bytes": entry_bytes,
                  "big_cached": "big" in cache}))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_eviction_gives_the_memory_back() -> None:
    # A fresh process: in a long test run the allocator may already hold freed memory to reuse.
    proc = subprocess.run(
        [sys.executable, "-c", MEMORY_SCENARIO], capture_output=True, text=True, timeout=120, check=True
    )
    m = json.loads(proc.stdout.strip().splitlines()[-1])
    assert m["entry_bytes"] == 200 * 1024 * 1024 and not m["big_cached"]
    assert m["loaded"] - m["before"] > 150 * 1024 * 1024
    assert m["loaded"] - m["after"] > 150 * 1024 * 1024

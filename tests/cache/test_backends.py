"""MemoryBackend: LRU order, time to live and the byte budget, on an injected clock."""

from __future__ import annotations

import pytest

from blaze_ai.cache import MemoryBackend


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_ttl_expires_entries() -> None:
    clock = Clock()
    backend = MemoryBackend(1000, clock=clock)
    await backend.set("k", b"v", ttl_s=10)
    clock.now += 9.9
    assert await backend.get("k") == b"v"
    clock.now += 0.1
    assert await backend.get("k") is None
    assert backend.bytes == 0 and len(backend) == 0


async def test_byte_budget_evicts_least_recently_used() -> None:
    backend = MemoryBackend(30, clock=Clock())  # each entry: 1-byte key + 9-byte value = 10 bytes
    for key in "abc":
        await backend.set(key, b"x" * 9, ttl_s=60)
    assert backend.bytes == 30
    assert await backend.get("a") == b"x" * 9  # a is now the most recently used
    await backend.set("d", b"y" * 9, ttl_s=60)
    assert await backend.get("b") is None
    assert [await backend.get(k) is not None for k in "acd"] == [True, True, True]
    assert backend.bytes == 30 and backend.evictions == 1


async def test_overwrite_counts_bytes_once_and_too_big_is_not_stored() -> None:
    backend = MemoryBackend(20, clock=Clock())
    await backend.set("k", b"1234", ttl_s=60)
    await backend.set("k", b"12345678", ttl_s=60)
    assert backend.bytes == 9 and await backend.get("k") == b"12345678"
    await backend.set("big", b"z" * 100, ttl_s=60)
    assert await backend.get("big") is None
    assert await backend.get("k") == b"12345678"  # nothing was evicted for an entry that cannot fit


def test_budget_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        MemoryBackend(0)

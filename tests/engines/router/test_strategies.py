"""Balancing strategies over many picks, with no network and no model."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence

import pytest

from blaze_ai.engines.router import (
    STRATEGIES,
    AdaptiveWeights,
    ConsistentHash,
    LeastTime,
    PeakEwma,
    PowerOfTwo,
    ReplicaState,
    RoutingContext,
    SmoothWeightedRoundRobin,
    Sticky,
    client_address,
)
from blaze_ai.engines.router.context import context_from_headers, parse_networks

NO_CTX = RoutingContext()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_states(*names: str, weights: Sequence[float] | None = None) -> list[ReplicaState]:
    weights = weights or [1.0] * len(names)
    return [ReplicaState(name, weight=w) for name, w in zip(names, weights, strict=True)]


def shares(
    strategy: object, eligible: list[ReplicaState], n: int, ctx: RoutingContext = NO_CTX
) -> dict[str, float]:
    counts = Counter(strategy.pick(eligible, ctx).name for _ in range(n))  # type: ignore[attr-defined]
    return {s.name: counts[s.name] / n for s in eligible}


def test_nginx_smooth_weighted_sequence_is_exact() -> None:
    eligible = make_states("a", "b", "c", weights=[5, 1, 1])
    strategy = SmoothWeightedRoundRobin()
    picks = "".join(strategy.pick(eligible, NO_CTX).name for _ in range(14))
    assert picks == "aabacaa" * 2


@pytest.mark.parametrize("name", ["weighted_round_robin", "weighted_random"])
def test_weighted_shares_follow_weights(name: str) -> None:
    eligible = make_states("a", "b", "c", weights=[5, 3, 2])
    got = shares(STRATEGIES[name](rng=random.Random(1)), eligible, 20_000)
    for state in eligible:
        assert got[state.name] == pytest.approx(state.weight / 10, abs=0.015)


@pytest.mark.parametrize("name", ["round_robin", "random", "least_connections", "power_of_two", "least_time"])
def test_unweighted_strategies_spread_evenly_when_idle(name: str) -> None:
    eligible = make_states("a", "b", "c", "d")
    got = shares(STRATEGIES[name](rng=random.Random(2)), eligible, 8_000)
    assert all(share == pytest.approx(0.25, abs=0.03) for share in got.values()), got


def test_least_connections_takes_the_idlest() -> None:
    eligible = make_states("a", "b", "c")
    eligible[0].in_flight, eligible[1].in_flight, eligible[2].in_flight = 4, 1, 3
    assert {STRATEGIES["least_connections"]().pick(eligible, NO_CTX).name for _ in range(50)} == {"b"}


def test_power_of_two_never_picks_the_busiest_and_favours_the_idlest() -> None:
    eligible = make_states("a", "b", "c")
    eligible[0].in_flight, eligible[1].in_flight, eligible[2].in_flight = 0, 5, 10
    got = shares(PowerOfTwo(rng=random.Random(3)), eligible, 9_000)
    assert got["c"] == 0.0
    # "a" wins every pair it is drawn in: 2 of the 3 pairs.
    assert got["a"] == pytest.approx(2 / 3, abs=0.03)
    assert got["b"] == pytest.approx(1 / 3, abs=0.03)


def test_peak_ewma_jumps_to_a_peak_and_decays() -> None:
    ewma = PeakEwma(tau_s=10.0)
    ewma.observe(0.010, now=0.0)
    ewma.observe(0.500, now=0.1)
    assert ewma.value(0.1) == pytest.approx(0.5)
    ewma.observe(0.010, now=0.2)  # below the peak: moves only a little
    assert 0.4 < ewma.cost < 0.5
    assert ewma.value(0.2 + 50.0) < 0.01  # five time constants later


def test_least_time_prefers_the_fast_replica_until_it_is_loaded() -> None:
    clock = FakeClock()
    fast, slow = make_states("fast", "slow")
    fast.latency.observe(0.01, clock.now)
    slow.latency.observe(0.10, clock.now)
    strategy = LeastTime(rng=random.Random(4), clock=clock)
    assert {strategy.pick([fast, slow], NO_CTX).name for _ in range(100)} == {"fast"}
    fast.in_flight = 20  # 0.01 x 21 > 0.10 x 1
    assert strategy.pick([fast, slow], NO_CTX).name == "slow"


def keys(n: int) -> list[RoutingContext]:
    return [RoutingContext(client_ip=f"10.{i // 250}.{i % 250}.7") for i in range(n)]


def test_consistent_hash_is_stable_and_moves_about_one_nth_when_a_replica_leaves() -> None:
    names = [f"r{i}" for i in range(5)]
    strategy = ConsistentHash(key="client_ip")
    contexts = keys(5_000)
    before = [strategy.pick(make_states(*names), ctx).name for ctx in contexts]
    assert before == [strategy.pick(make_states(*names), ctx).name for ctx in contexts]
    assert set(Counter(before).values()) and min(Counter(before).values()) > 5_000 / 5 * 0.6
    after = [strategy.pick(make_states(*names[1:]), ctx).name for ctx in contexts]
    moved = [b != a for b, a in zip(before, after, strict=True)]
    assert sum(moved) / len(moved) == pytest.approx(1 / 5, abs=0.05)
    # Only the keys of the replica that left moved.
    assert all(b == "r0" for b, m in zip(before, moved, strict=True) if m)


@pytest.mark.parametrize(
    "key, ctx", [("api_key", RoutingContext(api_key="sk-1")), ("session", RoutingContext(session_id="s1"))]
)
def test_consistent_hash_on_other_keys(key: str, ctx: RoutingContext) -> None:
    strategy = ConsistentHash(key=key)
    eligible = make_states("a", "b", "c")
    assert len({strategy.pick(eligible, ctx).name for _ in range(20)}) == 1


def test_bounded_load_caps_a_hot_key() -> None:
    eligible = make_states("a", "b", "c")
    hot = RoutingContext(api_key="hot")
    bounded = ConsistentHash(key="api_key", load_factor=1.25)
    for total in range(1, 31):  # 30 concurrent requests of one key
        chosen = bounded.pick(eligible, hot)
        chosen.in_flight += 1
        cap = math.ceil(1.25 * total / 3)
        assert max(s.in_flight for s in eligible) <= cap
    loads = sorted(s.in_flight for s in eligible)
    assert loads[-1] == math.ceil(1.25 * 30 / 3)  # the key's own replica is full...
    assert loads[0] >= 1  # ...and the rest spilled clockwise
    # Without a meaningful bound the hot key stays on one replica.
    unbounded_states = make_states("a", "b", "c")
    unbounded = ConsistentHash(key="api_key", load_factor=100.0)
    for _ in range(30):
        unbounded.pick(unbounded_states, hot).in_flight += 1
    assert sorted(s.in_flight for s in unbounded_states) == [0, 0, 30]


def test_consistent_hash_without_the_key_still_picks() -> None:
    eligible = make_states("a", "b")
    assert ConsistentHash(key="session").pick(eligible, RoutingContext()).name in {"a", "b"}


def test_sticky_pins_falls_back_and_repins() -> None:
    clock = FakeClock()
    strategy = Sticky(fallback="round_robin", ttl_s=60, clock=clock)
    everyone = make_states("a", "b", "c")
    ctx = RoutingContext(session_id="conv-1")
    pinned = strategy.pick(everyone, ctx).name
    assert {strategy.pick(everyone, ctx).name for _ in range(20)} == {pinned}
    others = [s for s in everyone if s.name != pinned]
    moved = strategy.pick(others, ctx).name  # pinned replica ineligible: fall back
    assert moved != pinned
    assert strategy.pick(everyone, ctx).name == moved  # now pinned to the new one


def test_sticky_sessions_are_bounded_lru_with_ttl() -> None:
    clock = FakeClock()
    strategy = Sticky(fallback="round_robin", max_sessions=3, ttl_s=10, clock=clock)
    eligible = make_states("a", "b", "c", "d")
    for i in range(5):
        strategy.pick(eligible, RoutingContext(session_id=f"s{i}"))
    assert len(strategy) == 3
    clock.now += 11
    strategy.pick(eligible, RoutingContext(session_id="fresh"))
    assert len(strategy) == 1  # the expired ones are gone


def test_sticky_rejects_a_sticky_fallback() -> None:
    with pytest.raises(ValueError, match="fallback"):
        Sticky(fallback="sticky")


def run_interval(eligible: list[ReplicaState], per_replica: dict[str, tuple[int, int, float]]) -> None:
    for s in eligible:
        ok, bad, busy = per_replica[s.name]
        s.successes += ok
        s.failures += bad
        s.busy_s += busy


def test_adaptive_weights_follow_throughput_and_errors() -> None:
    clock = FakeClock()
    strategy = AdaptiveWeights(interval_s=10, slow_start_s=30, min_share=0.05, clock=clock)
    eligible = make_states("fast", "slow", "flaky")
    strategy.pick(eligible, NO_CTX)
    # fast: 10 ms per request; slow: 100 ms; flaky: 10 ms but half its calls fail.
    run_interval(eligible, {"fast": (100, 0, 1.0), "slow": (100, 0, 10.0), "flaky": (100, 100, 1.0)})
    clock.now += 10
    got = shares(strategy, eligible, 16_000)
    assert got["fast"] == pytest.approx(1 / 1.6, abs=0.01)
    assert got["slow"] == pytest.approx(0.1 / 1.6, abs=0.01)
    assert got["flaky"] == pytest.approx(0.5 / 1.6, abs=0.01)
    assert eligible[1].effective_weight == pytest.approx(0.1)


def test_adaptive_slow_start_ramps_a_returning_replica() -> None:
    clock = FakeClock()
    strategy = AdaptiveWeights(interval_s=1000, slow_start_s=30, min_share=0.05, clock=clock)
    a, b = make_states("a", "b")
    strategy.pick([a, b], NO_CTX)  # present from the start: full weight
    strategy.pick([a], NO_CTX)  # b leaves...
    strategy.pick([a, b], NO_CTX)  # ...and returns now
    assert b.effective_weight == pytest.approx(0.05)
    clock.now += 15
    got = shares(strategy, [a, b], 3_000)
    assert got["b"] == pytest.approx(0.5 / 1.5, abs=0.01)
    clock.now += 15
    got = shares(strategy, [a, b], 2_000)
    assert got["b"] == pytest.approx(0.5, abs=0.01)


def test_every_strategy_builds_and_picks_only_from_the_eligible_set() -> None:
    eligible = make_states("a", "b")
    for name, factory in STRATEGIES.items():
        strategy = factory(rng=random.Random(5))
        ctx = RoutingContext(client_ip="1.2.3.4", session_id="s")
        assert {strategy.pick(eligible, ctx).name for _ in range(50)} <= {"a", "b"}, name


def test_forwarded_for_is_honoured_only_from_trusted_proxies() -> None:
    trusted = parse_networks(["10.0.0.0/8"])
    chain = ("6.6.6.6", "203.0.113.9", "10.1.1.1")
    assert client_address(RoutingContext(client_ip="10.0.0.2", forwarded_for=chain), trusted) == "203.0.113.9"
    assert (
        client_address(RoutingContext(client_ip="198.51.100.1", forwarded_for=chain), trusted)
        == "198.51.100.1"
    )
    assert client_address(RoutingContext(client_ip="10.0.0.2"), trusted) == "10.0.0.2"


def test_context_from_headers() -> None:
    headers = {"x-forwarded-for": "1.1.1.1, 2.2.2.2", "authorization": "Bearer sk-abc", "x-conv": "c9"}
    ctx = context_from_headers(headers, "10.0.0.1", session_header="X-Conv")
    assert ctx == RoutingContext("10.0.0.1", ("1.1.1.1", "2.2.2.2"), "sk-abc", "c9")
    with pytest.raises(ValueError, match="not an IP"):
        parse_networks(["nonsense"])

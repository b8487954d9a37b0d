"""Load-balancing strategies: small classes that pick one replica from the eligible set.

Every strategy sees only the eligible replicas (healthy, breaker not open, half-open permit
free), so breaker and health logic stay in the router. A strategy is built as
``STRATEGIES[name](rng=..., clock=..., **options)`` and answers ``pick(eligible, ctx)``;
adding one is a class of a few lines and one dict entry. No torch, no HTTP.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from blaze_ai.engines.router.context import RoutingContext

Clock = Callable[[], float]


class PeakEwma:
    """Finagle's Peak EWMA: jumps to a new peak at once, else decays with time constant tau."""

    __slots__ = ("_stamp", "cost", "tau_s")

    def __init__(self, tau_s: float = 10.0) -> None:
        self.tau_s = tau_s
        self.cost = 0.0
        self._stamp = 0.0

    def observe(self, rtt_s: float, now: float) -> None:
        """Fold in one measured round trip (or time to first token)."""
        decay = math.exp(-max(now - self._stamp, 0.0) / self.tau_s)
        self._stamp = now
        self.cost = rtt_s if rtt_s > self.cost else self.cost * decay + rtt_s * (1.0 - decay)

    def value(self, now: float) -> float:
        """The cost now, decayed toward 0 since the last observation."""
        return self.cost * math.exp(-max(now - self._stamp, 0.0) / self.tau_s)


@dataclass(slots=True)
class ReplicaState:
    """What strategies may read about one replica; the router keeps it up to date."""

    name: str
    weight: float = 1.0  # configured
    in_flight: int = 0
    latency: PeakEwma = field(default_factory=PeakEwma)
    successes: int = 0
    failures: int = 0
    busy_s: float = 0.0  # summed latency of successful calls
    picks: int = 0
    effective_weight: float = -1.0  # set by adaptive strategies; < 0 means "the configured weight"

    def __post_init__(self) -> None:
        if not self.weight > 0:
            raise ValueError(f"replica {self.name!r}: weight must be positive, got {self.weight}")


class Strategy(Protocol):
    def pick(self, eligible: Sequence[ReplicaState], ctx: RoutingContext) -> ReplicaState:
        """Choose one of ``eligible`` (never empty)."""
        ...


class RoundRobin:
    """Each replica in turn."""

    def __init__(self, *, rng: random.Random | None = None, clock: Clock = time.monotonic) -> None:
        self._next = 0

    def pick(self, eligible: Sequence[ReplicaState], ctx: RoutingContext) -> ReplicaState:
        chosen = eligible[self._next % len(eligible)]
        self._next += 1
        return chosen


def _smooth_pick(current: dict[str, float], eligible: Sequence[ReplicaState], weights: list[float]) -> int:
    """nginx's smooth weighted round robin step: add weights, take the largest, subtract the total."""
    best, best_value = 0, -math.inf
    for i, (state, weight) in enumerate(zip(eligible, weights, strict=True)):
        value = current.get(state.name, 0.0) + weight
        current[state.name] = value
        if value > best_value:
            best, best_value = i, value
    current[eligible[best].name] -= sum(weights)
    return best


class SmoothWeightedRoundRobin:
    """nginx's smooth weighted round robin: weights 5:1:1 give a a b a c a a."""

    def __init__(self, *, rng: random.Random | None = None, clock: Clock = time.monotonic) -> None:
        self._current: dict[str, float] = {}

    def pick(self, eligible: Sequence[ReplicaState], ctx: RoutingContext) -> ReplicaState:
        return eligible[_smooth_pick(self._current, eligible, [s.weight for s in eligible])]


class Random:
    """Uniformly at random."""

    def __init__(self, *, rng: random.Random | None = None, clock: Clock = time.monotonic) -> None:
        self._rng = rng or random.Random()

    def pick(self, eligible: Sequence[ReplicaState], ctx: RoutingContext) -> ReplicaState:
        return eligible[self._rng.randrange(len(eligible))]


class WeightedRandom:
    """At random, in proportion to the configured weights."""

    def __init__(self, *, rng: random.Random | None = None, clock: Clock = time.monotonic) -> None:
        self._rng = rng or random.Random()

    def pick(self, eligible: Sequence[ReplicaState], ctx: RoutingContext) -> ReplicaState:
        return self._rng.choices(eligible, weights=[s.weight for s in eligible])[0]


class LeastConnections:
    """Fewest requests in flight; ties broken at random."""

    def __init__(self, *, rng: random.Random | None = None, clock: Clock = time.monotonic) -> None:
        self._rng = rng or random.Random()

    def pick(self, eligible: Sequence[ReplicaState], ctx: RoutingContext) -> ReplicaState:
        fewest = min(s.in_flight for s in eligible)
        return self._rng.choice([s for s in eligible if s.in_flight == fewest])


class PowerOfTwo:
    """Sample two distinct replicas, take the one with fewer in flight (Envoy's default)."""

    def __init__(self, *, rng: random.Random | None = None, clock: Clock = time.monotonic) -> None:
        self._rng = rng or random.Random()

    def pick(self, eligible: Sequence[ReplicaState], ctx: RoutingContext) -> ReplicaState:
        if len(eligible) == 1:
            return eligible[0]
        a, b = self._rng.sample(range(len(eligible)), 2)
        return eligible[a] if eligible[a].in_flight <= eligible[b].in_flight else eligible[b]


class LeastTime:
    """Peak EWMA (Finagle): lowest latency cost x (in flight + 1); ties broken at random."""

    def __init__(self, *, rng: random.Random | None = None, clock: Clock = time.monotonic) -> None:
        self._rng = rng or random.Random()
        self._clock = clock

    def pick(self, eligible: Sequence[ReplicaState], ctx: RoutingContext) -> ReplicaState:
        now = self._clock()
        scores = [s.latency.value(now) * (s.in_flight + 1) for s in eligible]
        if all(cost == 0.0 for cost in scores):  # nothing measured yet: fewest in flight
            fewest = min(s.in_flight for s in eligible)
            return self._rng.choice([s for s in eligible if s.in_flight == fewest])
        best = min(scores)
        return self._rng.choice([s for s, score in zip(eligible, scores, strict=True) if score == best])


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


HASH_KEYS = ("client_ip", "api_key", "session")


class ConsistentHash:
    """A hash ring over a key (client IP, API key or session), with bounded load.

    No replica takes more than ``ceil(load_factor x average in flight)``; a hot key spills
    clockwise to the next replica. Removing one of N replicas moves about 1/N of the keys.
    Requests without the key go to the power-of-two-choices pick.
    """

    def __init__(
        self,
        *,
        key: str = "client_ip",
        load_factor: float = 1.25,
        vnodes: int = 160,
        rng: random.Random | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        if key not in HASH_KEYS:
            raise ValueError(f"consistent_hash key must be one of {HASH_KEYS}, got {key!r}")
        if load_factor < 1.0:
            raise ValueError(f"consistent_hash load_factor must be at least 1.0, got {load_factor}")
        if vnodes < 1:
            raise ValueError("consistent_hash vnodes must be at least 1")
        self._key, self._load_factor, self._vnodes = key, load_factor, vnodes
        self._rings: dict[tuple[str, ...], tuple[list[int], list[str]]] = {}
        self._fallback = PowerOfTwo(rng=rng)

    def _ring(self, names: tuple[str, ...]) -> tuple[list[int], list[str]]:
        ring = self._rings.get(names)
        if ring is None:
            points = sorted((_hash64(f"{name}#{i}"), name) for name in names for i in range(self._vnodes))
            ring = ([h for h, _ in points], [n for _, n in points])
            if len(self._rings) >= 16:  # eligible sets change rarely; keep a few
                self._rings.clear()
            self._rings[names] = ring
        return ring

    def key_of(self, ctx: RoutingContext) -> str | None:
        """The value hashed for this request, or None when the request lacks it."""
        return {"client_ip": ctx.client_ip, "api_key": ctx.api_key, "session": ctx.session_id}[self._key]

    def pick(self, eligible: Sequence[ReplicaState], ctx: RoutingContext) -> ReplicaState:
        key = self.key_of(ctx)
        if key is None:
            return self._fallback.pick(eligible, ctx)
        by_name = {s.name: s for s in eligible}
        hashes, owners = self._ring(tuple(by_name))
        total = sum(s.in_flight for s in eligible) + 1
        capacity = math.ceil(self._load_factor * total / len(eligible))
        start = bisect.bisect(hashes, _hash64(key))
        seen: set[str] = set()
        for step in range(len(owners)):
            name = owners[(start + step) % len(owners)]
            if name in seen:
                continue
            seen.add(name)
            if by_name[name].in_flight < capacity:
                return by_name[name]
        return min(eligible, key=lambda s: s.in_flight)  # unreachable: someone is below average


class Sticky:
    """Pin each session to a replica; fall back to ``fallback`` when it has none or it is ineligible.

    Sessions live in an LRU of at most ``max_sessions`` entries, each forgotten ``ttl_s`` after
    its last use.
    """

    def __init__(
        self,
        *,
        fallback: str = "power_of_two",
        max_sessions: int = 10_000,
        ttl_s: float = 3600.0,
        rng: random.Random | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        if fallback == "sticky" or fallback not in STRATEGIES:
            raise ValueError(f"sticky fallback must be one of {sorted(set(STRATEGIES) - {'sticky'})}")
        if max_sessions < 1 or ttl_s <= 0:
            raise ValueError("sticky max_sessions must be at least 1 and ttl_s positive")
        self._fallback = STRATEGIES[fallback](rng=rng, clock=clock)
        self._max, self._ttl, self._clock = max_sessions, ttl_s, clock
        self._pins: OrderedDict[str, tuple[str, float]] = OrderedDict()  # session -> (replica, expiry)

    def __len__(self) -> int:
        return len(self._pins)

    def pick(self, eligible: Sequence[ReplicaState], ctx: RoutingContext) -> ReplicaState:
        session = ctx.session_id
        if session is None:
            return self._fallback.pick(eligible, ctx)
        now = self._clock()
        while self._pins and next(iter(self._pins.values()))[1] <= now:  # the oldest use expires first
            self._pins.popitem(last=False)
        pin = self._pins.get(session)
        chosen = None
        if pin is not None:
            chosen = next((s for s in eligible if s.name == pin[0]), None)
        if chosen is None:
            chosen = self._fallback.pick(eligible, ctx)
        self._pins[session] = (chosen.name, now + self._ttl)
        self._pins.move_to_end(session)
        while len(self._pins) > self._max:
            self._pins.popitem(last=False)
        return chosen


class AdaptiveWeights:
    """Weights follow measured throughput and error rate, with slow start for a returning replica.

    Every ``interval_s`` each replica's measured weight becomes its throughput per busy second
    (successes / summed latency, so it does not depend on the traffic it was sent) times its
    success rate over the interval, relative to the best replica and at least ``min_share``. A
    replica that (re)joins the eligible set ramps linearly from ``min_share`` to full weight over
    ``slow_start_s``. Picks are smooth weighted round robin over configured x measured x ramp.
    """

    def __init__(
        self,
        *,
        interval_s: float = 10.0,
        slow_start_s: float = 30.0,
        min_share: float = 0.05,
        rng: random.Random | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        if interval_s <= 0 or slow_start_s < 0 or not 0 < min_share <= 1:
            raise ValueError("adaptive needs interval_s > 0, slow_start_s >= 0 and min_share in (0, 1]")
        self._interval, self._slow_start, self._min_share = interval_s, slow_start_s, min_share
        self._clock = clock
        self._measured: dict[str, float] = {}
        self._base: dict[str, tuple[int, int, float]] = {}  # counters at the last recompute
        self._joined: dict[str, float] = {}
        self._last_names: frozenset[str] | None = None
        self._next_recompute = clock() + interval_s
        self._current: dict[str, float] = {}

    def _track_joins(self, eligible: Sequence[ReplicaState], now: float) -> None:
        names = frozenset(s.name for s in eligible)
        if names == self._last_names:
            return
        if self._last_names is not None:  # replicas present at the first pick start at full weight
            for name in names - self._last_names:
                self._joined[name] = now
        self._last_names = names

    def _recompute(self, eligible: Sequence[ReplicaState]) -> None:
        raw: dict[str, float] = {}
        for s in eligible:
            successes, failures, busy = self._base.get(s.name, (0, 0, 0.0))
            ok, bad, spent = s.successes - successes, s.failures - failures, s.busy_s - busy
            self._base[s.name] = (s.successes, s.failures, s.busy_s)
            if ok + bad > 0:
                throughput = ok / spent if spent > 0 else 0.0
                raw[s.name] = throughput * ok / (ok + bad)
        best = max(raw.values(), default=0.0)
        for name, value in raw.items():
            self._measured[name] = max(self._min_share, value / best) if best > 0 else self._min_share

    def _ramp(self, name: str, now: float) -> float:
        joined = self._joined.get(name)
        if joined is None:
            return 1.0
        if self._slow_start == 0 or now - joined >= self._slow_start:
            del self._joined[name]
            return 1.0
        return max(self._min_share, (now - joined) / self._slow_start)

    def pick(self, eligible: Sequence[ReplicaState], ctx: RoutingContext) -> ReplicaState:
        now = self._clock()
        self._track_joins(eligible, now)
        if now >= self._next_recompute:
            self._recompute(eligible)
            self._next_recompute = now + self._interval
        weights = [s.weight * self._measured.get(s.name, 1.0) * self._ramp(s.name, now) for s in eligible]
        for s, weight in zip(eligible, weights, strict=True):
            s.effective_weight = weight
        return eligible[_smooth_pick(self._current, eligible, weights)]


STRATEGIES: dict[str, Callable[..., Strategy]] = {
    "round_robin": RoundRobin,
    "weighted_round_robin": SmoothWeightedRoundRobin,
    "random": Random,
    "weighted_random": WeightedRandom,
    "least_connections": LeastConnections,
    "power_of_two": PowerOfTwo,
    "least_time": LeastTime,
    "consistent_hash": ConsistentHash,
    "sticky": Sticky,
    "adaptive": AdaptiveWeights,
}

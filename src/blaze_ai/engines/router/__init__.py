"""Balance a model's requests over its replicas: strategies, breakers, health checks, retries.

Example::

    router = Router([LocalReplica("a", engine_a), RemoteReplica("http://10.0.0.2:8000", model="m")],
                    RouterConfig(strategy="least_time"))
    await router.start()
    result = await router.execute(GenerationRequest(prompt="Hi"), RoutingContext(client_ip="1.2.3.4"))
    await router.stop()
"""

from blaze_ai.engines.router.context import RoutingContext, client_address, context_from_headers
from blaze_ai.engines.router.health import HealthChecker, HealthConfig
from blaze_ai.engines.router.remote import BLAZE_HEALTH_PATH, OPENAI_HEALTH_PATH, RemoteReplica
from blaze_ai.engines.router.replicas import LocalReplica, ManagedEngine, Replica
from blaze_ai.engines.router.router import RetryBudget, Router, RouterConfig
from blaze_ai.engines.router.strategies import (
    STRATEGIES,
    AdaptiveWeights,
    ConsistentHash,
    LeastConnections,
    LeastTime,
    PeakEwma,
    PowerOfTwo,
    Random,
    ReplicaState,
    RoundRobin,
    SmoothWeightedRoundRobin,
    Sticky,
    Strategy,
    WeightedRandom,
)

__all__ = [
    "BLAZE_HEALTH_PATH",
    "OPENAI_HEALTH_PATH",
    "STRATEGIES",
    "AdaptiveWeights",
    "ConsistentHash",
    "HealthChecker",
    "HealthConfig",
    "LeastConnections",
    "LeastTime",
    "LocalReplica",
    "ManagedEngine",
    "PeakEwma",
    "PowerOfTwo",
    "Random",
    "RemoteReplica",
    "Replica",
    "ReplicaState",
    "RetryBudget",
    "RoundRobin",
    "Router",
    "RouterConfig",
    "RoutingContext",
    "SmoothWeightedRoundRobin",
    "Sticky",
    "Strategy",
    "WeightedRandom",
    "client_address",
    "context_from_headers",
]

"""The engine core: protocols, statuses, circuit breaker and engine manager.

Engine kinds live in subpackages (``llm``, ``diffusion``, ``embedding``,
``router``); importing this package imports none of them (and no torch).
"""

from blaze_ai.engines.base import (
    ALLOWED_TRANSITIONS,
    Engine,
    EngineStatus,
    Executable,
    HealthCheckable,
    HealthReport,
    Lifecycle,
    transition,
)
from blaze_ai.engines.breaker import BreakerConfig, BreakerState, CircuitBreaker, Outcome, outcome_of
from blaze_ai.engines.fake import FakeConfig, FakeEngine
from blaze_ai.engines.manager import EngineManager, ManagerConfig

__all__ = [
    "ALLOWED_TRANSITIONS",
    "BreakerConfig",
    "BreakerState",
    "CircuitBreaker",
    "Engine",
    "EngineManager",
    "EngineStatus",
    "Executable",
    "FakeConfig",
    "FakeEngine",
    "HealthCheckable",
    "HealthReport",
    "Lifecycle",
    "ManagerConfig",
    "Outcome",
    "outcome_of",
    "transition",
]

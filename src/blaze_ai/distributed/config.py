"""How a model's replicas run on Ray: count, resources per replica and restart policy.

Plain values only, so the config loader builds it from YAML and nothing here imports Ray::

    models:
      - name: tiny
        kind: llm
        llm: {source: builtin:tiny-llama}
        ray: {replicas: 2, num_cpus: 1, memory_mb: 2048, max_restarts: 3}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: The command that installs what the Ray code paths need.
RAY_INSTALL = "pip install 'blaze-ai[ray]'  (or: pip install \"ray[default]>=2.40,<3\")"
RAY_MISSING = f"this configuration runs replicas on Ray, but Ray is not installed; run: {RAY_INSTALL}"

#: ``scheduling`` value -> Ray scheduling strategy.
SCHEDULING = {"spread": "SPREAD", "default": "DEFAULT"}


@dataclass(frozen=True, slots=True)
class RayReplicaConfig:
    """Replicas of one model as Ray actors; each becomes a replica of the model's router."""

    replicas: int = 1
    num_cpus: float = 1.0  # Ray logical CPUs reserved per replica
    num_gpus: float = 0.0  # GPUs per replica (fractions share a GPU); Ray sets CUDA_VISIBLE_DEVICES
    memory_mb: int | None = None  # memory reserved per replica for scheduling; None = no reservation
    max_restarts: int = 3  # Ray restarts a dead replica this often (-1 = forever)
    max_task_retries: int = 0  # Ray re-sends calls to a restarted replica (0: the router retries instead)
    max_concurrency: int = 256  # requests one replica actor runs at once
    scheduling: str = "spread"  # spread: replicas on different nodes when possible; default: Ray packs
    probe_timeout_s: float = 2.0  # a health probe slower than this counts as failed
    weight: float = 1.0  # router weight of each replica

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ValueError("ray.replicas must be at least 1 (drop the ray mapping to run in process)")
        if self.num_cpus < 0 or self.num_gpus < 0:
            raise ValueError("ray.num_cpus and ray.num_gpus must be >= 0, e.g. num_cpus: 1, num_gpus: 0.5")
        if self.memory_mb is not None and self.memory_mb < 1:
            raise ValueError("ray.memory_mb must be at least 1 (megabytes), or left out")
        if self.max_restarts < -1 or self.max_task_retries < -1:
            raise ValueError("ray.max_restarts and ray.max_task_retries must be >= 0, or -1 for no limit")
        if self.max_concurrency < 1:
            raise ValueError("ray.max_concurrency must be at least 1")
        if self.scheduling not in SCHEDULING:
            raise ValueError(f"ray.scheduling must be one of {', '.join(SCHEDULING)}")
        if self.probe_timeout_s <= 0 or self.weight <= 0:
            raise ValueError("ray.probe_timeout_s and ray.weight must be positive")

    def actor_options(self) -> dict[str, Any]:
        """Ray ``.options(...)`` for one replica actor."""
        options: dict[str, Any] = {
            "num_cpus": self.num_cpus,
            "num_gpus": self.num_gpus,
            "max_restarts": self.max_restarts,
            "max_task_retries": self.max_task_retries,
            "max_concurrency": self.max_concurrency,
            "scheduling_strategy": SCHEDULING[self.scheduling],
        }
        if self.memory_mb is not None:
            options["memory"] = self.memory_mb * 1024 * 1024
        return options

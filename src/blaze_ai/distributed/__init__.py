"""Scale out: engine replicas as Ray actors behind a model's router.

Nothing here imports Ray until a function is called (see :mod:`blaze_ai.distributed.cluster`);
``RayReplica`` and ``EngineActor`` live in :mod:`blaze_ai.distributed.ray_replica`, which needs Ray.
"""

from blaze_ai.distributed.cluster import build_ray_replicas, connect, disconnect, require_ray
from blaze_ai.distributed.config import RAY_INSTALL, RAY_MISSING, RayReplicaConfig

__all__ = [
    "RAY_INSTALL",
    "RAY_MISSING",
    "RayReplicaConfig",
    "build_ray_replicas",
    "connect",
    "disconnect",
    "require_ray",
]

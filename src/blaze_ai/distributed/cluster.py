"""Joining a Ray cluster and placing a model's replicas on it.

Ray is imported here (and in :mod:`blaze_ai.distributed.ray_replica`) only when a function is
called, so a configuration without ``ray:`` never imports it, and a missing install fails with the
command that fixes it.

Example::

    connect("10.0.0.1:6379")            # the head started with `ray start --head --port=6379`
    replicas = build_ray_replicas("tiny", "llm", LLMConfig(source="builtin:tiny-llama"),
                                  RayReplicaConfig(replicas=2, num_cpus=1))
    router = Router(replicas, RouterConfig())
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from blaze_ai.distributed.config import RAY_MISSING, RayReplicaConfig
from blaze_ai.errors import ConfigError, UnavailableError

LOOPBACK = ("127.0.0.1", "localhost")


def require_ray() -> ModuleType:
    """The ``ray`` module, or a :class:`ConfigError` naming the install command."""
    try:
        return importlib.import_module("ray")
    except ImportError as exc:
        raise ConfigError(RAY_MISSING) from exc


def connect(address: str | None, *, namespace: str | None = None) -> dict[str, float]:
    """Join the Ray cluster at ``address`` (``HOST:PORT``, ``auto``, ``ray://...``) and return its resources.

    ``None`` joins the cluster named by ``RAY_ADDRESS`` or, with none, starts a one-machine
    cluster. A loopback address keeps this process's Ray traffic on 127.0.0.1 as well.
    Calling it again while connected changes nothing.
    """
    ray = require_ray()
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"address": address, "namespace": namespace}
        if address is not None and address.rsplit(":", 1)[0] in LOOPBACK:
            kwargs["_node_ip_address"] = "127.0.0.1"
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UnavailableError(_join_failure(address, exc)) from exc
    resources: dict[str, float] = dict(ray.cluster_resources())
    return resources


def _join_failure(address: str | None, exc: Exception) -> str:
    message = f"cannot join the Ray cluster at {address or 'RAY_ADDRESS'}: {exc}"
    if "auth" in str(exc).lower():  # Ray never turns token auth on by itself for an explicit address
        message += (
            "; the cluster uses token authentication: set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN "
            "(printed by `ray get-auth-token` on the head node) before starting Blaze"
        )
    return message


def disconnect() -> None:
    """Leave the cluster (replica actors owned by this process end with it)."""
    ray = require_ray()
    if ray.is_initialized():
        ray.shutdown()


def build_ray_replicas(
    model_name: str, kind: str, engine_config: Any, ray_config: RayReplicaConfig
) -> list[Any]:
    """Create ``ray_config.replicas`` engine actors and return them as router replicas (``RayReplica``).

    Needs :func:`connect` first. Actors are placed by Ray with ``ray_config``'s resources and restart
    policy; each starts its engine on first use, so ``Router.start()`` health checks bring them up.
    """
    ray = require_ray()
    if not ray.is_initialized():
        raise UnavailableError(
            f"model {model_name!r} runs on Ray but Blaze is not connected to a cluster; "
            "start it with `blaze serve --ray-address HOST:PORT` (or call blaze_ai.distributed.connect)"
        )
    from blaze_ai.distributed.ray_replica import EngineActor, RayReplica

    actor_class, options = ray.remote(EngineActor), ray_config.actor_options()
    replicas = []
    for index in range(ray_config.replicas):
        name = f"{model_name}-ray-{index}"
        actor = actor_class.options(name=name, **options).remote(kind, engine_config)
        replicas.append(
            RayReplica(name, actor, weight=ray_config.weight, probe_timeout_s=ray_config.probe_timeout_s)
        )
    return replicas

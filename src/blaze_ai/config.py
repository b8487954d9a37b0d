"""Configuration: one YAML file loaded into frozen, validated dataclasses.

Unknown keys, wrong types and bad values are errors that name the key and the
fix (``models[0].llm.dtype: ...``); nothing is ignored. ``BLAZE_*`` environment
variables override server settings (``BLAZE_PORT=9000``, ``BLAZE_API_KEYS=a,b``).
With no file, the embedded default (``default.yaml`` in this package) is used.

A model entry names its kind and passes the mapping under that kind's key to
the engine's own config dataclass::

    models:
      - name: smollm2
        kind: llm                 # llm | diffusion | embedding | fake
        llm: {source: builtin:smollm2-135m, dtype: bfloat16}
        replicas: 1               # in-process copies behind the model's router
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from blaze_ai.distributed.config import RayReplicaConfig
from blaze_ai.engines.breaker import BreakerConfig
from blaze_ai.engines.manager import ManagerConfig
from blaze_ai.errors import ConfigError

DEFAULT_CONFIG = Path(__file__).with_name("default.yaml")

#: kind -> (module, config class, engine class); imported only when a model uses the kind.
ENGINE_KINDS: dict[str, tuple[str, str, str]] = {
    "llm": ("blaze_ai.engines.llm", "LLMConfig", "LLMEngine"),
    "diffusion": ("blaze_ai.engines.diffusion", "DiffusionConfig", "DiffusionEngine"),
    "embedding": ("blaze_ai.engines.embedding", "EmbeddingConfig", "EmbeddingEngine"),
    "fake": ("blaze_ai.engines.fake", "FakeConfig", "FakeEngine"),
}


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """HTTP server, security, limits and logging settings."""

    host: str = "127.0.0.1"
    port: int = 8000
    api_keys: tuple[str, ...] = ()
    admin_keys: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = ()
    max_body_bytes: int = 1_048_576
    max_messages: int = 256
    max_tokens_limit: int = 4096
    max_n: int = 8
    max_stop: int = 4
    max_concurrency: int = 512
    rate_limit_rpm: int = 0  # requests per minute per key; 0 = off
    rate_limit_tpm: int = 0  # tokens per minute per key; 0 = off
    request_timeout_s: float = 300.0
    drain_grace_s: float = 30.0
    image_url_ttl_s: float = 600.0
    model_memory_budget_mb: int = 0
    log_level: str = "info"
    log_json: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be between 0 and 65535 (0 picks a free port)")
        for name in ("max_body_bytes", "max_messages", "max_tokens_limit", "max_n", "max_concurrency"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_stop < 0 or self.rate_limit_rpm < 0 or self.rate_limit_tpm < 0:
            raise ValueError("max_stop and rate limits must be >= 0 (0 turns a rate limit off)")
        if self.request_timeout_s <= 0 or self.drain_grace_s < 0 or self.image_url_ttl_s <= 0:
            raise ValueError("request_timeout_s and image_url_ttl_s must be > 0, drain_grace_s >= 0")
        if self.model_memory_budget_mb < 0:
            raise ValueError(
                "model_memory_budget_mb must be 0 (size it from the device's memory) or a number of MiB"
            )
        if self.log_level not in ("debug", "info", "warning", "error"):
            raise ValueError("log_level must be one of debug, info, warning, error")


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """One served model: its engine kind and settings, breaker and replicas."""

    name: str
    kind: str
    engine: Any  # the kind's config dataclass (LLMConfig, DiffusionConfig, ...)
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    replicas: int = 1
    router: Mapping[str, Any] = field(default_factory=dict)
    remotes: tuple[Mapping[str, Any], ...] = ()
    ray: RayReplicaConfig | None = None  # replicas on a Ray cluster

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("name must be a non-empty model id such as 'smollm2'")
        if self.replicas < 0 or (self.replicas == 0 and not self.remotes and self.ray is None):
            raise ValueError("replicas must be >= 1, or 0 when remotes or ray replicas are given")


@dataclass(frozen=True, slots=True)
class BlazeConfig:
    """The whole configuration."""

    server: ServerConfig = field(default_factory=ServerConfig)
    manager: ManagerConfig = field(default_factory=ManagerConfig)
    cache: Mapping[str, Any] = field(default_factory=dict)
    models: tuple[ModelConfig, ...] = ()

    def model(self, name: str) -> ModelConfig:
        for model in self.models:
            if model.name == name:
                return model
        raise KeyError(name)


# -- loading ------------------------------------------------------------------------
def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> BlazeConfig:
    """Read ``path`` (or the embedded default) and apply ``BLAZE_*`` overrides."""
    source = Path(path) if path is not None else DEFAULT_CONFIG
    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {source}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source} is not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {exc}") from exc
    return parse_config(raw if raw is not None else {}, env=os.environ if env is None else env)


def parse_config(raw: Any, env: Mapping[str, str] | None = None) -> BlazeConfig:
    """Validate a parsed YAML document into a :class:`BlazeConfig`."""
    top = _mapping(raw, "config")
    _check_keys(top, {"server", "manager", "breaker", "cache", "models"}, "config")
    server_raw = dict(_mapping(top.get("server", {}), "server"))
    server_raw.update(_env_overrides(env or {}))
    default_breaker = _mapping(top.get("breaker", {}), "breaker")
    models = top.get("models", [])
    if not isinstance(models, list):
        raise ConfigError("models: expected a list of model entries")
    parsed = tuple(_model(m, f"models[{i}]", default_breaker) for i, m in enumerate(models))
    first: dict[str, int] = {}
    for i, model in enumerate(parsed):
        if model.name in first:
            raise ConfigError(
                f"models[{i}].name: {model.name!r} is already used by models[{first[model.name]}]; "
                "give each model a unique name"
            )
        first[model.name] = i
    return BlazeConfig(
        server=build(ServerConfig, server_raw, "server"),
        manager=build(ManagerConfig, _mapping(top.get("manager", {}), "manager"), "manager"),
        cache=_cache(top.get("cache", {})),
        models=parsed,
    )


def _model(raw: Any, path: str, default_breaker: Mapping[str, Any]) -> ModelConfig:
    entry = _mapping(raw, path)
    kind = entry.get("kind")
    if not isinstance(kind, str) or kind not in ENGINE_KINDS:
        raise ConfigError(f"{path}.kind: must be one of {', '.join(ENGINE_KINDS)}, got {kind!r}")
    _check_keys(entry, {"name", "kind", kind, "breaker", "replicas", "router", "remotes", "ray"}, path)
    if not isinstance(entry.get("name"), str):
        raise ConfigError(f"{path}.name: required, a string such as 'smollm2'")
    breaker = {**default_breaker, **_mapping(entry.get("breaker", {}), f"{path}.breaker")}
    remotes = entry.get("remotes", [])
    if not isinstance(remotes, list):
        raise ConfigError(f"{path}.remotes: expected a list of {{url: ...}} entries")
    try:
        engine_cls = engine_config_class(kind)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{path}.kind: engine kind {kind!r} is not available here ({exc})") from exc
    values = {
        "name": entry["name"],
        "kind": kind,
        "engine": build(engine_cls, _mapping(entry.get(kind, {}), f"{path}.{kind}"), f"{path}.{kind}"),
        "breaker": build(BreakerConfig, breaker, f"{path}.breaker"),
        "replicas": entry.get("replicas", 1),
        "router": _mapping(entry.get("router", {}), f"{path}.router"),
        "remotes": tuple(_mapping(r, f"{path}.remotes[{i}]") for i, r in enumerate(remotes)),
        "ray": build(RayReplicaConfig, _mapping(entry["ray"], f"{path}.ray"), f"{path}.ray")
        if "ray" in entry
        else None,
    }
    _check_type(values["replicas"], int, f"{path}.replicas")
    _check_router(values["router"], f"{path}.router")
    try:
        return ModelConfig(**values)
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def _cache(raw: Any) -> Mapping[str, Any]:
    """The ``cache:`` mapping, validated now (the cache is built by the server)."""
    from blaze_ai.cache import cache_config

    mapping = _mapping(raw, "cache")
    cache_config(mapping)
    return mapping


def _check_router(raw: Mapping[str, Any], path: str) -> None:
    """Validate a model's ``router:`` mapping now, so ``blaze config check`` catches mistakes."""
    from blaze_ai.engines.router import RouterConfig

    _check_keys(raw, {f.name for f in dataclasses.fields(RouterConfig)}, path)
    try:
        RouterConfig(**raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def engine_config_class(kind: str) -> type[Any]:
    module, config_name, _ = ENGINE_KINDS[kind]
    return typing.cast(type[Any], getattr(importlib.import_module(module), config_name))


def engine_class(kind: str) -> type[Any]:
    module, _, engine_name = ENGINE_KINDS[kind]
    return typing.cast(type[Any], getattr(importlib.import_module(module), engine_name))


def build(cls: type[Any], raw: Mapping[str, Any], path: str) -> Any:
    """Build the frozen dataclass ``cls`` from ``raw``, checking keys and types."""
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    _check_keys(raw, fields, path)
    kwargs = {key: _coerce(value, hints[key], f"{path}.{key}") for key, value in raw.items()}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc


# -- checks -------------------------------------------------------------------------
def _mapping(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{path}: expected a mapping (key: value), got {type(value).__name__}")
    return value


def _check_keys(raw: Mapping[str, Any], allowed: set[str], path: str) -> None:
    unknown = sorted(str(key) for key in raw if key not in allowed)  # YAML keys may be ints
    if unknown:
        raise ConfigError(f"{path}.{unknown[0]}: unknown key; known keys are {', '.join(sorted(allowed))}")


def _check_type(value: Any, expected: type, path: str) -> None:
    if (isinstance(value, bool) and expected is not bool) or not isinstance(value, expected):
        raise ConfigError(f"{path}: expected {expected.__name__}, got {type(value).__name__} {value!r}")


def _coerce(value: Any, hint: Any, path: str) -> Any:
    """Check ``value`` against a simple annotation; lists become tuples."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        hint = next(o for o in options if o is not type(None))
        origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__} {value!r}")
        item = typing.get_args(hint)[0]
        return tuple(_coerce(v, item, f"{path}[{i}]") for i, v in enumerate(value))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool):
        _check_type(value, hint, path)
    return value


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """``BLAZE_<FIELD>`` variables for server fields, parsed by the field's type."""
    hints = typing.get_type_hints(ServerConfig)
    out: dict[str, Any] = {}
    for name, hint in hints.items():
        value = env.get(f"BLAZE_{name.upper()}")
        if value is None:
            continue
        text = value.strip()
        if typing.get_origin(hint) is tuple:
            out[name] = [v.strip() for v in text.split(",") if v.strip()]
        elif hint is bool:
            if text.lower() not in _TRUE + _FALSE:
                raise ConfigError(f"BLAZE_{name.upper()}: expected true or false, got {value!r}")
            out[name] = text.lower() in _TRUE
        elif hint in (int, float):
            try:
                out[name] = hint(text)
            except ValueError:
                raise ConfigError(f"BLAZE_{name.upper()}: expected a number, got {value!r}") from None
        else:
            out[name] = text
    return out


def redacted(config: BlazeConfig) -> dict[str, Any]:
    """The resolved config as plain data, with keys hidden, for printing."""
    data = _plain(config)
    server = data["server"]
    for key in ("api_keys", "admin_keys"):
        server[key] = ["***"] * len(server[key])
    return typing.cast(dict[str, Any], data)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value

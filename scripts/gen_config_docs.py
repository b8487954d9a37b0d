"""Write docs/configuration.md from the config dataclasses: every key, its type, default and meaning.

    .venv/bin/python scripts/gen_config_docs.py           # rewrite docs/configuration.md
    .venv/bin/python scripts/gen_config_docs.py --check   # exit 1 if the page is out of date

A key's meaning is the comment on its line in the dataclass (``name: int = 1  # meaning``) or the
``#:`` comment lines above it.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import re
import sys
import typing
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "configuration.md"

# (YAML path, "module:Class", what the section is)
SECTIONS: list[tuple[str, str, str]] = [
    ("server", "blaze_ai.config:ServerConfig", "HTTP server, keys, limits and logging."),
    ("manager", "blaze_ai.engines.manager:ManagerConfig", "Health checks, restarts and shutdown of engines."),
    ("breaker", "blaze_ai.engines.breaker:BreakerConfig", "Default circuit breaker of every model."),
    ("cache", "blaze_ai.cache.config:CacheConfig", "The response cache."),
    ("models[]", "blaze_ai.config:ModelConfig", "One served model."),
    ("models[].llm", "blaze_ai.engines.llm:LLMConfig", "An LLM engine (`kind: llm`)."),
    ("models[].diffusion", "blaze_ai.engines.diffusion:DiffusionConfig", "A diffusion engine."),
    ("models[].embedding", "blaze_ai.engines.embedding:EmbeddingConfig", "An embedding engine."),
    ("models[].fake", "blaze_ai.engines.fake:FakeConfig", "A model-free engine for tests and demos."),
    (
        "models[].breaker",
        "blaze_ai.engines.breaker:BreakerConfig",
        "This model's breaker; overrides `breaker`.",
    ),
    ("models[].router", "blaze_ai.engines.router:RouterConfig", "How requests are balanced over replicas."),
    ("models[].ray", "blaze_ai.distributed:RayReplicaConfig", "Replicas as Ray actors."),
]
#: models[] keys that are not fields of ModelConfig's constructor as written in YAML.
MODEL_KEYS = {
    "engine": ("<kind>", "mapping", "{}", "the engine's settings under the key named by `kind`: `llm:`, ..."),
}
REMOTES = "blaze_ai.engines.router:RemoteReplica"

#: Meanings for fields whose dataclass line has no comment, by "Class.field".
NOTES = {
    "ServerConfig.host": "listen address (`0.0.0.0` for every interface)",
    "ServerConfig.port": "listen port; 0 picks a free one",
    "ServerConfig.api_keys": "keys accepted on `/v1` routes; none: open",
    "ServerConfig.admin_keys": "keys accepted on `/admin` routes (and `/v1`)",
    "ServerConfig.cors_origins": "origins allowed by CORS; none: CORS closed",
    "ServerConfig.trusted_proxies": "peers (CIDRs) whose `X-Forwarded-For` is believed",
    "ServerConfig.max_body_bytes": "larger request bodies get 413",
    "ServerConfig.max_messages": "most chat messages per request",
    "ServerConfig.max_tokens_limit": "largest `max_tokens` a request may ask",
    "ServerConfig.max_n": "largest `n` (choices or images) per request",
    "ServerConfig.max_stop": "most stop sequences per request",
    "ServerConfig.max_concurrency": "requests in flight on `/v1` before 429",
    "ServerConfig.request_timeout_s": "deadline from arrival (queue time counts); then 504",
    "ServerConfig.drain_grace_s": "on SIGTERM, time in-flight requests get to finish",
    "ServerConfig.image_url_ttl_s": "how long `response_format: url` images are kept",
    "ServerConfig.model_memory_budget_mb": (
        "MiB for the shared model cache's weights and KV caches (LRU eviction past it); 0: sized at "
        "start from the GPU's free memory or 75 % of RAM, see [operations](operations.md#memory-budget)"
    ),
    "ServerConfig.log_level": "debug, info, warning or error",
    "ServerConfig.log_json": "one JSON object per log line",
    "ManagerConfig.health_interval_s": "time between health checks of each engine",
    "ManagerConfig.health_jitter": "share of random spread on the interval",
    "ManagerConfig.health_timeout_s": "a slower check counts as failed",
    "ManagerConfig.unhealthy_after": "failed checks in a row before a restart",
    "ManagerConfig.restart_base_s": "first restart delay",
    "ManagerConfig.restart_factor": "delay growth per restart",
    "ManagerConfig.restart_max_s": "longest restart delay",
    "ManagerConfig.quarantine_after": "restarts within the window before quarantine",
    "ManagerConfig.quarantine_window_s": "window that counts restarts",
    "ManagerConfig.start_timeout_s": "longest model load",
    "ManagerConfig.stop_timeout_s": "longest engine stop",
    "ManagerConfig.drain_grace_s": "default time in-flight work gets when draining an engine",
    "ManagerConfig.event_log_size": "events kept for `/admin/engines`",
    "BreakerConfig.failure_threshold": "consecutive failures that open it",
    "BreakerConfig.window_size": "calls in the sliding window",
    "BreakerConfig.min_calls": "calls needed before the failure rate counts",
    "BreakerConfig.failure_rate": "share of failed calls in the window that opens it",
    "BreakerConfig.open_base_s": "first open period; doubles on each trip in a row",
    "BreakerConfig.open_max_s": "longest open period",
    "BreakerConfig.jitter": "random spread on the open period",
    "BreakerConfig.half_open_max_calls": "trial calls at a time when half-open",
    "BreakerConfig.success_threshold": "successful trials that close it",
    "CacheConfig.ttl_s": "seconds an entry lives",
    "ModelConfig.name": "the model id clients send (`model`)",
    "ModelConfig.kind": "llm, diffusion, embedding or fake",
    "ModelConfig.breaker": "this model's breaker, merged over the top-level `breaker`",
    "ModelConfig.replicas": "in-process copies behind the model's router (0 with remotes only)",
    "ModelConfig.router": "the model's router settings, see `models[].router`",
    "ModelConfig.remotes": "other servers to balance over, see `models[].remotes[]`",
    "DiffusionConfig.source": "`builtin:tiny-sd`, `builtin:tiny-ddpm`, a local diffusers folder or a hub id",
    "DiffusionConfig.pipeline": "auto, or the diffusers pipeline kind",
    "DiffusionConfig.dtype": "float32, bfloat16 or float16 (GPU)",
    "DiffusionConfig.attention_slicing": "compute attention in slices (less memory)",
    "DiffusionConfig.vae_slicing": "decode images one at a time (less memory)",
    "DiffusionConfig.vae_tiling": "decode large images in tiles (less memory)",
    "DiffusionConfig.cpu_offload": "none, model or sequential (GPU machines)",
    "DiffusionConfig.safety_checker": "run the pipeline's safety checker when it has one",
    "DiffusionConfig.width": "default width; null: the model's size",
    "DiffusionConfig.height": "default height; null: the model's size",
    "DiffusionConfig.steps": "default denoising steps",
    "DiffusionConfig.guidance": "default classifier-free guidance scale",
    "DiffusionConfig.max_width": "largest width a request may ask",
    "DiffusionConfig.max_height": "largest height a request may ask",
    "DiffusionConfig.max_steps": "most steps a request may ask",
    "DiffusionConfig.max_images_per_request": "largest `n`",
    "DiffusionConfig.max_batch_size": "images generated together",
    "DiffusionConfig.max_wait_ms": "how long a batch waits to fill",
    "DiffusionConfig.max_queue": "queued images before 429",
    "EmbeddingConfig.source": "`builtin:all-minilm-l6-v2`, a local folder or a hub id",
    "EmbeddingConfig.device": "cpu, cuda or cuda:N",
    "EmbeddingConfig.dtype": "float32, bfloat16 or float16 (GPU)",
    "EmbeddingConfig.normalize": "allow L2-normalised vectors (requests ask by default)",
    "EmbeddingConfig.max_batch_size": "inputs embedded together",
    "EmbeddingConfig.max_wait_ms": "how long a batch waits to fill; 0 starts at once",
    "EmbeddingConfig.max_queue": "queued inputs before 429",
    "EmbeddingConfig.max_inputs_per_request": "most inputs in one request",
    "EmbeddingConfig.max_tokens_per_input": "longer inputs are refused (or cut with `truncate`)",
    "EmbeddingConfig.truncate": "cut long inputs instead of refusing them",
    "EmbeddingConfig.allow_download": "allow a hub download (off: local files only)",
    "FakeConfig.start_delay_s": "seconds a start takes",
    "FakeConfig.seed": "seed of the failure draws",
    "RouterConfig.strategy": "see [router](router.md#strategies)",
    "RouterConfig.strategy_options": "the strategy's own options, e.g. `{key: session}`",
    "RouterConfig.breaker": "per-replica breaker (default: the model's `breaker`)",
    "RouterConfig.health_interval_s": "time between replica probes",
    "RouterConfig.health_timeout_s": "a slower probe fails",
    "RouterConfig.health_rise": "passed probes before a replica is healthy again",
    "RouterConfig.health_fall": "failed probes before a replica is unhealthy",
    "RouterConfig.max_retries": "retries on other replicas before anything reached the client",
    "RouterConfig.session_header": "header that carries the session id (sticky, consistent hash)",
    "RouterConfig.trusted_proxies": "default: `server.trusted_proxies`",
    "RouterConfig.ewma_tau_s": "decay time of the latency average (`least_time`)",
    "RayReplicaConfig.replicas": "Ray actors, each a replica of the model's router",
    "EmbeddingConfig.cache_budget_mb": "model cache budget when the engine has its own cache",
}

HEADER = """\
# Configuration reference

<!-- Generated by scripts/gen_config_docs.py from the config dataclasses; do not edit by hand. -->

`blaze serve --config FILE` reads one YAML file; with no file the embedded default
(`src/blaze_ai/default.yaml`, one `builtin:smollm2-135m` model) is used. Unknown keys, wrong types
and bad values are errors that name the key and the fix; check a file with `blaze config check FILE`.
Every `server` key can also be set by an environment variable `BLAZE_<KEY>` (lists comma-separated),
for example `BLAZE_PORT=9000` or `BLAZE_API_KEYS=key1,key2`.

A complete small file (the [examples](https://github.com/blaze-ai/blaze-ai/tree/main/examples)
folder has one per common set-up):

```yaml
server: {host: 127.0.0.1, port: 8000}
breaker: {failure_threshold: 5, open_base_s: 5.0}
cache: {backend: memory, mode: deterministic}
models:
  - name: chat
    kind: llm
    llm: {source: builtin:tiny-llama, max_batch_size: 16}
    replicas: 2
    router: {strategy: least_connections}
  - name: embed
    kind: embedding
    embedding: {source: builtin:all-minilm-l6-v2}
```
"""


def load(spec: str) -> Any:
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


def field_notes(cls: type) -> dict[str, str]:
    """Comments next to (``# ...``) or above (``#: ...``) each field in the class source."""
    notes: dict[str, str] = {}
    pending: list[str] = []
    for line in inspect.getsource(cls).splitlines():
        text = line.strip()
        if text.startswith("#:"):
            pending.append(text[2:].strip())
            continue
        match = re.match(r"(\w+): [^=]+?(?:=.*?)?(?:\s+#\s*(.*))?$", text)
        if match and not text.startswith(("def ", "return ", "if ", "raise ")):
            note = " ".join([*pending, match.group(2) or ""]).strip()
            notes.setdefault(match.group(1), note)
        pending = []
    return notes


def yaml_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{}" if not value else str(value)
    return str(value)


def default_of(field: dataclasses.Field[Any]) -> str:
    if field.default is not dataclasses.MISSING:
        return f"`{yaml_value(field.default)}`"
    if field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
        return "the top-level `breaker`" if dataclasses.is_dataclass(value) else f"`{yaml_value(value)}`"
    return "required"


def type_name(hint: Any) -> str:
    text = str(hint) if typing.get_origin(hint) else getattr(hint, "__name__", str(hint))
    text = re.sub(r"typing\.|collections\.abc\.|blaze_ai\.[\w.]+\.", "", text)
    return text.replace("|", "\\|")


def table(cls: type) -> list[str]:
    hints = typing.get_type_hints(cls)
    notes = field_notes(cls)
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.name in MODEL_KEYS and cls.__name__ == "ModelConfig":
            key, kind, default, note = MODEL_KEYS[f.name]
            rows.append(f"| `{key}` | {kind} | `{default}` | {note} |")
            continue
        note = notes.get(f.name) or NOTES.get(f"{cls.__name__}.{f.name}", "")
        note = note.replace("|", "\\|")
        rows.append(f"| `{f.name}` | {type_name(hints[f.name])} | {default_of(f)} | {note} |")
    return rows


def remotes_table() -> list[str]:
    params = inspect.signature(load(REMOTES)).parameters
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for name, p in params.items():
        if name in ("self", "transport"):
            continue
        key = "url" if name == "base_url" else name
        default = "required" if p.default is inspect.Parameter.empty else f"`{yaml_value(p.default)}`"
        if name in ("model", "name"):
            default = "the model's `name`" if name == "model" else "`<name>@remote<i>`"
        rows.append(f"| `{key}` | {default} | see [router](router.md) `RemoteReplica` |")
    return rows


def render() -> str:
    lines = [HEADER]
    for path, spec, about in SECTIONS:
        cls = load(spec)
        lines += [f"## `{path}`", "", f"{about} (`{cls.__name__}`)", "", *table(cls), ""]
        if path == "models[]":
            lines += [
                "### `models[].remotes[]`",
                "",
                "Other servers this model's router also balances over.",
                "",
            ]
            lines += [*remotes_table(), ""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if the page is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = PAGE.read_text(encoding="utf-8") if PAGE.exists() else ""
        if current != text:
            print(f"{PAGE} is out of date: run scripts/gen_config_docs.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text, encoding="utf-8")
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

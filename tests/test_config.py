"""Configuration: YAML into frozen dataclasses; every mistake names its key."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from blaze_ai.config import BlazeConfig, ServerConfig, load_config, parse_config, redacted
from blaze_ai.engines.breaker import BreakerConfig
from blaze_ai.engines.fake import FakeConfig
from blaze_ai.errors import ConfigError

GOOD = """
server:
  port: 9001
  api_keys: [k1, k2]
  cors_origins: ["http://localhost:3000"]
manager:
  health_interval_s: 2
breaker:
  failure_threshold: 3
models:
  - name: echo
    kind: fake
    fake: {delay_s: 0.01, seed: 4}
  - name: echo2
    kind: fake
    breaker: {open_base_s: 1.0}
    replicas: 2
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "blaze.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def fake_model(**extra: Any) -> dict[str, Any]:
    return {"name": "m", "kind": "fake", **extra}


def error_for(raw: Any, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, env=env)
    return info.value.message


# -- good files ---------------------------------------------------------------------------
def test_good_file_loads_into_frozen_dataclasses(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD), env={})
    assert config.server.port == 9001
    assert config.server.api_keys == ("k1", "k2")  # lists become tuples
    assert config.server.cors_origins == ("http://localhost:3000",)
    assert config.manager.health_interval_s == 2.0 and isinstance(config.manager.health_interval_s, float)
    echo, echo2 = config.models
    assert echo.engine == FakeConfig(delay_s=0.01, seed=4)
    assert echo.breaker == BreakerConfig(failure_threshold=3)  # the top-level breaker default
    assert echo2.breaker == BreakerConfig(failure_threshold=3, open_base_s=1.0)  # merged per model
    assert echo2.replicas == 2
    assert config.model("echo2") is echo2
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.server.port = 1  # type: ignore[misc]


def test_embedded_default_loads() -> None:
    config = load_config(env={})
    assert isinstance(config, BlazeConfig)
    assert config.server == ServerConfig()
    # One server, every engine kind, each a built-in that needs no download.
    assert [m.kind for m in config.models] == ["llm", "diffusion", "embedding"]
    assert all(m.engine.source.startswith("builtin:") for m in config.models)


def test_empty_file_is_an_empty_config(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, ""), env={}) == BlazeConfig()


def test_redacted_hides_keys_and_is_plain_yaml(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD), env={})
    data = redacted(config)
    assert data["server"]["api_keys"] == ["***", "***"]
    assert "k1" not in yaml.safe_dump(data)
    assert data["models"][0]["engine"]["seed"] == 4


# -- environment overrides ---------------------------------------------------------------------
def test_env_overrides_server_settings(tmp_path: Path) -> None:
    env = {"BLAZE_PORT": "9100", "BLAZE_API_KEYS": "a, b,", "BLAZE_LOG_JSON": "true", "BLAZE_HOST": "0.0.0.0"}
    config = load_config(write(tmp_path, GOOD), env=env)
    assert config.server.port == 9100
    assert config.server.api_keys == ("a", "b")
    assert config.server.log_json is True
    assert config.server.host == "0.0.0.0"
    assert config.server.cors_origins == ("http://localhost:3000",)  # untouched


def test_env_is_read_from_the_process_by_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BLAZE_PORT", "9200")
    assert load_config(write(tmp_path, "")).server.port == 9200


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"BLAZE_PORT": "eighty"}, "BLAZE_PORT"),
        ({"BLAZE_REQUEST_TIMEOUT_S": "soon"}, "BLAZE_REQUEST_TIMEOUT_S"),
        ({"BLAZE_LOG_JSON": "maybe"}, "BLAZE_LOG_JSON"),
        ({"BLAZE_PORT": "70000"}, "port"),
    ],
)
def test_bad_env_values_name_the_variable(env: dict[str, str], named: str) -> None:
    assert named in error_for({}, env=env)


# -- bad files: each error names the key ---------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({"sever": {}}, "config.sever: unknown key"),
        ({"server": {"prot": 80}}, "server.prot: unknown key"),
        ({"server": {"port": "eighty"}}, "server.port: expected int"),
        ({"server": {"port": True}}, "server.port: expected int"),
        ({"server": {"port": 70000}}, "port must be between 0 and 65535"),
        ({"server": {"api_keys": "k1"}}, "server.api_keys: expected a list"),
        ({"server": {"api_keys": ["k1", 2]}}, "server.api_keys[1]: expected str"),
        ({"server": {"log_level": "loud"}}, "log_level must be one of"),
        ({"server": []}, "server: expected a mapping"),
        ({"manager": {"unhealthy_after": 0}}, "manager: manager unhealthy_after"),
        ({"manager": {"health_interval": 5}}, "manager.health_interval: unknown key"),
        ({"breaker": {"failure_rate": 2}}, "models[0].breaker: breaker failure_rate"),
        ({"models": {"name": "m"}}, "models: expected a list"),
        ({"models": ["m"]}, "models[0]: expected a mapping"),
        ({"models": [fake_model(kind="gpt")]}, "models[0].kind: must be one of"),
        ({"models": [fake_model(kind=["fake"])]}, "models[0].kind: must be one of"),
        ({"models": [{"kind": "fake"}]}, "models[0].name: required"),
        ({"models": [fake_model(name="  ")]}, "models[0]: name must be a non-empty"),
        ({"models": [fake_model(llm={})]}, "models[0].llm: unknown key"),
        ({"models": [fake_model(fake={"delay": 1})]}, "models[0].fake.delay: unknown key"),
        ({"models": [fake_model(fake={"fail_rate": 3.0})]}, "models[0].fake: fake fail_rate"),
        ({"models": [fake_model(fake={"seed": "x"})]}, "models[0].fake.seed: expected int"),
        ({"models": [fake_model(breaker={"jitter": 1.0})]}, "models[0].breaker: breaker jitter"),
        ({"models": [fake_model(replicas="2")]}, "models[0].replicas: expected int"),
        ({"models": [fake_model(replicas=0)]}, "models[0]: replicas must be >= 1"),
        ({"models": [fake_model(router=[])]}, "models[0].router: expected a mapping"),
        (
            {"models": [fake_model(), fake_model(), fake_model(name="x")]},
            "models[1].name: 'm' is already used",
        ),
        ({"server": {1: "x", "b": 2}}, "server.1: unknown key"),
    ],
)
def test_bad_config_names_the_key(raw: dict[str, Any], named: str) -> None:
    message = error_for({"models": [fake_model()], **raw} if "models" not in raw else raw)
    assert named in message


def test_unknown_key_error_lists_the_known_keys() -> None:
    message = error_for({"server": {"prot": 80}})
    assert "port" in message and "host" in message


def test_config_errors_are_value_errors() -> None:
    with pytest.raises(ValueError):
        parse_config({"server": {"prot": 1}})


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("server: [unclosed", "is not valid YAML"),
        ("- just\n- a list\n", "config: expected a mapping"),
        (
            "server:\n  port: 8000\nmodels:\n  - name: a\n    kind: fake\n  - name: a\n    kind: fake\n",
            "models[1].name",
        ),
    ],
)
def test_bad_files(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace("[", r"\[").replace("]", r"\]")):
        load_config(write(tmp_path, text), env={})


def test_missing_and_binary_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "nope.yaml", env={})
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(binary, env={})


def test_engine_kind_that_cannot_be_imported_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from blaze_ai import config as config_module

    monkeypatch.setitem(
        config_module.ENGINE_KINDS, "ghost", ("blaze_ai.engines.ghost", "GhostConfig", "GhostEngine")
    )
    message = error_for({"models": [{"name": "g", "kind": "ghost"}]})
    assert "models[0].kind: engine kind 'ghost' is not available" in message

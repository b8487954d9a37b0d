"""Every config in examples/ loads, as ``blaze config check`` would load it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from blaze_ai.config import load_config
from blaze_ai.engines.router import RouterConfig

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
EXPECTED = {"cpu-builtins", "router-remote", "redis-cache", "ray-cluster", "own-hf-model"}


def test_every_common_setup_has_an_example() -> None:
    assert {path.stem for path in EXAMPLES} >= EXPECTED


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_loads(path: Path) -> None:
    config = load_config(path, env={})
    assert config.models, f"{path.name} serves no model"
    for model in config.models:
        RouterConfig(**{"breaker": model.breaker, **model.router})  # router options are valid too
        assert all("url" in remote for remote in model.remotes), f"{model.name}: a remote without url"


def test_ray_and_remote_examples_use_their_feature() -> None:
    ray = load_config(ROOT / "examples" / "ray-cluster.yaml", env={})
    assert all(model.ray for model in ray.models)
    remote = load_config(ROOT / "examples" / "router-remote.yaml", env={})
    assert remote.models[0].replicas == 0 and len(remote.models[0].remotes) == 3
    assert load_config(ROOT / "examples" / "redis-cache.yaml", env={}).cache["backend"] == "redis"


def test_blaze_config_check_accepts_an_example() -> None:
    blaze = Path(sys.executable).with_name("blaze")
    proc = subprocess.run(
        [str(blaze), "config", "check", str(ROOT / "examples" / "cpu-builtins.yaml")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "smollm2-135m" in proc.stdout

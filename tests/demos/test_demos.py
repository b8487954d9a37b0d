"""Both demos run as a user would run them (quick mode, tiny models) and write valid reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema  # type: ignore[import-untyped]
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "schemas" / "demo_report.schema.json").read_text(encoding="utf-8"))


def run_demo(script: str, report: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(
        [sys.executable, script, "--quick", "--report", str(report), *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, (
        f"{script} exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    )
    data = json.loads(report.read_text(encoding="utf-8"))
    jsonschema.validate(data, SCHEMA)
    return proc, data


@pytest.mark.slow
def test_demo_simple_quick(tmp_path: Path) -> None:
    image = tmp_path / "fox.png"
    proc, data = run_demo("demo_simple.py", tmp_path / "report.json", "--image", str(image))
    assert data["demo"] == "simple" and data["passed"] is True
    assert [s["name"] for s in data["steps"]] == ["load_models", "generate", "stream", "image", "embed"]
    assert data["options"]["llm"] == "builtin:tiny-llama"
    assert image.read_bytes().startswith(b"\x89PNG")
    assert "PASS  embed" in proc.stdout


@pytest.mark.slow
def test_demo_refactored_system_quick(tmp_path: Path) -> None:
    _, data = run_demo("demo_refactored_system.py", tmp_path / "report.json")
    steps = {s["name"]: s for s in data["steps"]}
    assert data["demo"] == "refactored_system" and data["passed"] is True
    assert set(steps) == {
        "start",
        "batching",
        "streaming",
        "cache_hit",
        "breaker",
        "failover",
        "image",
        "embeddings",
        "shutdown",
    }
    assert steps["batching"]["figures"]["max_batch_size_seen"] > 1
    assert (steps["cache_hit"]["figures"]["hits"], steps["cache_hit"]["figures"]["misses"]) == (1, 1)
    assert steps["breaker"]["figures"]["final_state"] == "closed"
    assert steps["failover"]["figures"]["failed"] == 0


def test_schema_rejects_a_report_without_steps() -> None:
    """The schema is a real check: a report missing its steps does not validate."""
    report = {
        "demo": "simple",
        "blaze_version": "0.1.0",
        "started_at": "2026-11-27T00:00:00+00:00",
        "duration_s": 1.0,
        "passed": True,
        "options": {},
        "steps": [],
        "machine": {
            "python": "3.11",
            "torch": "2.13.0",
            "platform": "linux",
            "cpu_count": 2,
            "device": "cpu",
        },
    }
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(report, SCHEMA)

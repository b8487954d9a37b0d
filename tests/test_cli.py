"""The ``blaze`` command, run as a real process the way a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from blaze_ai import __version__
from blaze_ai.cli import build_parser, main

GOOD = """
server:
  port: 9001
  api_keys: [secret-key]
models:
  - name: echo
    kind: fake
    fake: {delay_s: 0.01}
"""


def blaze(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLAZE_")}
    return subprocess.run(
        [sys.executable, "-m", "blaze_ai.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_version() -> None:
    done = blaze("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"blaze-ai {__version__}"


def test_config_check_good_file_prints_the_resolved_config(tmp_path: Path) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(GOOD, encoding="utf-8")
    done = blaze("config", "check", str(path))
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)
    assert resolved["server"]["port"] == 9001
    assert resolved["server"]["api_keys"] == ["***"]  # keys never printed
    assert "secret-key" not in done.stdout + done.stderr
    assert resolved["models"][0]["engine"]["delay_s"] == 0.01
    assert resolved["manager"]["unhealthy_after"] == 3  # defaults filled in
    assert "OK" in done.stderr


def test_config_check_bad_file_exits_non_zero_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD.replace("delay_s", "delay_seconds"), encoding="utf-8")
    done = blaze("config", "check", str(path))
    assert done.returncode == 1
    assert "models[0].fake.delay_seconds: unknown key" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_config_check_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(tmp_path / "nope.yaml")]) == 1
    assert "cannot read config file" in capsys.readouterr().err


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: blaze" in capsys.readouterr().out


def test_config_needs_an_action() -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["config"])
    assert info.value.code == 2

"""``blaze generate`` streams an answer from the tiny built-in."""

from __future__ import annotations

import pytest

from blaze_ai.cli import main


def test_generate_streams_the_answer(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["generate", "Hello there", "--model", "builtin:tiny-llama", "--max-tokens", "6", "--seed", "3"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert out.endswith("\n") and len(out.strip()) > 0


def test_generate_reports_a_bad_model_source(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["generate", "Hi", "--model", "builtin:no-such-model"])
    assert code != 0
    assert "no-such-model" in capsys.readouterr().err

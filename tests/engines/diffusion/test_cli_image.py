"""``blaze image``: the subcommand writes a PNG of the asked size and refuses bad input."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from blaze_ai.cli import image

from .conftest import pixels


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    image.add_parser(parser.add_subparsers())
    return parser.parse_args(["image", *argv])


def test_image_command_writes_a_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "fox.png"
    args = parse("a red fox", "-o", str(out), "--steps", "2", "--size", "48x32", "--seed", "4")
    assert args.func(args) == 0
    assert pixels(out.read_bytes()).shape == (32, 48, 3)
    err = capsys.readouterr().err
    assert "seed 4" in err and "2/2" in err  # the progress bar reached the last step


@pytest.mark.parametrize(
    ("argv", "message"),
    [(("--size", "big"), "--size must look like"), (("--size", "30x30"), "multiple of 8")],
)
def test_bad_input_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    out = tmp_path / "x.png"
    args = parse("a cat", "-o", str(out), "--steps", "1", *argv)
    assert args.func(args) != 0
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_unknown_scheduler_is_an_argparse_error() -> None:
    with pytest.raises(SystemExit):
        parse("a cat", "-o", "x.png", "--scheduler", "heun")

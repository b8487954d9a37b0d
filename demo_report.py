"""The JSON report both demos write: steps run, pass or fail, and measured figures.

A step is an async function that fills ``step.figures``, sets ``step.summary`` and calls
``step.check(condition, why)``; an exception or a failed check marks the step failed and the
demo goes on. ``Report.write`` validates against ``schemas/demo_report.schema.json`` first.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

SCHEMA = Path(__file__).with_name("schemas") / "demo_report.schema.json"
DEFAULT_REPORT = "blaze_ai_demo_report.json"


class CheckFailed(Exception):
    """A demo's expectation did not hold."""


class Step:
    """One step of a demo: what it measured and whether its checks held."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.summary = ""
        self.figures: dict[str, Any] = {}

    def check(self, condition: bool, why: str) -> None:
        if not condition:
            raise CheckFailed(why)


class Report:
    """Collects steps; prints each as it ends; writes the validated JSON report."""

    def __init__(self, demo: str, options: dict[str, Any]) -> None:
        self.demo = demo
        self.options = options
        self.steps: list[dict[str, Any]] = []
        self.started_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        self._t0 = time.monotonic()

    @property
    def passed(self) -> bool:
        return all(step["passed"] for step in self.steps)

    async def run(self, name: str, body: Callable[[Step], Awaitable[None]]) -> bool:
        """Run one step; never raises (a failure is recorded and printed)."""
        step = Step(name)
        print(f"\n== {name}", flush=True)
        t0 = time.monotonic()
        error: str | None = None
        try:
            await body(step)
        except CheckFailed as exc:
            error = f"check failed: {exc}"
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        duration = time.monotonic() - t0
        self.steps.append(
            {
                "name": name,
                "passed": error is None,
                "duration_s": round(duration, 4),
                "summary": step.summary or ("done" if error is None else "failed"),
                "figures": {k: _plain(v) for k, v in step.figures.items()},
                "error": error,
            }
        )
        mark = "PASS" if error is None else "FAIL"
        print(f"   [{mark}] {step.summary}{'  -- ' + error if error else ''} ({duration:.2f}s)", flush=True)
        return error is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "demo": self.demo,
            "blaze_version": _blaze_version(),
            "started_at": self.started_at,
            "duration_s": round(time.monotonic() - self._t0, 3),
            "machine": _machine(),
            "options": self.options,
            "passed": self.passed,
            "steps": self.steps,
        }

    def write(self, path: str | Path) -> None:
        """Validate against the schema, then write; raises jsonschema.ValidationError if invalid."""
        import jsonschema  # type: ignore[import-untyped]

        data = self.as_dict()
        jsonschema.validate(data, json.loads(SCHEMA.read_text(encoding="utf-8")))
        Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")

    def finish(self, path: str | Path) -> int:
        """Print the summary, write the report; the process exit code (0 only if all passed)."""
        print("\n== summary")
        for step in self.steps:
            print(f"   {'PASS' if step['passed'] else 'FAIL'}  {step['name']:<16} {step['summary']}")
        try:
            self.write(path)
        except Exception as exc:  # an invalid report is a failed demo, never a silent one
            print(f"report NOT written: it does not match {SCHEMA}: {exc}", file=sys.stderr)
            return 2
        print(f"report: {path} ({'all passed' if self.passed else 'some steps FAILED'})")
        return 0 if self.passed else 1


def _plain(value: Any) -> Any:
    """Round floats and turn tuples into lists so figures are plain JSON."""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _blaze_version() -> str:
    import blaze_ai

    return str(blaze_ai.__version__)


def _machine() -> dict[str, Any]:
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return {
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count() or 1,
        "device": device,
    }

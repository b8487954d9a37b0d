"""Structured logs: JSON lines with the request id on each, no prompts or keys unless debug."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from blaze_ai.engines import FakeConfig, FakeEngine
from blaze_ai.observability import configure_logging

from .conftest import MakeApp

SECRET_PROMPT = "purple-elephant-7731 recites the launch codes"
API_KEY = "sk-test-SECRET-KEY-99"


@pytest.fixture
def logs(capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    """``logs(level, as_json)`` sets up logging; the result's ``lines()`` reads what was written."""
    root = logging.getLogger()
    old_level, handlers = root.level, []

    class Reader:
        def __call__(self, level: str, as_json: bool) -> None:
            handlers.append(configure_logging(level, as_json))

        def lines(self) -> list[str]:
            return [line for line in capsys.readouterr().err.splitlines() if line.strip()]

    yield Reader()
    for handler in handlers:
        root.removeHandler(handler)
    root.setLevel(old_level)


def chat(prompt: str) -> dict[str, Any]:
    return {"model": "fake", "messages": [{"role": "user", "content": prompt}]}


async def test_json_lines_carry_the_request_id_and_no_prompt_or_key(make_app: MakeApp, logs: Any) -> None:
    logs("info", True)
    _, client = await make_app(api_keys=(API_KEY,))
    headers = {"x-request-id": "trace-abc-1", "Authorization": f"Bearer {API_KEY}"}
    response = await client.post("/v1/chat/completions", json=chat(SECRET_PROMPT), headers=headers)
    assert response.status_code == 200 and SECRET_PROMPT in response.text
    lines = logs.lines()
    entries = [json.loads(line) for line in lines]
    access = [e for e in entries if e["logger"] == "blaze_ai.access"]
    assert len(access) == 1
    assert access[0]["request_id"] == "trace-abc-1"
    assert access[0]["status"] == 200 and access[0]["route"] == "/v1/chat/completions"
    assert all("request_id" in e and "level" in e and "time" in e for e in entries)
    text = "\n".join(lines)
    assert "purple-elephant" not in text and "SECRET-KEY" not in text


async def test_errors_logged_inside_a_request_carry_its_id(make_app: MakeApp, logs: Any) -> None:
    logs("info", True)
    _, client = await make_app({"fake": FakeEngine(FakeConfig(fail_rate=1.0))})
    response = await client.post("/v1/chat/completions", json=chat(SECRET_PROMPT))
    assert response.status_code == 500
    request_id = response.headers["x-request-id"]
    entries = [json.loads(line) for line in logs.lines()]
    errors = [e for e in entries if e["level"] == "error"]
    assert errors and all(e["request_id"] == request_id for e in errors)
    assert not any("purple-elephant" in json.dumps(e) for e in entries)


async def test_debug_logging_shows_the_request_body(make_app: MakeApp, logs: Any) -> None:
    logs("debug", True)
    _, client = await make_app()
    assert (await client.post("/v1/chat/completions", json=chat(SECRET_PROMPT))).status_code == 200
    access = [json.loads(line) for line in logs.lines() if '"blaze_ai.access"' in line]
    assert "purple-elephant" in access[0]["body"]


async def test_text_format_shows_the_request_id(make_app: MakeApp, logs: Any) -> None:
    logs("info", False)
    _, client = await make_app()
    headers = {"x-request-id": "trace-text-2"}
    assert (await client.get("/v1/models", headers=headers)).status_code == 200
    access = [line for line in logs.lines() if "blaze_ai.access" in line]
    assert len(access) == 1 and "[trace-text-2]" in access[0] and "status=200" in access[0]


def test_outside_a_request_the_id_is_a_dash(logs: Any) -> None:
    logs("info", True)
    logging.getLogger("blaze_ai.test").warning("hello", extra={"prompt": "hidden", "count": 3})
    entry = json.loads(logs.lines()[-1])
    assert entry["request_id"] == "-" and entry["count"] == 3 and "prompt" not in entry

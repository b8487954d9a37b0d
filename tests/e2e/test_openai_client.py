"""The official openai client against the real ``blaze serve`` process on the tiny built-in model."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

KEY, ADMIN = "sk-e2e-user", "sk-e2e-admin"
MESSAGES = [{"role": "user", "content": "Say something."}]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, gateway: Any, tiny_llm_yaml: Any) -> Iterator[Any]:
    with gateway(tiny_llm_yaml(KEY, ADMIN), tmp_path_factory.mktemp("gateway")) as process:
        yield process


@pytest.fixture
def client(server: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=KEY, max_retries=0, timeout=60)


def test_models(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["tiny"]


def test_chat_usage_counts(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=6, temperature=0)
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("length", "stop")
    usage = reply.usage
    assert usage is not None and usage.prompt_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    if choice.finish_reason == "length":
        assert usage.completion_tokens == 6


def test_chat_stream_matches_whole_answer_and_reports_usage(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=8, temperature=0)
    stream = client.chat.completions.create(
        model="tiny",
        messages=MESSAGES,
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage = "", None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage is not None:
            usage = chunk.usage
    assert text == whole.choices[0].message.content
    assert usage is not None and whole.usage is not None
    assert usage.completion_tokens == whole.usage.completion_tokens


def test_completions_and_n2(client: openai.OpenAI) -> None:
    reply = client.completions.create(model="tiny", prompt="Once upon a time", max_tokens=5, n=2, seed=3)
    assert [c.index for c in reply.choices] == [0, 1]
    assert all(c.text for c in reply.choices)


def test_seed_reproducibility(client: openai.OpenAI) -> None:
    def sample(seed: int) -> str | None:
        reply = client.chat.completions.create(
            model="tiny", messages=MESSAGES, max_tokens=10, temperature=1.0, seed=seed
        )
        return reply.choices[0].message.content

    assert sample(11) == sample(11)
    assert len({sample(s) for s in (1, 2, 3)}) > 1  # the seed really changes the sampling


def test_stop_sequence(client: openai.OpenAI) -> None:
    full = (
        client.completions.create(model="tiny", prompt="Hello", max_tokens=12, temperature=0).choices[0].text
    )
    assert len(full) > 6
    stop = full[4:6]
    cut = client.completions.create(model="tiny", prompt="Hello", max_tokens=12, temperature=0, stop=[stop])
    assert cut.choices[0].text == full[: full.find(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_bad_key_is_401(server: Any) -> None:
    bad = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="nope", messages=MESSAGES)
    assert info.value.code == "model_not_found"


def test_bad_parameter_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="tiny", messages=MESSAGES, temperature=5)
    assert info.value.param == "temperature"
    with pytest.raises(openai.BadRequestError) as unsupported:
        client.chat.completions.create(model="tiny", messages=MESSAGES, modalities=["text", "audio"])
    assert "modalities" in str(unsupported.value)


def test_full_queue_is_429(server: Any) -> None:
    client = openai.AsyncOpenAI(base_url=f"{server.base_url}/v1", api_key=KEY, max_retries=0, timeout=120)

    async def one() -> str:
        try:
            await client.completions.create(model="tiny", prompt="x", max_tokens=48)
            return "ok"
        except openai.RateLimitError as exc:
            assert exc.response.headers["retry-after"]
            return "429"

    async def burst() -> list[str]:
        try:
            return await asyncio.gather(*(one() for _ in range(8)))
        finally:
            await client.close()

    outcomes = asyncio.run(burst())
    assert "429" in outcomes and "ok" in outcomes  # 2 running + 2 queued fit; the rest are refused


def test_process_logs_hold_no_keys_or_prompts(server: Any) -> None:
    log = Path(server.log_path).read_text(errors="replace")
    assert KEY not in log and ADMIN not in log and "Say something" not in log

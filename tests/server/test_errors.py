"""Every error answers in the OpenAI shape with the status in RELIABILITY.md and an x-request-id."""

from __future__ import annotations

import httpx
import pytest

from blaze_ai import errors
from blaze_ai.engines import FakeConfig, FakeEngine

from .conftest import MakeClient, ScriptedEngine, chat_body


def assert_openai_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, str]:
    assert response.status_code == status, response.text
    assert response.headers["x-request-id"]
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    if code is not None:
        assert error["code"] == code
    return error  # type: ignore[no-any-return]


async def test_validation_error_is_400_naming_the_parameter(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", json=chat_body(temperature=7))
    error = assert_openai_error(response, 400, "invalid_request")
    assert error["param"] == "temperature"


async def test_unknown_field_is_400_naming_it(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", json=chat_body(bogus_knob=1))
    error = assert_openai_error(response, 400)
    assert "bogus_knob" in error["message"] and error["param"] == "bogus_knob"


@pytest.mark.parametrize(
    ("route", "body", "param"),
    [
        ("/v1/chat/completions", chat_body(modalities=["text", "audio"], presence_penalty=0.5), "modalities"),
        ("/v1/chat/completions", chat_body(prediction={"type": "content", "content": "x"}), "prediction"),
        ("/v1/completions", {"model": "fake", "prompt": "x", "suffix": "!"}, "suffix"),
        ("/v1/completions", {"model": "fake", "prompt": "x", "best_of": 3}, "best_of"),
        ("/v1/images/generations", {"model": "fake", "prompt": "x", "quality": "hd"}, "quality"),
    ],
)
async def test_unsupported_parameters_are_rejected_by_name(
    client: httpx.AsyncClient, route: str, body: dict[str, object], param: str
) -> None:
    error = assert_openai_error(await client.post(route, json=body), 400, "unsupported_parameter")
    assert param in error["message"] and error["param"] is not None and param in error["param"]


async def test_unsupported_parameter_with_its_off_value_is_accepted(client: httpx.AsyncClient) -> None:
    body = chat_body(frequency_penalty=0, functions=[], store=False)
    assert (await client.post("/v1/chat/completions", json=body)).status_code == 200


async def test_invalid_json_and_wrong_content_are_400(client: httpx.AsyncClient) -> None:
    bad_json = await client.post(
        "/v1/chat/completions", content=b'{"model": ', headers={"content-type": "application/json"}
    )
    assert_openai_error(bad_json, 400)
    assert_openai_error(await client.post("/v1/chat/completions", content=b"\xff\xfe"), 400)


async def test_unknown_model_is_404(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", json=chat_body(model="nope"))
    assert assert_openai_error(response, 404, "model_not_found")["param"] == "model"


async def test_wrong_kind_of_model_is_400(make_client: MakeClient) -> None:
    class Embedder(FakeEngine):
        kind = "embedding"

    client = await make_client(engines={"fake": Embedder()})
    assert_openai_error(await client.post("/v1/chat/completions", json=chat_body()), 400)


@pytest.mark.parametrize(
    ("error", "status", "retry_after"),
    [
        (errors.ContextLengthError("prompt is 9000 tokens, the model takes 2048"), 400, False),
        (errors.OverloadedError("queue full", retry_after=2.5), 429, True),
        (errors.UnavailableError("not now", retry_after=4), 503, True),
        (errors.TimedOutError("too slow"), 504, False),
    ],
)
async def test_engine_errors_map_to_statuses(
    make_client: MakeClient, error: errors.BlazeError, status: int, retry_after: bool
) -> None:
    client = await make_client(engines={"fake": ScriptedEngine(error)})
    body = assert_openai_error(
        await client.post("/v1/chat/completions", json=chat_body()), status, error.code
    )
    response = await client.post("/v1/chat/completions", json=chat_body())
    assert ("retry-after" in response.headers) is retry_after
    if isinstance(error, errors.OverloadedError):
        assert response.headers["retry-after"] == "3"  # 2.5 s rounded up
    assert body["message"] == error.message


async def test_unexpected_failure_is_500_without_internals(make_client: MakeClient) -> None:
    client = await make_client(engines={"fake": ScriptedEngine(RuntimeError("secret /etc/passwd detail"))})
    response = await client.post("/v1/chat/completions", json=chat_body())
    error = assert_openai_error(response, 500)
    assert "secret" not in response.text and "Traceback" not in response.text
    assert response.headers["x-request-id"] in error["message"]


async def test_deadline_passing_is_504(make_client: MakeClient) -> None:
    slow = FakeEngine(FakeConfig(delay_s=30))
    client = await make_client(engines={"fake": slow}, request_timeout_s=0.05)
    assert_openai_error(await client.post("/v1/chat/completions", json=chat_body()), 504, "timeout")


async def test_body_too_large_is_413(make_client: MakeClient) -> None:
    client = await make_client(max_body_bytes=200)
    response = await client.post("/v1/chat/completions", json=chat_body("word " * 100))
    assert_openai_error(response, 413, "payload_too_large")


async def test_body_too_large_without_content_length_is_413(make_client: MakeClient) -> None:
    client = await make_client(max_body_bytes=200)

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(10):
            yield b"x" * 50

    response = await client.post("/v1/chat/completions", content=chunks())
    assert_openai_error(response, 413)


@pytest.mark.parametrize(
    ("field", "value", "setting"),
    [
        ("n", 3, {"max_n": 2}),
        ("stop", ["a", "b", "c"], {"max_stop": 2}),
        ("max_tokens", 65, {"max_tokens_limit": 64}),
    ],
)
async def test_server_limits_are_400(
    make_client: MakeClient, field: str, value: object, setting: dict[str, int]
) -> None:
    client = await make_client(**setting)
    response = await client.post("/v1/chat/completions", json=chat_body(**{field: value}))
    assert assert_openai_error(response, 400)["param"] == field


async def test_too_many_messages_is_400(make_client: MakeClient) -> None:
    client = await make_client(max_messages=2)
    body = chat_body()
    body["messages"] = body["messages"] * 3
    assert (
        assert_openai_error(await client.post("/v1/chat/completions", json=body), 400)["param"] == "messages"
    )


async def test_every_response_has_a_request_id_and_a_valid_one_is_kept(client: httpx.AsyncClient) -> None:
    for response in (
        await client.get("/health/live"),
        await client.get("/no/such/route"),
        await client.post("/v1/models"),
        await client.post("/v1/chat/completions", json={}),
    ):
        assert response.headers["x-request-id"].startswith("req_")
    kept = await client.get("/v1/models", headers={"x-request-id": "trace-42"})
    assert kept.headers["x-request-id"] == "trace-42"
    replaced = await client.get("/v1/models", headers={"x-request-id": "bad id\twith junk"})
    assert replaced.headers["x-request-id"].startswith("req_")


async def test_route_not_found_and_wrong_method_are_openai_shaped(client: httpx.AsyncClient) -> None:
    assert_openai_error(await client.get("/v1/nothing"), 404)
    assert_openai_error(await client.get("/v1/chat/completions"), 405)

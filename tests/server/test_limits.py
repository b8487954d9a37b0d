"""Rate limits (requests and tokens per minute per key), the concurrency cap and the drain gate."""

from __future__ import annotations

import asyncio

import httpx

from blaze_ai import errors
from blaze_ai.engines import FakeConfig, FakeEngine
from blaze_ai.server.limits import RateLimiter

from .conftest import MakeClient, chat_body, wait_until


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_request_bucket_refills_with_time() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=2, tpm=0, clock=clock)
    assert limiter.admit("k")["x-ratelimit-remaining-requests"] == "1"
    limiter.admit("k")
    try:
        limiter.admit("k")
        raise AssertionError("third request in the same instant must be limited")
    except errors.RateLimitedError as exc:
        assert exc.retry_after == 30.0  # one request refills in 60 s / 2
        assert exc.headers["Retry-After"] == "30"
        assert exc.headers["x-ratelimit-limit-requests"] == "2"
        assert exc.headers["x-ratelimit-remaining-requests"] == "0"
    limiter.admit("other-key")  # keys are independent
    clock.now += 30.0
    limiter.admit("k")


def test_token_budget_is_charged_after_use() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=0, tpm=60, clock=clock)
    limiter.admit("k")
    limiter.charge("k", 90)  # 30 tokens of debt
    try:
        limiter.admit("k")
        raise AssertionError("a key in token debt must be limited")
    except errors.RateLimitedError as exc:
        assert exc.retry_after == 31.0  # back above zero after 31 tokens at 1 token/s
    clock.now += 31.0
    headers = limiter.admit("k")
    assert headers["x-ratelimit-limit-tokens"] == "60"


async def test_rpm_limit_answers_429_with_headers(make_client: MakeClient) -> None:
    client = await make_client(rate_limit_rpm=2)
    ok = await client.post("/v1/chat/completions", json=chat_body())
    assert ok.status_code == 200 and ok.headers["x-ratelimit-limit-requests"] == "2"
    assert ok.headers["x-ratelimit-remaining-requests"] == "1"
    await client.post("/v1/chat/completions", json=chat_body())
    limited = await client.post("/v1/chat/completions", json=chat_body())
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.headers["x-ratelimit-remaining-requests"] == "0"
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"


async def test_rate_limits_are_per_key(make_client: MakeClient) -> None:
    client = await make_client(rate_limit_rpm=1, api_keys=("a", "b"))
    assert (await client.get("/v1/models", headers={"Authorization": "Bearer a"})).status_code == 200
    assert (await client.get("/v1/models", headers={"Authorization": "Bearer a"})).status_code == 429
    assert (await client.get("/v1/models", headers={"Authorization": "Bearer b"})).status_code == 200


async def test_tpm_limit_counts_generated_tokens(make_client: MakeClient) -> None:
    client = await make_client(rate_limit_tpm=10)
    first = await client.post("/v1/chat/completions", json=chat_body("one two three four five six"))
    assert first.json()["usage"]["total_tokens"] == 12
    limited = await client.post("/v1/chat/completions", json=chat_body())
    assert limited.status_code == 429 and "x-ratelimit-remaining-tokens" in limited.headers


async def test_concurrency_cap_answers_429(make_client: MakeClient) -> None:
    slow = FakeEngine(FakeConfig(delay_s=30))
    client = await make_client(engines={"fake": slow}, max_concurrency=1)
    first = asyncio.create_task(client.post("/v1/chat/completions", json=chat_body()))
    await wait_until(lambda: slow.requests == 1)
    second = await client.post("/v1/chat/completions", json=chat_body())
    assert second.status_code == 429 and second.headers["retry-after"] == "1"
    assert second.json()["error"]["code"] == "queue_full"
    first.cancel()


async def test_draining_refuses_new_work_with_503(client: httpx.AsyncClient) -> None:
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    transport.app.state.draining = True  # type: ignore[attr-defined]
    response = await client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    assert (await client.get("/health/ready")).status_code == 503
    assert (await client.get("/health/live")).status_code == 200

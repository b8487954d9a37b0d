"""Request limits: body size (413), a concurrency cap (429), drain refusal (503), per-key rate limits.

Token buckets hold a minute's worth: ``rate_limit_rpm`` requests and
``rate_limit_tpm`` tokens per key, refilled continuously. A request needs one
request token and a token balance above zero; the tokens it used (prompt plus
completion) are charged when it finishes, so a long answer can push the balance
below zero and the key waits until it refills.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from blaze_ai.errors import (
    BlazeError,
    OverloadedError,
    PayloadTooLargeError,
    RateLimitedError,
    UnavailableError,
)
from blaze_ai.server.auth import require_api_key
from blaze_ai.server.errors import blaze_error_payload

MAX_TRACKED_KEYS = 10_000


async def _reply(error: BlazeError, scope: Scope, receive: Receive, send: Send) -> None:
    request_id = str(scope.get("state", {}).get("request_id", "-"))
    status, body, headers = blaze_error_payload(error, request_id)
    await JSONResponse(body, status_code=status, headers=headers)(scope, receive, send)


class BodyLimitMiddleware:
    """Read the body up to ``max_bytes`` (413 beyond), then replay it to the app."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        too_large = PayloadTooLargeError(f"request body is larger than {self.max_bytes} bytes")
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await _reply(too_large, scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _reply(too_large, scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replaying_receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the disconnect

    return replaying_receive


class GateMiddleware:
    """Refuse /v1 work while draining (503) or past the concurrency cap (429); admin stays open."""

    def __init__(self, app: ASGIApp, max_concurrency: int, is_draining: Callable[[], bool]) -> None:
        self.app = app
        self.max_concurrency = max_concurrency
        self.is_draining = is_draining
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        if self.is_draining():
            await _reply(
                UnavailableError("the server is shutting down", retry_after=5.0), scope, receive, send
            )
            return
        if self.in_flight >= self.max_concurrency:
            busy = OverloadedError(f"more than {self.max_concurrency} requests in flight", retry_after=1.0)
            await _reply(busy, scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


@dataclass(slots=True)
class _Bucket:
    level: float
    updated: float


class RateLimiter:
    """Per-key token buckets for requests and tokens per minute (0 turns one off)."""

    def __init__(self, rpm: int, tpm: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rpm = rpm
        self.tpm = tpm
        self.clock = clock
        self._requests: OrderedDict[str, _Bucket] = OrderedDict()
        self._tokens: OrderedDict[str, _Bucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.rpm > 0 or self.tpm > 0

    def admit(self, key: str) -> dict[str, str]:
        """Take one request; return the ``x-ratelimit-*`` headers or raise RateLimitedError."""
        key = _fingerprint(key)
        waits: list[float] = []
        if self.rpm:
            bucket = self._refill(self._requests, key, self.rpm)
            if bucket.level < 1.0:
                waits.append((1.0 - bucket.level) * 60.0 / self.rpm)
        if self.tpm:
            bucket = self._refill(self._tokens, key, self.tpm)
            if bucket.level <= 0.0:
                waits.append((1.0 - bucket.level) * 60.0 / self.tpm)
        if waits:
            wait = max(waits)
            headers = self._headers(key)
            headers["Retry-After"] = str(max(1, math.ceil(wait)))
            raise RateLimitedError(
                f"rate limit reached for this key; retry in {wait:.1f}s", retry_after=wait, headers=headers
            )
        if self.rpm:
            self._requests[key].level -= 1.0
        return self._headers(key)

    def charge(self, key: str, tokens: int) -> None:
        """Charge the tokens a finished request used."""
        if self.tpm and tokens > 0:
            self._refill(self._tokens, _fingerprint(key), self.tpm).level -= tokens

    def _refill(self, table: OrderedDict[str, _Bucket], key: str, per_minute: int) -> _Bucket:
        now = self.clock()
        bucket = table.get(key)
        if bucket is None:
            bucket = table[key] = _Bucket(float(per_minute), now)
            if len(table) > MAX_TRACKED_KEYS:
                table.popitem(last=False)
        bucket.level = min(float(per_minute), bucket.level + (now - bucket.updated) * per_minute / 60.0)
        bucket.updated = now
        table.move_to_end(key)
        return bucket

    def _headers(self, key: str) -> dict[str, str]:
        headers: dict[str, str] = {}
        for name, table, limit in (
            ("requests", self._requests, self.rpm),
            ("tokens", self._tokens, self.tpm),
        ):
            if not limit:
                continue
            level = table[key].level
            headers[f"x-ratelimit-limit-{name}"] = str(limit)
            headers[f"x-ratelimit-remaining-{name}"] = str(max(0, math.floor(level)))
            headers[f"x-ratelimit-reset-{name}"] = f"{max(0.0, (limit - level) * 60.0 / limit):.1f}s"
        return headers


def _fingerprint(key: str) -> str:
    """Keys are held as hashes, so a memory dump holds no secrets."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


async def rate_limit(request: Request, api_key: Annotated[str | None, Depends(require_api_key)]) -> None:
    """Route dependency: authenticate, then take one request from the caller's bucket."""
    limiter: RateLimiter = request.app.state.limiter
    if not limiter.enabled:
        return
    key = f"key:{api_key}" if api_key else f"ip:{request.client.host if request.client else '-'}"
    request.state.response_headers.update(limiter.admit(key))

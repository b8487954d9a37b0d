"""The one place that maps Blaze errors to HTTP statuses and OpenAI-shaped bodies.

Every error response has the body ``{"error": {"message", "type", "param", "code"}}``:

=========================  ======  ==================================================
error                      status  extra headers
=========================  ======  ==================================================
BadRequestError            400     (validation, unsupported parameter, limits)
ContextLengthError         400     code ``context_length_exceeded``
AuthenticationError        401     ``WWW-Authenticate: Bearer``
PermissionDeniedError      403
NotFoundError              404     code ``model_not_found``
PayloadTooLargeError       413
OverloadedError            429     ``Retry-After`` (queue full, concurrency cap)
RateLimitedError           429     ``Retry-After`` and ``x-ratelimit-*``
UnavailableError           503     ``Retry-After`` (breaker open, draining, not ready)
TimedOutError              504     the request's deadline passed (queued or running)
CancelledError             499     the client went away (nobody reads it; logs only)
EngineFailureError, other  500     generic message, never internals
=========================  ======  ==================================================
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from blaze_ai import errors as e

log = logging.getLogger("blaze_ai.server")

# Most specific first: the first isinstance match wins.
STATUS_BY_ERROR: tuple[tuple[type[e.BlazeError], int], ...] = (
    (e.ConfigError, 400),
    (e.BadRequestError, 400),
    (e.AuthenticationError, 401),
    (e.PermissionDeniedError, 403),
    (e.NotFoundError, 404),
    (e.PayloadTooLargeError, 413),
    (e.OverloadedError, 429),
    (e.UnavailableError, 503),
    (e.TimedOutError, 504),
    (e.CancelledError, 499),
)

INTERNAL_MESSAGE = "The server had an error while processing your request (request id {rid})."


def error_body(message: str, kind: str, param: str | None, code: str | None) -> dict[str, Any]:
    """The OpenAI error body."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def status_of(exc: e.BlazeError) -> int:
    """The HTTP status for a Blaze error (500 for anything unlisted)."""
    for cls, status in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status
    return 500


def retry_after_header(seconds: float) -> str:
    """Retry-After as whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


def _headers_for(exc: e.BlazeError) -> dict[str, str]:
    headers: dict[str, str] = {}
    if isinstance(exc, e.AuthenticationError):
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, e.OverloadedError | e.UnavailableError):
        headers["Retry-After"] = retry_after_header(exc.retry_after)
    if isinstance(exc, e.RateLimitedError):
        headers.update(exc.headers)
    return headers


def blaze_error_payload(exc: e.BlazeError, request_id: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, body and headers for a Blaze error; 5xx bodies hide internals."""
    status = status_of(exc)
    if status >= 500 and status not in (503, 504):
        log.error("request %s failed: %s: %s", request_id, type(exc).__name__, exc.message)
        message = INTERNAL_MESSAGE.format(rid=request_id)
        return status, error_body(message, "server_error", None, exc.code), {}
    return status, error_body(exc.message, exc.kind, exc.param, exc.code), _headers_for(exc)


def internal_error_payload(request_id: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    """The 500 answer to an unexpected exception."""
    return 500, error_body(INTERNAL_MESSAGE.format(rid=request_id), "server_error", None, None), {}


def payload_for(exc: BaseException, request_id: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, body and headers for any exception (used by handlers, SSE and middleware)."""
    if isinstance(exc, e.BlazeError):
        return blaze_error_payload(exc, request_id)
    log.exception("request %s: unexpected error", request_id, exc_info=exc)
    return internal_error_payload(request_id)


def _request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", "-"))


def format_loc(loc: Sequence[int | str]) -> str:
    """``("body", "messages", 0, "content")`` -> ``messages[0].content``."""
    out = ""
    for part in loc:
        if part == "body" and not out:
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def validation_to_bad_request(errors: Sequence[Any]) -> e.BadRequestError:
    """Turn pydantic/FastAPI validation errors into one 400 that names the parameters."""
    unknown: list[str] = []
    unsupported: list[str] = []
    problems: list[str] = []
    for err in errors:
        loc = format_loc(err.get("loc", ()))
        kind = err.get("type", "")
        if kind == "extra_forbidden":
            unknown.append(loc)
        elif kind == "unsupported_parameter":
            unsupported.append(str(err.get("ctx", {}).get("param", loc)))
        else:
            problems.append(f"{loc or 'body'}: {err.get('msg', 'invalid value')}")
    parts: list[str] = []
    if unsupported:
        parts.append("Unsupported parameter(s) for Blaze AI: " + ", ".join(unsupported))
    if unknown:
        parts.append("Unrecognized request argument supplied: " + ", ".join(unknown))
    parts.extend(problems[:5])
    named = [*unsupported, *unknown, *(format_loc(err.get("loc", ())) for err in errors)]
    param = next((p for p in named if p), None)
    code = "unsupported_parameter" if unsupported else "invalid_request"
    return e.BadRequestError("; ".join(parts) or "invalid request", param=param, code=code)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers; unexpected exceptions are caught by the request-id middleware."""

    async def on_blaze(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, e.BlazeError)
        status, body, headers = blaze_error_payload(exc, _request_id(request))
        return JSONResponse(body, status_code=status, headers=headers)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        bad = validation_to_bad_request(exc.errors())
        status, body, headers = blaze_error_payload(bad, _request_id(request))
        return JSONResponse(body, status_code=status, headers=headers)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        status = exc.status_code
        kind = "invalid_request_error" if status < 500 else "server_error"
        code = {404: "not_found", 405: "method_not_allowed"}.get(status)
        message = str(exc.detail) if status < 500 else INTERNAL_MESSAGE.format(rid=_request_id(request))
        headers = dict(exc.headers or {})
        return JSONResponse(error_body(message, kind, None, code), status_code=status, headers=headers)

    app.add_exception_handler(e.BlazeError, on_blaze)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)

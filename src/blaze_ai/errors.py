"""The one error hierarchy of Blaze AI.

Every error says what the caller can do about it; only the HTTP layer maps
these to status codes (``blaze_ai.server.errors``)::

    BlazeError                      base: something went wrong
    ├── BadRequestError             fix the request (400)
    │   └── ContextLengthError      prompt longer than the model's context (400)
    ├── AuthenticationError         send a valid API key (401)
    ├── PermissionDeniedError       use a key with the right role (403)
    ├── NotFoundError               no such model, engine or route (404)
    ├── PayloadTooLargeError        send a smaller body (413)
    ├── OverloadedError             retry later: queue full or rate limited (429)
    │   └── RateLimitedError        per-key limit reached (429)
    ├── UnavailableError            retry later elsewhere: breaker open, draining,
    │   │                           no eligible replica, engine not ready (503)
    │   └── EngineDeadError         the engine is quarantined; an operator must act (503)
    ├── TimedOutError               the request's deadline passed (504)
    ├── CancelledError              the client went away; nothing to answer
    ├── EngineFailureError          the engine failed while running the request (500)
    └── ConfigError                 the configuration is invalid (startup only)

Foreign exceptions (torch, httpx, redis, ray) are translated where they enter:
``raise EngineFailureError(...) from exc``.
"""

from __future__ import annotations


class BlazeError(Exception):
    """Base of every error Blaze AI raises on purpose."""

    #: OpenAI-style ``type`` field of the error body.
    kind: str = "server_error"
    #: OpenAI-style ``code`` field of the error body.
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class BadRequestError(BlazeError):
    """The request is malformed or asks for something not allowed."""

    kind = "invalid_request_error"
    code = "invalid_request"


class ContextLengthError(BadRequestError):
    """The prompt (plus the tokens asked for) does not fit the model's context."""

    code = "context_length_exceeded"


class AuthenticationError(BlazeError):
    """No API key, or a wrong one."""

    kind = "authentication_error"
    code = "invalid_api_key"


class PermissionDeniedError(BlazeError):
    """The key is valid but may not use this route."""

    kind = "permission_error"
    code = "permission_denied"


class NotFoundError(BlazeError):
    """No such model, engine or resource."""

    kind = "invalid_request_error"
    code = "model_not_found"


class PayloadTooLargeError(BlazeError):
    """The request body is over the configured limit."""

    kind = "invalid_request_error"
    code = "payload_too_large"


class OverloadedError(BlazeError):
    """The engine's queue is full; retry after ``retry_after`` seconds."""

    kind = "rate_limit_error"
    code = "queue_full"

    def __init__(self, message: str, *, retry_after: float = 1.0, **kwargs: str | None) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class RateLimitedError(OverloadedError):
    """A per-key request or token limit was reached."""

    code = "rate_limit_exceeded"

    def __init__(
        self,
        message: str,
        *,
        retry_after: float = 1.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.headers = headers or {}


class UnavailableError(BlazeError):
    """Nothing can serve the request right now: breaker open, draining or not ready."""

    kind = "service_unavailable"
    code = "engine_unavailable"

    def __init__(self, message: str, *, retry_after: float = 1.0, **kwargs: str | None) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class EngineDeadError(UnavailableError):
    """The engine failed too often and is quarantined until an operator restarts it."""

    code = "engine_quarantined"


class TimedOutError(BlazeError):
    """The request's deadline passed, in the queue or while running."""

    kind = "timeout_error"
    code = "timeout"


class CancelledError(BlazeError):
    """The request was aborted because its client went away."""

    kind = "cancelled"
    code = "cancelled"


class EngineFailureError(BlazeError):
    """The engine raised while running the request."""

    kind = "server_error"
    code = "engine_failure"


class ConfigError(BlazeError, ValueError):
    """The configuration is invalid; the message names the key and the fix."""

    kind = "invalid_request_error"
    code = "invalid_config"

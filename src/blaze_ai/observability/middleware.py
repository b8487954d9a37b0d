"""The request-level observer: a pure ASGI middleware (streams pass through untouched).

Per request it sets the logging request id, times the exchange, reads the
``model`` from the JSON body as it goes by (no extra ``receive()``), and reads
the response as it leaves:

- JSON bodies of ``/v1`` routes: ``usage.prompt_tokens`` and ``completion_tokens`` (the
  Responses API's ``input_tokens`` and ``output_tokens``);
- SSE streams: the first chunk carrying a token gives the time to first
  token, measured from the request's start as the client sees it; each later
  one gives a time per output token (the gap since the previous one, split over
  the tokens it carries). The gateway's text streams count their own tokens
  (``scope["state"]["stream_usage"]``, see
  :class:`~blaze_ai.server.generation.StreamState`), which costs nothing per
  event and counts every token of an event that carries several (a client that
  fell behind gets merged events). Other streams are parsed: a token event is a
  non-empty ``delta.content`` or ``text``, or a Responses ``output_text`` /
  ``function_call_arguments`` delta, and the tokens are the final ``usage``
  chunk when the client asked for it, else the number of token events.

It sits just inside the gateway's ``RequestIdMiddleware`` so the id exists,
and records a 500 for an exception that escapes the app (the outer layer turns
it into the 500 response).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from blaze_ai.observability.logging import request_id_var
from blaze_ai.observability.metrics import RequestMetrics
from blaze_ai.observability.timeline import Timeline

MAX_PEEK_BYTES = 256 * 1024  # request bodies larger than this are not parsed for the model name
MAX_JSON_BYTES = 4 * 1024 * 1024  # response bodies larger than this are not parsed for usage
DEBUG_BODY_BYTES = 2048  # how much of a request body a debug access line shows
NO_MODEL = "none"
UNKNOWN_MODEL = "unknown"  # a model name nobody serves: kept out of labels (cardinality)


access_log = logging.getLogger("blaze_ai.access")


@dataclass
class _Exchange:
    """What one request and its response told us so far."""

    started: float
    request_body: bytearray = field(default_factory=bytearray)
    status: int | None = None
    kind: str = ""  # "json", "sse" or ""
    response_body: bytearray = field(default_factory=bytearray)
    sse_rest: bytes = b""
    first_token_at: float | None = None
    last_token_at: float = 0.0
    token_events: int = 0
    prompt_tokens: int = 0
    completion_tokens: int | None = None  # from a usage object, when one went by
    model: str | None = None


class ObservabilityMiddleware:
    """Records :class:`RequestMetrics` and the dashboard :class:`Timeline` for every HTTP request."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: RequestMetrics,
        timeline: Timeline,
        state: Any,
        sample: Callable[[], dict[str, float]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.timeline = timeline
        self.state = state
        self.sample = sample
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = request_id_var.set(str(scope.get("state", {}).get("request_id", "-")))
        x = _Exchange(started=self.clock())
        self.metrics.in_flight.inc()

        async def peek_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request" and len(x.request_body) <= MAX_PEEK_BYTES:
                x.request_body += message.get("body", b"")
            return message

        async def watch_send(message: Message) -> None:
            self._watch(scope, x, message)
            await send(message)

        try:
            await self.app(scope, peek_receive, watch_send)
        except BaseException as exc:
            if x.status is None:
                x.status = 499 if isinstance(exc, asyncio.CancelledError) else 500
            raise
        finally:
            self.metrics.in_flight.dec()
            self._finish(scope, x)
            request_id_var.reset(token)

    # -- the response as it leaves -------------------------------------------------
    def _watch(self, scope: Scope, x: _Exchange, message: Message) -> None:
        if message["type"] == "http.response.start":
            x.status = int(message["status"])
            content_type = _header(message, b"content-type")
            if content_type.startswith("text/event-stream"):
                x.kind = "sse"
            elif content_type.startswith("application/json") and scope["path"].startswith("/v1/"):
                x.kind = "json"
        elif message["type"] == "http.response.body":
            body = message.get("body", b"")
            if x.kind == "sse":
                self._read_events(scope, x, body)
            elif x.kind == "json" and len(x.response_body) + len(body) <= MAX_JSON_BYTES:
                x.response_body += body

    def _read_events(self, scope: Scope, x: _Exchange, body: bytes) -> None:
        now = self.clock()
        counted = scope.get("state", {}).get("stream_usage")
        tokens = _count(x, counted) if counted is not None else self._parse_events(x, body)
        if not tokens:
            return
        model = self._model(scope, x)
        if x.first_token_at is None:  # the rest of a first chunk's tokens came with no gap
            x.first_token_at = x.last_token_at = now
            self.metrics.observe_first_token(model, now - x.started)
            tokens -= 1
        if tokens:
            self.metrics.observe_token_gap(model, now - x.last_token_at, tokens)
        x.last_token_at = now

    def _parse_events(self, x: _Exchange, body: bytes) -> int:
        """The tokens in a chunk of a stream that does not count its own."""
        *events, x.sse_rest = (x.sse_rest + body).split(b"\n\n")
        tokens = 0
        for event in events:
            for line in event.split(b"\n"):
                if line.startswith(b"data:") and line[5:].strip() != b"[DONE]":
                    tokens += self._read_chunk(x, line[5:])
        return tokens

    def _read_chunk(self, x: _Exchange, data: bytes) -> int:
        """Note a chunk's usage; return how many token-carrying choices it has."""
        try:
            chunk = json.loads(data)
        except ValueError:
            return 0
        if not isinstance(chunk, dict):
            return 0
        _read_usage(x, chunk.get("usage"))
        response = chunk.get("response")  # Responses API: the final event carries the whole response
        if chunk.get("type") in ("response.completed", "response.incomplete") and isinstance(response, dict):
            _read_usage(x, response.get("usage"))
        count = int(chunk.get("type") == "response.output_text.delta" and bool(chunk.get("delta")))
        count += chunk.get("type") == "response.function_call_arguments.delta" and bool(chunk.get("delta"))
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") if isinstance(choice, dict) else None
            text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
            count += bool(isinstance(text, str) and text)
        x.token_events += count
        return count

    # -- the end ------------------------------------------------------------------
    def _finish(self, scope: Scope, x: _Exchange) -> None:
        seconds = self.clock() - x.started
        status = x.status or 500
        route = _route(scope)
        model = self._model(scope, x)
        if x.kind == "json" and x.response_body:
            with contextlib.suppress(ValueError, AttributeError):
                _read_usage(x, json.loads(x.response_body).get("usage"))
        generated = x.completion_tokens if x.completion_tokens is not None else x.token_events
        self.metrics.observe_request(route, scope["method"], model, str(status), seconds)
        self.metrics.observe_tokens(model, x.prompt_tokens, generated)
        self._count_admin(scope, route, status, x)
        _log_access(scope, route, model, status, seconds, x)
        if scope["path"].startswith("/v1/"):
            self.timeline.add_request(seconds, status, generated)
        if self.timeline.needs_sample():
            self.timeline.sample(self.sample())

    def _count_admin(self, scope: Scope, route: str, status: int, x: _Exchange) -> None:
        if route not in ("/admin/models", "/admin/models/{name}") or not 200 <= status < 300:
            return
        if scope["method"] == "POST":
            name = _body_field(x.request_body, "name")
            self.metrics.loads.labels(name[:64] if name else NO_MODEL).inc()
        elif scope["method"] == "DELETE":
            self.metrics.unloads.labels(str(scope.get("path_params", {}).get("name", NO_MODEL))[:64]).inc()

    def _model(self, scope: Scope, x: _Exchange) -> str:
        """The request's ``model``, when it names one this server serves."""
        if x.model is None:
            name = _body_field(x.request_body, "model")
            if name is None:
                x.model = NO_MODEL
            else:
                x.model = name if name in self._served() else UNKNOWN_MODEL
        return x.model

    def _served(self) -> dict[str, str]:
        dispatch = getattr(self.state, "dispatch", None)
        try:
            served: dict[str, str] = dispatch.models() if dispatch is not None else {}
        except Exception:
            return {}
        return served


def _log_access(scope: Scope, route: str, model: str, status: int, seconds: float, x: _Exchange) -> None:
    """One line per request; the request body (prompts) only at debug level."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    extra: dict[str, Any] = {
        "method": scope["method"], "route": route, "status": status, "model": model,
        "duration_ms": round(seconds * 1000, 3),
    }  # fmt: skip
    if access_log.isEnabledFor(logging.DEBUG) and x.request_body:
        extra["body"] = bytes(x.request_body[:DEBUG_BODY_BYTES]).decode("utf-8", "replace")
    access_log.info("%s %s %d %.1fms", scope["method"], route, status, seconds * 1000, extra=extra)


def _route(scope: Scope) -> str:
    """The matched route's template; a static path refused before routing (429, 503) keeps its name."""
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str):
        return path
    app = scope.get("app")
    static = {getattr(r, "path", None) for r in getattr(app, "routes", ())}
    return str(scope["path"]) if scope["path"] in static and "{" not in scope["path"] else "unmatched"


def _count(x: _Exchange, counted: Any) -> int:
    """The tokens a stream counted since its last chunk (its totals, kept current by the route)."""
    tokens = int(counted.completion_total) - (x.completion_tokens or 0)
    x.prompt_tokens, x.completion_tokens = int(counted.prompt_total), int(counted.completion_total)
    return tokens


def _read_usage(x: _Exchange, usage: Any) -> None:
    """Chat and completions name them prompt/completion tokens; the Responses API input/output."""
    if isinstance(usage, dict):
        x.prompt_tokens = int(usage.get("prompt_tokens") or usage.get("input_tokens") or 0)
        for key in ("completion_tokens", "output_tokens"):
            if key in usage:
                x.completion_tokens = int(usage.get(key) or 0)


def _body_field(body: bytearray, name: str) -> str | None:
    if not body or len(body) > MAX_PEEK_BYTES:
        return None
    try:
        value = json.loads(body).get(name)
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _header(message: Message, name: bytes) -> str:
    for key, value in message.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1").lower()
    return ""

"""The outermost ASGI layer: an ``x-request-id`` on every response, and a 500 for the unexpected.

Written as plain ASGI (not ``BaseHTTPMiddleware``) so streaming responses and
``receive()`` (used to notice disconnects) pass through untouched.
"""

from __future__ import annotations

import logging
import re
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from blaze_ai.server.errors import payload_for

log = logging.getLogger("blaze_ai.server")

_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def new_request_id() -> str:
    return "req_" + uuid.uuid4().hex


class RequestIdMiddleware:
    """Give each request an id (a valid incoming ``x-request-id`` is kept) and stamp responses.

    Route code adds response headers (rate-limit counters) through
    ``scope["state"]["response_headers"]``; they are added here too, so they
    reach streaming and error responses alike.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = Headers(scope=scope).get("x-request-id", "")
        request_id = incoming if _VALID_ID.match(incoming) else new_request_id()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        extra: dict[str, str] = state.setdefault("response_headers", {})
        started = False

        async def stamped_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                headers["x-request-id"] = request_id
                for name, value in extra.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        try:
            await self.app(scope, receive, stamped_send)
        except Exception as exc:
            if started:  # nothing sensible can be sent now; the server closes the connection
                log.exception("request %s failed after its response started", request_id)
                return
            status, body, headers = payload_for(exc, request_id)
            await JSONResponse(body, status_code=status, headers=headers)(scope, receive, stamped_send)

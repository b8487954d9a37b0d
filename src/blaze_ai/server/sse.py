"""Server-sent events: ``data: <json>`` events ending with ``data: [DONE]``.

An error after the first event cannot change the status (the headers are
gone), so it is sent as a final ``data: {"error": {...}}`` event in the
OpenAI shape, and the stream ends there, without ``[DONE]``.

Per-token events differ from each other only in a few values (the text, the
choice index, the finish reason), so a stream renders its event once as a
:class:`Template` and fills the holes per token, instead of building and
encoding a whole response model for every token.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import StreamingResponse

from blaze_ai.server.errors import payload_for

DONE = b"data: [DONE]\n\n"
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def event(data: Any) -> bytes:
    """One SSE event carrying ``data`` as compact JSON."""
    return b"data: " + _encode(data).encode() + b"\n\n"


def hole(number: int) -> str:
    """A placeholder for value ``number`` of a :class:`Template` (a string no text contains)."""
    return f"\x00hole{number}\x00"


class Template:
    """``event(data)`` rendered once around :func:`hole` values; :meth:`render` fills them in order.

    The result is byte for byte ``event(data)`` with the holes replaced by the given values.
    """

    def __init__(self, data: Any, holes: int) -> None:
        rest = event(data)
        self._parts: list[bytes] = []
        for number in range(holes):
            before, found, rest = rest.partition(_encode(hole(number)).encode())
            if not found:
                raise ValueError(f"hole({number}) is missing from the template's data, or out of order")
            self._parts.append(before)
        self._parts.append(rest)

    def render(self, *values: str | int | None) -> bytes:
        """The event with ``values`` (strings, ints or None) in place of the holes."""
        parts = self._parts
        out = [parts[0]]
        for value, part in zip(values, parts[1:], strict=True):
            out.append(b"null" if value is None else _encode(value).encode())
            out.append(part)
        return b"".join(out)


async def frame(events: AsyncIterator[bytes], request_id: str) -> AsyncIterator[bytes]:
    """Pass SSE bytes (one or more events each) through, then ``[DONE]``; a failure becomes the last event."""
    try:
        async for chunk in events:
            yield chunk
    except Exception as exc:
        _, body, _ = payload_for(exc, request_id)
        yield event(body)
        return
    yield DONE


def sse_response(events: AsyncIterator[bytes], request_id: str) -> StreamingResponse:
    """A ``text/event-stream`` response for ``events`` (bytes of whole SSE events)."""
    return StreamingResponse(frame(events, request_id), media_type="text/event-stream", headers=HEADERS)

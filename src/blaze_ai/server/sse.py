"""Server-sent events: ``data: <json>`` events ending with ``data: [DONE]``.

An error after the first event cannot change the status (the headers are
gone), so it is sent as a final ``data: {"error": {...}}`` event in the
OpenAI shape, and the stream ends there, without ``[DONE]``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import StreamingResponse

from blaze_ai.server.errors import payload_for

DONE = b"data: [DONE]\n\n"
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def event(data: Any) -> bytes:
    """One SSE event carrying ``data`` as compact JSON."""
    return b"data: " + json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


async def frame(chunks: AsyncIterator[dict[str, Any]], request_id: str) -> AsyncIterator[bytes]:
    """Frame JSON chunks as SSE; a failure becomes the last event."""
    try:
        async for chunk in chunks:
            yield event(chunk)
    except Exception as exc:
        _, body, _ = payload_for(exc, request_id)
        yield event(body)
        return
    yield DONE


def sse_response(chunks: AsyncIterator[dict[str, Any]], request_id: str) -> StreamingResponse:
    """A ``text/event-stream`` response for ``chunks``."""
    return StreamingResponse(frame(chunks, request_id), media_type="text/event-stream", headers=HEADERS)

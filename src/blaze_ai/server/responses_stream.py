"""A Responses API answer, item by item, and its server-sent events.

Generated text becomes output items: a ``message`` with one ``output_text`` part for text, and a
``function_call`` for each tool call when the request's tools are parsed
(:class:`~blaze_ai.server.tools.ToolCallStream`). Items follow one another: each is added, filled
and done before the next one is added. The same :class:`OutputBuilder` makes a whole response (no
events) and a stream, so both give the same ``output``. The stream's events, each with ``type`` and
``sequence_number``, sent as ``event: <type>`` and ``data: <json>`` (no ``[DONE]``)::

    response.created, response.in_progress
    a message:        response.output_item.added, response.content_part.added,
                      response.output_text.delta ..., response.output_text.done,
                      response.content_part.done, response.output_item.done
    a function call:  response.output_item.added, response.function_call_arguments.delta ...,
                      response.function_call_arguments.done, response.output_item.done
    response.completed, or response.incomplete when max_output_tokens cut the answer short

An error after the first event is one ``error`` event (``code``, ``message``, ``param``), and the
stream ends there. A call cut off inside its arguments (by ``max_output_tokens``) stays in the output
as a ``function_call`` with status ``incomplete``; the last item of a cut-off answer is ``incomplete``.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import StreamingResponse

from blaze_ai.engines.requests import StreamDelta
from blaze_ai.server import generation as gen
from blaze_ai.server import tools
from blaze_ai.server.errors import payload_for
from blaze_ai.server.lifecycle import Pump
from blaze_ai.server.schemas.responses import (
    OutputFunctionCall,
    OutputItem,
    OutputMessage,
    OutputText,
    ResponseUsage,
    Status,
)
from blaze_ai.server.sse import HEADERS, Template, event, hole

TEXT_DELTA = "response.output_text.delta"
#: status, output, usage -> the Response object as JSON data.
Shell = Callable[[Status, list[OutputItem], ResponseUsage | None], dict[str, Any]]


def named_event(data: dict[str, Any]) -> bytes:
    """One SSE event named after its ``type``: ``event: <type>`` then ``data: <json>``."""
    return b"event: " + str(data["type"]).encode() + b"\n" + event(data)


class EventWriter:
    """Numbers events in order and encodes them; they wait in a buffer until taken."""

    def __init__(self) -> None:
        self.sequence = 0
        self._out: list[bytes] = []
        delta = {"type": TEXT_DELTA, "sequence_number": hole(0), "item_id": hole(1), "output_index": hole(2)}
        self._delta = Template({**delta, "content_index": 0, "delta": hole(3), "logprobs": []}, 4)
        self._delta_name = b"event: " + TEXT_DELTA.encode() + b"\n"

    def send(self, kind: str, **fields: Any) -> None:
        self._out.append(named_event({"type": kind, "sequence_number": self.sequence, **fields}))
        self.sequence += 1

    def text_delta(self, item_id: str, output_index: int, text: str) -> None:
        """The per-token event, rendered from a template."""
        self._out.append(self._delta_name + self._delta.render(self.sequence, item_id, output_index, text))
        self.sequence += 1

    def take(self) -> bytes:
        out, self._out = b"".join(self._out), []
        return out


class OutputBuilder:
    """The output items of one generated answer, fed as it is generated; events go to ``writer``."""

    def __init__(self, plan: tools.ToolPlan, writer: EventWriter | None = None) -> None:
        self.items: list[OutputItem] = []
        self._writer = writer
        self._parser = tools.ToolCallStream(plan.names) if plan.parses else None
        self._calls_only = plan.calls_only  # text outside calls is a cut-off call: not a message
        self._open: OutputItem | None = None
        self._text: list[str] = []  # the open message's text
        self._calls: dict[int, OutputFunctionCall] = {}  # by the parser's call index

    def feed(self, text: str) -> None:
        if self._parser is None:
            self._content(text)
            return
        for item in self._parser.feed(text):
            self._apply(item)

    def close(self, finish_reason: str | None) -> None:
        """The end of the answer: the open item is done (``incomplete`` if cut off by length)."""
        if self._parser is not None:
            for item in self._parser.close():
                self._apply(item)
        status = status_of(finish_reason)
        if not self.items:  # an empty answer is still one (empty) message
            self._open_message()
        self._finish(status)

    def _apply(self, item: tools.StreamEvent) -> None:
        if isinstance(item, tools.CallStart):
            self._start_call(item.index, item.id, item.name)
        elif isinstance(item, tools.ArgumentsDelta):
            self._arguments(item.index, item.text)
        elif item.abandoned is not None:  # a started call's block was cut off or malformed
            if self._calls.get(item.abandoned) is self._open:
                self._finish("incomplete")
        elif not self._calls_only:
            self._content(item.text)

    def _content(self, text: str) -> None:
        if not isinstance(self._open, OutputMessage):
            if self.items:  # text after a call starts a new message, without the space between
                text = text.lstrip()
            if not text:
                return
            self._finish("completed")
            self._open_message()
        assert isinstance(self._open, OutputMessage)
        if text:
            self._text.append(text)
            if self._writer is not None:
                self._writer.text_delta(self._open.id, len(self.items) - 1, text)

    def _open_message(self) -> None:
        message = OutputMessage(id="msg_" + secrets.token_hex(12), status="in_progress", content=[])
        self._add(message)
        self._text = []
        self._send(
            "response.content_part.added", **self._where(message), part=OutputText(text="").model_dump()
        )

    def _start_call(self, index: int, call_id: str, name: str) -> None:
        self._finish("completed")
        call = OutputFunctionCall(
            id="fc_" + secrets.token_hex(12), call_id=call_id, name=name, arguments="", status="in_progress"
        )
        self._calls[index] = call
        self._add(call)

    def _arguments(self, index: int, text: str) -> None:
        call = self._calls[index]
        call.arguments += text
        self._send(
            "response.function_call_arguments.delta",
            item_id=call.id,
            output_index=self._index(call),
            delta=text,
        )

    def _add(self, item: OutputItem) -> None:
        self.items.append(item)
        self._open = item
        self._send("response.output_item.added", output_index=len(self.items) - 1, item=item.model_dump())

    def _finish(self, status: Status) -> None:
        """The open item is done, with ``status``."""
        item, self._open = self._open, None
        if item is None:
            return
        if isinstance(item, OutputMessage):
            part = OutputText(text="".join(self._text))
            item.content = [part]
            self._send("response.output_text.done", **self._where(item), text=part.text, logprobs=[])
            self._send("response.content_part.done", **self._where(item), part=part.model_dump())
        else:
            self._send(
                "response.function_call_arguments.done",
                item_id=item.id,
                output_index=self._index(item),
                name=item.name,
                arguments=item.arguments,
            )
        item.status = status
        self._send("response.output_item.done", output_index=self._index(item), item=item.model_dump())

    def _index(self, item: OutputItem) -> int:
        return next(i for i, candidate in enumerate(self.items) if candidate is item)

    def _where(self, message: OutputMessage) -> dict[str, Any]:
        return {"item_id": message.id, "output_index": self._index(message), "content_index": 0}

    def _send(self, kind: str, **fields: Any) -> None:
        if self._writer is not None:
            self._writer.send(kind, **fields)


def status_of(finish_reason: str | None) -> Status:
    """``incomplete`` when the answer ran into ``max_output_tokens``."""
    return "incomplete" if finish_reason == "length" else "completed"


def usage_of(prompt_tokens: int, completion_tokens: int) -> ResponseUsage:
    return ResponseUsage(
        input_tokens=prompt_tokens,
        output_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
    )


def stream_response(
    request: Request, plan: tools.ToolPlan, shell: Shell, pump: Pump, first: tuple[int, StreamDelta] | None
) -> StreamingResponse:
    """The ``text/event-stream`` response of a streamed Responses request."""
    writer = EventWriter()
    events = _events(request, OutputBuilder(plan, writer), writer, shell, pump, first)
    body = _framed(events, writer, request.state.request_id)
    return StreamingResponse(body, media_type="text/event-stream", headers=HEADERS)


async def _events(
    request: Request,
    builder: OutputBuilder,
    writer: EventWriter,
    shell: Shell,
    pump: Pump,
    first: tuple[int, StreamDelta] | None,
) -> AsyncIterator[bytes]:
    writer.send("response.created", response=shell("in_progress", [], None))
    writer.send("response.in_progress", response=shell("in_progress", [], None))
    yield writer.take()
    state, reason = gen.stream_state(request), None
    try:
        async for batch in gen.pieces(pump, first):
            for source, piece in batch:
                state.add(source, piece)
                builder.feed(piece.text)
                reason = piece.finish_reason or reason
            if out := writer.take():
                yield out
    finally:  # what was generated is charged, even when the client left early
        gen.charge(request, state.usage().total_tokens)
    builder.close(reason)
    status, usage = status_of(reason), state.usage()
    final = shell(status, builder.items, usage_of(usage.prompt_tokens, usage.completion_tokens))
    writer.send(f"response.{status}", response=final)
    yield writer.take()


async def _framed(events: AsyncIterator[bytes], writer: EventWriter, request_id: str) -> AsyncIterator[bytes]:
    """Pass the events through; a failure becomes a last ``error`` event."""
    try:
        async for chunk in events:
            yield chunk
    except Exception as exc:
        _, body, _ = payload_for(exc, request_id)
        error = body["error"]
        writer.send("error", code=error["code"], message=error["message"], param=error["param"])
        yield writer.take()

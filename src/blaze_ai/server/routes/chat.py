"""``POST /v1/chat/completions``: messages through the model's chat template, whole or streamed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from blaze_ai.engines.requests import GenerationRequest, GenerationResult, StreamDelta
from blaze_ai.errors import BadRequestError
from blaze_ai.server import generation as gen
from blaze_ai.server import structured, tools
from blaze_ai.server.dispatch import context_for
from blaze_ai.server.lifecycle import Pump, deadline_in
from blaze_ai.server.logprobs import chat_logprobs
from blaze_ai.server.schemas import ERROR_RESPONSES, ChatCompletion, ChatCompletionRequest
from blaze_ai.server.schemas.chat import (
    AssistantMessage,
    ChatChoice,
    ChatCompletionChunk,
    ChatMessage,
    ChoiceLogprobs,
    ChunkChoice,
    ChunkDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallDeltaFunction,
    ToolCallFunction,
)
from blaze_ai.server.sse import Template, event, hole, sse_response

router = APIRouter(tags=["chat"])

STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {"schema": ChatCompletionChunk.model_json_schema()}}}
}


@router.post(
    "/v1/chat/completions",
    response_model=ChatCompletion,
    responses={**ERROR_RESPONSES, **STREAM_DOC},
    summary="Create a chat completion",
)
async def create_chat_completion(body: ChatCompletionRequest, request: Request) -> Response:
    server = request.app.state.server_config
    gen.require_kind(request, body.model, gen.TEXT_KINDS, "chat completions")
    if len(body.messages) > server.max_messages:
        raise BadRequestError(f"more than {server.max_messages} messages", param="messages")
    if body.max_tokens is not None and body.max_completion_tokens is not None:
        raise BadRequestError("give max_tokens or max_completion_tokens, not both", param="max_tokens")
    if body.top_logprobs is not None and not body.logprobs:
        raise BadRequestError("top_logprobs needs logprobs: true", param="top_logprobs")
    answer = structured.requested(body, body.response_format)
    plan = tools.plan(body.tools, body.tool_choice, body.parallel_tool_calls, answer=answer)
    params = gen.sampling_params(
        request,
        body,
        max_tokens=body.max_completion_tokens or body.max_tokens,
        default=gen.DEFAULT_CHAT_MAX_TOKENS,
        logprobs=(body.top_logprobs or 0) if body.logprobs else None,
        structured=plan.grammar,
    )
    deadline = deadline_in(server.request_timeout_s)
    generation = GenerationRequest(
        messages=[engine_message(m) for m in body.messages],
        tools=plan.definitions,
        params=params,
        deadline=deadline,
        request_id=request.state.request_id,
    )
    ctx = context_for(request, body.user)
    if body.stream:
        pump, first = await gen.open_stream(request, body.model, [generation], ctx, deadline)
        return sse_response(_chunks(request, body, plan, pump, first), request.state.request_id)
    (result,) = await gen.execute_all(request, body.model, [generation], ctx, deadline)
    gen.charge(request, result.prompt_tokens + result.completion_tokens)
    data = _completion(result, body, plan, request.state.request_id).model_dump()
    for choice in data["choices"]:  # like OpenAI, a message without calls has no tool_calls key
        if choice["message"]["tool_calls"] is None:
            del choice["message"]["tool_calls"]
    return JSONResponse(data)


def engine_message(message: ChatMessage) -> dict[str, Any]:
    """An OpenAI message as the engine's chat template takes it (text parts joined)."""
    out: dict[str, Any] = {"role": "system" if message.role == "developer" else message.role}
    out["content"] = None if message.content is None else _text(message.content)
    if message.tool_calls:
        out["tool_calls"] = [call.model_dump() for call in message.tool_calls]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    if message.name is not None and message.role == "tool":
        out["name"] = message.name
    return out


def _text(content: Any) -> str:
    return content if isinstance(content, str) else "".join(part.text for part in content)


def _message(text: str, plan: tools.ToolPlan) -> tuple[AssistantMessage, bool]:
    """The assistant message of a whole answer, and whether it calls tools."""
    if not plan.parses:
        return AssistantMessage(content=text), False
    parsed = tools.parse_tool_calls(text, plan.names)
    calls = [
        ToolCall(id=c.id, function=ToolCallFunction(name=c.name, arguments=c.arguments)) for c in parsed.calls
    ]
    content = None if plan.calls_only else parsed.content
    return AssistantMessage(content=content, tool_calls=calls or None), bool(calls)


def _reason(engine_reason: str | None, called: bool) -> str:
    """OpenAI's finish reason: an answer cut by max_tokens is "length" even when it holds calls."""
    if called and engine_reason != "length":
        return "tool_calls"
    return gen.finish_reason(engine_reason) or "stop"


def _completion(
    result: GenerationResult, body: ChatCompletionRequest, plan: tools.ToolPlan, request_id: str
) -> ChatCompletion:
    choices = []
    for c in result.choices:
        message, called = _message(c.text, plan)
        reason = _reason(c.finish_reason, called)
        logprobs = chat_logprobs(c.logprobs) if body.logprobs else None
        choices.append(ChatChoice(index=c.index, message=message, finish_reason=reason, logprobs=logprobs))
    return ChatCompletion(
        id=f"chatcmpl-{request_id}",
        created=gen.created(),
        model=body.model,
        choices=choices,
        usage=gen.usage(result.prompt_tokens, result.completion_tokens),
    )


class _Events:
    """A chat stream's SSE events; the per-token ones (without logprobs) from templates."""

    def __init__(self, request: Request, body: ChatCompletionRequest, plan: tools.ToolPlan) -> None:
        self.base: dict[str, Any] = {
            "id": f"chatcmpl-{request.state.request_id}",
            "created": gen.created(),
            "model": body.model,
        }
        content = self.chunk([ChunkChoice(index=0, delta=ChunkDelta(content=""))])
        content["choices"][0].update(index=hole(0), delta={"content": hole(1)})
        self.content = Template(content, 2)
        finish = self.chunk([ChunkChoice(index=0, delta=ChunkDelta())])
        finish["choices"][0].update(index=hole(0), finish_reason=hole(1))
        self.finish = Template(finish, 2)
        self.plan = plan
        self.calls: dict[int, tools.ToolCallStream] = {}  # per choice, when tool calls are parsed

    def chunk(self, choices: list[ChunkChoice], usage: Any = None) -> dict[str, Any]:
        data = ChatCompletionChunk(**self.base, choices=choices, usage=usage).model_dump()
        for choice in data["choices"]:  # like OpenAI, a delta carries only what it has
            choice["delta"] = _present(choice["delta"])
        return data

    def piece(self, piece: StreamDelta, logprobs: ChoiceLogprobs | None) -> list[bytes]:
        """The content event (if any) and the finish event (if last) of one piece."""
        if self.plan.parses:
            return self._tool_piece(piece, logprobs)
        events = []
        if logprobs:
            delta = ChunkDelta(content=piece.text)
            events.append(event(self.chunk([ChunkChoice(index=piece.index, delta=delta, logprobs=logprobs)])))
        elif piece.text:
            events.append(self.content.render(piece.index, piece.text))
        if piece.finish_reason is not None:
            events.append(self.finish.render(piece.index, gen.finish_reason(piece.finish_reason)))
        return events

    def _tool_piece(self, piece: StreamDelta, logprobs: ChoiceLogprobs | None) -> list[bytes]:
        """Content and tool-call deltas of one piece, parsed as the text streams."""
        parser = self.calls.setdefault(piece.index, tools.ToolCallStream(self.plan.names))
        deltas = parser.feed(piece.text)
        if piece.finish_reason is not None:
            deltas += parser.close()
        events = [
            event(self.chunk([ChunkChoice(index=piece.index, delta=d)]))
            for d in _chunk_deltas(deltas, self.plan.calls_only)
        ]
        if logprobs:
            events.append(
                event(self.chunk([ChunkChoice(index=piece.index, delta=ChunkDelta(), logprobs=logprobs)]))
            )
        if piece.finish_reason is not None:
            reason = _reason(piece.finish_reason, parser.called)
            events.append(self.finish.render(piece.index, reason))
        return events


def _present(delta: dict[str, Any]) -> dict[str, Any]:
    """A delta without its null fields, tool-call pieces included."""
    out = {k: v for k, v in delta.items() if v is not None}
    for call in out.get("tool_calls") or []:
        for key in [k for k, v in call.items() if v is None]:
            del call[key]
        call["function"] = {k: v for k, v in call["function"].items() if v is not None}
    return out


def _chunk_deltas(events: list[tools.StreamEvent], calls_only: bool) -> list[ChunkDelta]:
    """OpenAI chunk deltas for a tool-call parser's events (content dropped when only calls may be)."""
    deltas = []
    for item in events:
        if isinstance(item, tools.ContentDelta):
            if item.text and not calls_only:
                deltas.append(ChunkDelta(content=item.text))
        elif isinstance(item, tools.CallStart):
            function = ToolCallDeltaFunction(name=item.name, arguments="")
            deltas.append(
                ChunkDelta(
                    tool_calls=[
                        ToolCallDelta(index=item.index, id=item.id, type="function", function=function)
                    ]
                )
            )
        elif item.text:
            function = ToolCallDeltaFunction(arguments=item.text)
            deltas.append(ChunkDelta(tool_calls=[ToolCallDelta(index=item.index, function=function)]))
    return deltas


async def _chunks(
    request: Request,
    body: ChatCompletionRequest,
    plan: tools.ToolPlan,
    pump: Pump,
    first: tuple[int, StreamDelta] | None,
) -> AsyncIterator[bytes]:
    state = gen.stream_state(request)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    events = _Events(request, body, plan)
    roles = [ChunkChoice(index=i, delta=ChunkDelta(role="assistant", content="")) for i in range(body.n or 1)]
    yield event(events.chunk(roles))
    try:
        async for batch in gen.pieces(pump, first):
            out: list[bytes] = []
            for source, piece in batch:
                state.add(source, piece)
                out += events.piece(piece, chat_logprobs(piece.logprobs) if body.logprobs else None)
            if out:
                yield b"".join(out)
    finally:  # what was generated is charged, even when the client left early
        gen.charge(request, state.usage().total_tokens)
    if include_usage:
        yield event(events.chunk([], usage=state.usage()))

"""``POST /v1/chat/completions``: messages through the model's chat template, whole or streamed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from blaze_ai.engines.requests import Completion, GenerationRequest, GenerationResult, StreamDelta
from blaze_ai.errors import BadRequestError
from blaze_ai.server import generation as gen
from blaze_ai.server.dispatch import context_for
from blaze_ai.server.lifecycle import Pump, deadline_in
from blaze_ai.server.schemas import ERROR_RESPONSES, ChatCompletion, ChatCompletionRequest
from blaze_ai.server.schemas.chat import (
    AssistantMessage,
    ChatChoice,
    ChatCompletionChunk,
    ChoiceLogprobs,
    ChunkChoice,
    ChunkDelta,
    TokenLogprob,
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
    params = gen.sampling_params(
        request,
        body,
        max_tokens=body.max_completion_tokens or body.max_tokens,
        default=gen.DEFAULT_CHAT_MAX_TOKENS,
        logprobs=bool(body.logprobs),
    )
    deadline = deadline_in(server.request_timeout_s)
    messages = [{"role": _role(m.role), "content": _text(m.content)} for m in body.messages]
    generation = GenerationRequest(
        messages=messages, params=params, deadline=deadline, request_id=request.state.request_id
    )
    ctx = context_for(request, body.user)
    if body.stream:
        pump, first = await gen.open_stream(request, body.model, [generation], ctx, deadline)
        return sse_response(_chunks(request, body, pump, first), request.state.request_id)
    (result,) = await gen.execute_all(request, body.model, [generation], ctx, deadline)
    gen.charge(request, result.prompt_tokens + result.completion_tokens)
    return JSONResponse(_completion(result, body, request.state.request_id).model_dump())


def _role(role: str) -> str:
    return "system" if role == "developer" else role


def _text(content: Any) -> str:
    return content if isinstance(content, str) else "".join(part.text for part in content)


def _logprobs(choice: Completion | StreamDelta) -> ChoiceLogprobs | None:
    if choice.logprobs is None:
        return None
    tokens = gen.token_strings(choice.token_ids)
    return ChoiceLogprobs(
        content=[TokenLogprob(token=t, logprob=lp) for t, lp in zip(tokens, choice.logprobs, strict=False)]
    )


def _completion(result: GenerationResult, body: ChatCompletionRequest, request_id: str) -> ChatCompletion:
    return ChatCompletion(
        id=f"chatcmpl-{request_id}",
        created=gen.created(),
        model=body.model,
        choices=[
            ChatChoice(
                index=c.index,
                message=AssistantMessage(content=c.text),
                finish_reason=gen.finish_reason(c.finish_reason) or "stop",
                logprobs=_logprobs(c) if body.logprobs else None,
            )
            for c in result.choices
        ],
        usage=gen.usage(result.prompt_tokens, result.completion_tokens),
    )


class _Events:
    """A chat stream's SSE events; the per-token ones (without logprobs) from templates."""

    def __init__(self, request: Request, body: ChatCompletionRequest) -> None:
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

    def chunk(self, choices: list[ChunkChoice], usage: Any = None) -> dict[str, Any]:
        data = ChatCompletionChunk(**self.base, choices=choices, usage=usage).model_dump()
        for choice in data["choices"]:  # like OpenAI, a delta carries only what it has
            choice["delta"] = {k: v for k, v in choice["delta"].items() if v is not None}
        return data

    def piece(self, piece: StreamDelta, logprobs: ChoiceLogprobs | None) -> list[bytes]:
        """The content event (if any) and the finish event (if last) of one piece."""
        events = []
        if logprobs:
            delta = ChunkDelta(content=piece.text)
            events.append(event(self.chunk([ChunkChoice(index=piece.index, delta=delta, logprobs=logprobs)])))
        elif piece.text:
            events.append(self.content.render(piece.index, piece.text))
        if piece.finish_reason is not None:
            events.append(self.finish.render(piece.index, gen.finish_reason(piece.finish_reason)))
        return events


async def _chunks(
    request: Request, body: ChatCompletionRequest, pump: Pump, first: tuple[int, StreamDelta] | None
) -> AsyncIterator[bytes]:
    state = gen.StreamState()
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    events = _Events(request, body)
    roles = [ChunkChoice(index=i, delta=ChunkDelta(role="assistant", content="")) for i in range(body.n or 1)]
    yield event(events.chunk(roles))
    try:
        async for batch in gen.pieces(pump, first):
            out: list[bytes] = []
            for source, piece in batch:
                state.add(source, piece)
                out += events.piece(piece, _logprobs(piece) if body.logprobs else None)
            if out:
                yield b"".join(out)
    finally:  # what was generated is charged, even when the client left early
        gen.charge(request, state.usage().total_tokens)
    if include_usage:
        yield event(events.chunk([], usage=state.usage()))

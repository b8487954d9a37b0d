"""``POST /v1/completions``: one prompt or a list of them (strings or token ids), whole or streamed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from blaze_ai.engines.requests import Completion, GenerationRequest, GenerationResult, StreamDelta
from blaze_ai.errors import BadRequestError
from blaze_ai.server import generation as gen
from blaze_ai.server import structured
from blaze_ai.server.dispatch import context_for
from blaze_ai.server.lifecycle import Pump, deadline_in
from blaze_ai.server.logprobs import OffsetCounter, completion_logprobs, merge
from blaze_ai.server.schemas import ERROR_RESPONSES, CompletionRequest, TextCompletion
from blaze_ai.server.schemas.completions import CompletionChoice
from blaze_ai.server.sse import Template, event, hole, sse_response

router = APIRouter(tags=["completions"])

STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {"schema": TextCompletion.model_json_schema()}}}
}


@router.post(
    "/v1/completions",
    response_model=TextCompletion,
    responses={**ERROR_RESPONSES, **STREAM_DOC},
    summary="Create a text completion",
)
async def create_completion(body: CompletionRequest, request: Request) -> Response:
    server = request.app.state.server_config
    gen.require_kind(request, body.model, gen.TEXT_KINDS, "completions")
    prompts = _prompts(body.prompt)
    if len(prompts) * (body.n or 1) > server.max_n:
        raise BadRequestError(
            f"prompts x n is more than this server's limit of {server.max_n}", param="prompt"
        )
    params = gen.sampling_params(
        request,
        body,
        max_tokens=body.max_tokens,
        default=16,
        logprobs=body.logprobs,
        structured=structured.requested(body),
        echo=bool(body.echo),
    )
    deadline = deadline_in(server.request_timeout_s)
    rid = request.state.request_id
    requests = [
        GenerationRequest(
            prompt=p if isinstance(p, str) else None,
            prompt_token_ids=p if isinstance(p, list) else None,
            params=params,
            deadline=deadline,
            request_id=rid if len(prompts) == 1 else f"{rid}-{i}",
        )
        for i, p in enumerate(prompts)
    ]
    ctx = context_for(request, body.user)
    if body.stream:
        pump, first = await gen.open_stream(request, body.model, requests, ctx, deadline)
        return sse_response(_chunks(request, body, pump, first), rid)
    results = await gen.execute_all(request, body.model, requests, ctx, deadline)
    response = _completion(results, body, rid)
    gen.charge(request, response.usage.total_tokens if response.usage else 0)
    return JSONResponse(response.model_dump())


def _prompts(prompt: Any) -> list[str | list[int]]:
    """One entry per prompt: a string, or a list of token ids."""
    if isinstance(prompt, str):
        return [prompt]
    if prompt and isinstance(prompt[0], int):
        return [list(prompt)]
    return list(prompt)


def _logprobs(choice: Completion | StreamDelta, counter: OffsetCounter, body: CompletionRequest) -> Any:
    """The choice's completions-shaped log probabilities: the prompt's (with echo), then the text's."""
    if body.logprobs is None:
        return None
    with_top = body.logprobs > 0
    prompt = None
    if choice.prompt_logprobs is not None:
        prompt = completion_logprobs(choice.prompt_logprobs, counter, with_top)
    generated = completion_logprobs(choice.logprobs or [], counter, with_top)
    return merge(prompt, generated)


def _completion(results: list[GenerationResult], body: CompletionRequest, request_id: str) -> TextCompletion:
    n = body.n or 1
    choices = []
    for p, result in enumerate(results):
        for c in result.choices:
            prompt = c.prompt_text or ""
            choices.append(
                CompletionChoice(
                    index=p * n + c.index,
                    text=prompt + c.text,
                    finish_reason=gen.finish_reason(c.finish_reason),
                    logprobs=_logprobs(c, OffsetCounter(), body),
                )
            )
    prompt_tokens = sum(r.prompt_tokens for r in results)
    completion_tokens = sum(r.completion_tokens for r in results)
    return TextCompletion(
        id=f"cmpl-{request_id}",
        created=gen.created(),
        model=body.model,
        choices=sorted(choices, key=lambda c: c.index),
        usage=gen.usage(prompt_tokens, completion_tokens),
    )


async def _chunks(
    request: Request, body: CompletionRequest, pump: Pump, first: tuple[int, StreamDelta] | None
) -> AsyncIterator[bytes]:
    state = gen.stream_state(request)
    n = body.n or 1
    base: dict[str, Any] = {
        "id": f"cmpl-{request.state.request_id}",
        "created": gen.created(),
        "model": body.model,
    }
    fast = _piece_template(base) if body.logprobs is None and not body.echo else None
    counters: dict[int, OffsetCounter] = {}  # per choice: where its next token starts
    try:
        async for batch in gen.pieces(pump, first):
            events = []
            for source, piece in batch:
                state.add(source, piece)
                index, reason = source * n + piece.index, gen.finish_reason(piece.finish_reason)
                if fast is not None:
                    events.append(fast.render(index, piece.text, reason))
                    continue
                counter = counters.setdefault(index, OffsetCounter())
                choice = CompletionChoice(
                    index=index,
                    text=(piece.prompt_text or "") + piece.text,
                    finish_reason=reason,
                    logprobs=_logprobs(piece, counter, body),
                )
                events.append(event(TextCompletion(**base, choices=[choice]).model_dump()))
            yield b"".join(events)
    finally:  # what was generated is charged, even when the client left early
        gen.charge(request, state.usage().total_tokens)
    if body.stream_options and body.stream_options.include_usage:
        yield event(TextCompletion(**base, choices=[], usage=state.usage()).model_dump())


def _piece_template(base: dict[str, Any]) -> Template:
    """The event of one piece without logprobs, with holes for the index, text and finish reason."""
    choice = CompletionChoice(index=0, text="", finish_reason=None)
    data = TextCompletion(**base, choices=[choice]).model_dump()
    data["choices"][0].update(index=hole(0), text=hole(1), finish_reason=hole(2))
    return Template(data, 3)

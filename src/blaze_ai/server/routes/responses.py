"""``POST /v1/responses``: OpenAI's Responses API, stateless, whole or streamed.

Input items become the engine's chat messages (the shapes ``routes/chat.py`` makes): instructions
first as a system message, ``function_call`` items as an assistant turn's ``tool_calls`` (calls in a
row, and the assistant text just before them, are one turn), ``function_call_output`` items as
``tool`` messages. Function tools and ``tool_choice`` go through :mod:`blaze_ai.server.tools`,
``text.format`` becomes a JSON constraint. The output and the stream's events are made in
:mod:`blaze_ai.server.responses_stream`. Nothing is stored: ``previous_response_id`` and
``conversation`` are 400s.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from blaze_ai.engines.requests import GenerationRequest, GenerationResult, SamplingParams, StructuredOutput
from blaze_ai.errors import BadRequestError
from blaze_ai.server import generation as gen
from blaze_ai.server import structured, tools
from blaze_ai.server.dispatch import context_for
from blaze_ai.server.lifecycle import deadline_in
from blaze_ai.server.responses_stream import OutputBuilder, Shell, status_of, stream_response, usage_of
from blaze_ai.server.schemas import ERROR_RESPONSES, SamplingFields
from blaze_ai.server.schemas.responses import (
    FunctionCallItem,
    IncompleteDetails,
    MessageItem,
    OutputItem,
    ResponseObject,
    ResponseRequest,
    ResponseUsage,
    Status,
)

router = APIRouter(tags=["responses"])

STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {"schema": {"type": "string", "description": "Responses events"}}}}
}


@router.post(
    "/v1/responses",
    response_model=ResponseObject,
    responses={**ERROR_RESPONSES, **STREAM_DOC},
    summary="Create a model response",
)
async def create_response(body: ResponseRequest, request: Request) -> Response:
    server = request.app.state.server_config
    _refuse_state(body)
    gen.require_kind(request, body.model, gen.TEXT_KINDS, "the Responses API")
    messages = engine_messages(body)
    if len(messages) > server.max_messages:
        raise BadRequestError(f"more than {server.max_messages} messages", param="input")
    answer = text_constraint(body)
    plan = tools.plan(_chat_tools(body), _chat_tool_choice(body), body.parallel_tool_calls, answer=answer)
    deadline = deadline_in(server.request_timeout_s)
    generation = GenerationRequest(
        messages=messages,
        tools=plan.definitions,
        params=_sampling(request, body, plan.grammar),
        deadline=deadline,
        request_id=request.state.request_id,
    )
    ctx = context_for(request, body.user)
    shell = response_shell(body, request.state.request_id)
    if body.stream:
        pump, first = await gen.open_stream(request, body.model, [generation], ctx, deadline)
        return stream_response(request, plan, shell, pump, first)
    (result,) = await gen.execute_all(request, body.model, [generation], ctx, deadline)
    gen.charge(request, result.prompt_tokens + result.completion_tokens)
    return JSONResponse(_whole(result, plan, shell))


def _whole(result: GenerationResult, plan: tools.ToolPlan, shell: Shell) -> dict[str, Any]:
    """The Response object of a finished generation (one choice)."""
    (choice,) = result.choices
    builder = OutputBuilder(plan)
    builder.feed(choice.text)
    builder.close(choice.finish_reason)
    usage = usage_of(result.prompt_tokens, result.completion_tokens)
    return shell(status_of(choice.finish_reason), builder.items, usage)


def _refuse_state(body: ResponseRequest) -> None:
    if body.previous_response_id is not None:
        raise BadRequestError(
            "Blaze AI stores no responses, so previous_response_id cannot be used; "
            "send the earlier turns as input items instead",
            param="previous_response_id",
        )
    if body.conversation is not None:
        raise BadRequestError(
            "Blaze AI stores no conversations; send the earlier turns as input items instead",
            param="conversation",
        )


def engine_messages(body: ResponseRequest) -> list[dict[str, Any]]:
    """The request's instructions and input as the engine's chat messages."""
    out: list[dict[str, Any]] = []
    if body.instructions is not None:
        out.append({"role": "system", "content": body.instructions})
    items = (
        [MessageItem.model_validate({"role": "user", "content": body.input})]
        if isinstance(body.input, str)
        else body.input
    )
    for item in items:
        if isinstance(item, MessageItem):
            role = "system" if item.role == "developer" else item.role
            out.append({"role": role, "content": item.text})
        elif isinstance(item, FunctionCallItem):
            _add_call(out, item)
        else:
            out.append({"role": "tool", "tool_call_id": item.call_id, "content": item.text})
    return out


def _add_call(messages: list[dict[str, Any]], item: FunctionCallItem) -> None:
    """Add a call to the assistant turn just before it, or start one."""
    call = {
        "id": item.call_id,
        "type": "function",
        "function": {"name": item.name, "arguments": item.arguments},
    }
    last = messages[-1] if messages else None
    if last is not None and last["role"] == "assistant":
        last.setdefault("tool_calls", []).append(call)
    else:
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})


def _chat_tools(body: ResponseRequest) -> list[dict[str, Any]] | None:
    """The Responses API's flat function tools in the chat completions shape."""
    if body.tools is None:
        return None
    return [
        {"type": "function", "function": tool.model_dump(exclude={"type"}, exclude_none=True)}
        for tool in body.tools
    ]


def _chat_tool_choice(body: ResponseRequest) -> str | dict[str, Any] | None:
    choice = body.tool_choice
    if choice is None or isinstance(choice, str):
        return choice
    return {"type": "function", "function": {"name": choice.name}}


def text_constraint(body: ResponseRequest) -> StructuredOutput | None:
    """``text.format`` as a constraint on the output; None for free text."""
    fmt = body.text.format if body.text is not None else None
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return StructuredOutput("json", structured.ANY_OBJECT)
    return StructuredOutput("json", structured.schema_text(fmt.schema_, "text.format.schema"))


def _sampling(request: Request, body: ResponseRequest, constraint: StructuredOutput | None) -> SamplingParams:
    # Only the sampling fields the Responses API (and Blaze's extras on it) has.
    fields = SamplingFields.model_validate(
        {
            "temperature": body.temperature,
            "top_p": body.top_p,
            "seed": body.seed,
            "top_k": body.top_k,
            "min_p": body.min_p,
            "repetition_penalty": body.repetition_penalty,
        }
    )
    try:
        return gen.sampling_params(
            request,
            fields,
            max_tokens=body.max_output_tokens,
            default=gen.DEFAULT_CHAT_MAX_TOKENS,
            logprobs=None,
            structured=constraint,
        )
    except BadRequestError as exc:
        if exc.param != "max_tokens":
            raise
        raise BadRequestError(
            exc.message.replace("max_tokens", "max_output_tokens"), param="max_output_tokens"
        ) from exc


def response_shell(body: ResponseRequest, request_id: str) -> Shell:
    """A function making this request's Response object from a status, the output and the usage."""
    fmt = body.text.format if body.text is not None else None
    echo: dict[str, Any] = {
        "id": f"resp_{request_id}",
        "created_at": gen.created(),
        "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens,
        "model": body.model,
        "parallel_tool_calls": True if body.parallel_tool_calls is None else body.parallel_tool_calls,
        "store": False,  # whatever was asked: nothing is kept
        "temperature": 1.0 if body.temperature is None else body.temperature,
        "text": {"format": fmt.model_dump(by_alias=True, exclude_none=True) if fmt else {"type": "text"}},
        "tool_choice": _echo_choice(body),
        "tools": [tool.model_dump() for tool in body.tools or []],
        "top_p": 1.0 if body.top_p is None else body.top_p,
        "truncation": body.truncation or "disabled",
        "user": body.user,
        "metadata": body.metadata or {},
    }

    def shell(status: Status, output: list[OutputItem], usage: ResponseUsage | None) -> dict[str, Any]:
        details = IncompleteDetails(reason="max_output_tokens") if status == "incomplete" else None
        response = ResponseObject(
            **echo, status=status, output=output, usage=usage, incomplete_details=details
        )
        return response.model_dump(by_alias=True)

    return shell


def _echo_choice(body: ResponseRequest) -> str | dict[str, Any]:
    choice = body.tool_choice
    if choice is None:
        return "auto"
    return choice if isinstance(choice, str) else choice.model_dump()

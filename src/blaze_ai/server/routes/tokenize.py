"""``POST /tokenize``, ``POST /detokenize``, ``GET /tokenizer_info`` (vLLM's shapes): a text model's
tokenizer over HTTP.

Eval tools and clients count tokens and build prompts with them. Chat messages go through the
same template (and tool rendering) as a chat completion, so the count is what a request costs.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from blaze_ai.engines.requests import DetokenizeRequest as EngineDetokenize
from blaze_ai.engines.requests import DetokenizeResult, TokenizeResult, TokenizerInfo, TokenizerInfoRequest
from blaze_ai.engines.requests import TokenizeRequest as EngineTokenize
from blaze_ai.errors import BadRequestError
from blaze_ai.server import generation as gen
from blaze_ai.server.dispatch import Dispatch, context_for
from blaze_ai.server.routes.chat import engine_message
from blaze_ai.server.schemas import ERROR_RESPONSES
from blaze_ai.server.schemas.tokenize import (
    DetokenizeRequest,
    DetokenizeResponse,
    TokenizeRequest,
    TokenizeResponse,
    TokenizerInfoResponse,
)

router = APIRouter(tags=["tokenizer"])


def _model(request: Request, model: str | None) -> str:
    """The named model, or the one text model served when none is named."""
    if model is None:
        dispatch: Dispatch = request.app.state.dispatch
        text = [name for name, kind in dispatch.models().items() if kind in gen.TEXT_KINDS]
        if len(text) != 1:
            raise BadRequestError(f"name the model: this server has {len(text)} text models", param="model")
        model = text[0]
    gen.require_kind(request, model, gen.TEXT_KINDS, "tokenization")
    return model


@router.post("/tokenize", response_model=TokenizeResponse, responses=ERROR_RESPONSES, summary="Tokenize")
async def tokenize(body: TokenizeRequest, request: Request) -> TokenizeResponse:
    model = _model(request, body.model)
    work = EngineTokenize(
        prompt=body.prompt,
        messages=None if body.messages is None else [engine_message(m) for m in body.messages],
        tools=None if body.tools is None else [t.model_dump(exclude_none=True) for t in body.tools],
        add_special_tokens=body.add_special_tokens is not False,
        add_generation_prompt=body.add_generation_prompt is not False,
        request_id=request.state.request_id,
    )
    result: TokenizeResult = await request.app.state.dispatch.execute(model, work, context_for(request))
    strs = result.tokens if body.return_token_strs else None
    return TokenizeResponse(
        count=len(result.token_ids),
        max_model_len=result.max_context,
        tokens=result.token_ids,
        token_strs=strs,
    )


@router.post(
    "/detokenize", response_model=DetokenizeResponse, responses=ERROR_RESPONSES, summary="Detokenize"
)
async def detokenize(body: DetokenizeRequest, request: Request) -> DetokenizeResponse:
    model = _model(request, body.model)
    work = EngineDetokenize(body.tokens, request_id=request.state.request_id)
    result: DetokenizeResult = await request.app.state.dispatch.execute(model, work, context_for(request))
    return DetokenizeResponse(prompt=result.text)


@router.get(
    "/tokenizer_info",
    response_model=TokenizerInfoResponse,
    responses=ERROR_RESPONSES,
    summary="Tokenizer info",
)
async def tokenizer_info(request: Request, model: str | None = None) -> TokenizerInfoResponse:
    name = _model(request, model)
    work = TokenizerInfoRequest(request_id=request.state.request_id)
    info: TokenizerInfo = await request.app.state.dispatch.execute(name, work, context_for(request))
    return TokenizerInfoResponse(
        tokenizer_class=info.tokenizer_class,
        eos_token=info.eos_token,
        bos_token=info.bos_token,
        pad_token=info.pad_token,
        chat_template=info.chat_template,
        model_max_length=info.max_context,
    )

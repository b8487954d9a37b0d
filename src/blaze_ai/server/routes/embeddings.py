"""``POST /v1/embeddings``."""

from __future__ import annotations

import base64
import struct
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from blaze_ai.engines.requests import EmbeddingRequest, EmbeddingResult
from blaze_ai.server import generation as gen
from blaze_ai.server.dispatch import Dispatch, context_for
from blaze_ai.server.lifecycle import deadline_in, run_guarded
from blaze_ai.server.schemas import ERROR_RESPONSES, EmbeddingCreateRequest, EmbeddingList
from blaze_ai.server.schemas.embeddings import Embedding, EmbeddingUsage

router = APIRouter(tags=["embeddings"])

EMBEDDING_KINDS = ("embedding", "fake")


@router.post(
    "/v1/embeddings", response_model=EmbeddingList, responses=ERROR_RESPONSES, summary="Embed inputs"
)
async def create_embeddings(body: EmbeddingCreateRequest, request: Request) -> Response:
    server = request.app.state.server_config
    dispatch: Dispatch = request.app.state.dispatch
    gen.require_kind(request, body.model, EMBEDDING_KINDS, "embeddings")
    deadline = deadline_in(server.request_timeout_s)
    embedding_request = EmbeddingRequest(
        inputs=_inputs(body.input),
        dimensions=body.dimensions,
        deadline=deadline,
        request_id=request.state.request_id,
    )
    ctx = context_for(request, body.user)
    result: EmbeddingResult = await run_guarded(
        request, dispatch.execute(body.model, embedding_request, ctx), deadline
    )
    gen.charge(request, result.prompt_tokens)
    as_base64 = body.encoding_format == "base64"
    data = [
        Embedding(index=i, embedding=_base64(vector) if as_base64 else vector)
        for i, vector in enumerate(result.vectors)
    ]
    usage = EmbeddingUsage(prompt_tokens=result.prompt_tokens, total_tokens=result.prompt_tokens)
    return JSONResponse(EmbeddingList(data=data, model=body.model, usage=usage).model_dump())


def _inputs(value: Any) -> Any:
    """Always a list: of strings, or of token-id lists."""
    if isinstance(value, str):
        return [value]
    if isinstance(value[0], int):
        return [list(value)]
    return list(value)


def _base64(vector: list[float]) -> str:
    """Little-endian float32, base64: what the openai client decodes."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()

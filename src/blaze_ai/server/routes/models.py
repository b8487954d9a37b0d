"""``GET /v1/models`` and ``GET /v1/models/{model}``."""

from __future__ import annotations

from fastapi import APIRouter, Request

from blaze_ai.errors import NotFoundError
from blaze_ai.server.dispatch import Dispatch
from blaze_ai.server.schemas import ERROR_RESPONSES, ModelCard, ModelList

router = APIRouter(tags=["models"])


@router.get("/v1/models", response_model=ModelList, responses=ERROR_RESPONSES, summary="List models")
async def list_models(request: Request) -> ModelList:
    dispatch: Dispatch = request.app.state.dispatch
    created = request.app.state.started_at
    return ModelList(data=[ModelCard(id=name, created=created) for name in dispatch.models()])


@router.get(
    "/v1/models/{model:path}", response_model=ModelCard, responses=ERROR_RESPONSES, summary="Get a model"
)
async def get_model(model: str, request: Request) -> ModelCard:
    dispatch: Dispatch = request.app.state.dispatch
    if model not in dispatch.models():
        raise NotFoundError(f"The model '{model}' does not exist", param="model")
    return ModelCard(id=model, created=request.app.state.started_at)

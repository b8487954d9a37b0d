"""``POST /v1/images/generations`` and ``GET /v1/images/files/{id}``."""

from __future__ import annotations

import base64

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from blaze_ai.engines.requests import ImageRequest, ImageResult
from blaze_ai.errors import BadRequestError, NotFoundError
from blaze_ai.server import generation as gen
from blaze_ai.server.dispatch import Dispatch, context_for
from blaze_ai.server.image_store import ImageStore
from blaze_ai.server.lifecycle import deadline_in, run_guarded
from blaze_ai.server.schemas import ERROR_RESPONSES, ImageGenerationRequest, ImagesResponse
from blaze_ai.server.schemas.images import ImageData

router = APIRouter(tags=["images"])

IMAGE_KINDS = ("diffusion", "fake")


@router.post(
    "/v1/images/generations",
    response_model=ImagesResponse,
    responses=ERROR_RESPONSES,
    summary="Create images",
)
async def create_images(body: ImageGenerationRequest, request: Request) -> Response:
    server = request.app.state.server_config
    dispatch: Dispatch = request.app.state.dispatch
    model = body.model or _default_model(dispatch)
    gen.require_kind(request, model, IMAGE_KINDS, "image generation")
    n = body.n or 1
    if n > server.max_n:
        raise BadRequestError(f"n is {n}, more than this server's limit of {server.max_n}", param="n")
    width, height = _size(body.size)
    deadline = deadline_in(server.request_timeout_s)
    image_request = ImageRequest(
        prompt=body.prompt,
        negative_prompt=body.negative_prompt,
        n=n,
        width=width,
        height=height,
        steps=body.steps,
        guidance=body.guidance,
        scheduler=body.scheduler,
        seed=body.seed,
        deadline=deadline,
        request_id=request.state.request_id,
    )
    ctx = context_for(request, body.user)
    result: ImageResult = await run_guarded(request, dispatch.execute(model, image_request, ctx), deadline)
    store: ImageStore = request.app.state.images
    if body.response_format == "b64_json":
        data = [ImageData(b64_json=base64.b64encode(png).decode()) for png in result.images]
    else:
        base = str(request.base_url).rstrip("/")
        data = [ImageData(url=f"{base}/v1/images/files/{store.put(png)}") for png in result.images]
    response = ImagesResponse(created=gen.created(), data=data)
    return JSONResponse(response.model_dump(exclude_none=True))


@router.get(
    "/v1/images/files/{image_id}",
    responses={200: {"content": {"image/png": {}}}, 404: ERROR_RESPONSES[404]},
    response_class=Response,
    summary="Download a generated image (kept for server.image_url_ttl_s)",
)
async def get_image(image_id: str, request: Request) -> Response:
    store: ImageStore = request.app.state.images
    png = store.get(image_id)
    if png is None:
        raise NotFoundError("no such image (or it expired)", param="image_id", code="image_not_found")
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=60"})


def _default_model(dispatch: Dispatch) -> str:
    for name, kind in dispatch.models().items():
        if kind == "diffusion":
            return name
    raise BadRequestError("model is required: no diffusion model is served by default", param="model")


def _size(size: str | None) -> tuple[int | None, int | None]:
    if size is None:
        return None, None
    width, height = (int(v) for v in size.split("x"))
    if not (1 <= width <= 4096 and 1 <= height <= 4096):
        raise BadRequestError(f"size {size} is out of range (1x1 to 4096x4096)", param="size")
    return width, height

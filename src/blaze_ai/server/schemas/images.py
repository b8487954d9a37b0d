"""``POST /v1/images/generations`` bodies: the OpenAI shape plus Blaze's diffusion extras."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from blaze_ai.server.schemas.common import MAX_INT, ModelName, Seed, Strict, User

IMAGE_UNSUPPORTED: dict[str, tuple[Any, ...]] = {
    "quality": ("auto", "standard"),
    "style": (),
    "background": ("auto",),
    "moderation": ("auto",),
    "output_format": ("png",),
    "output_compression": (100,),
    "partial_images": (0,),
    "stream": (False,),
}


class ImageGenerationRequest(Strict):
    """Text to image."""

    unsupported = IMAGE_UNSUPPORTED

    prompt: str = Field(min_length=1, max_length=4000)
    model: ModelName | None = Field(None, description="Defaults to the first diffusion model served.")
    n: int | None = Field(None, ge=1, le=MAX_INT)
    size: str | None = Field(
        None, pattern=r"^[0-9]{1,5}x[0-9]{1,5}$", description="'WIDTHxHEIGHT', e.g. 64x64"
    )
    response_format: Literal["url", "b64_json"] | None = Field(
        None, description="url (default): served at /v1/images/files/{id} for a limited time."
    )
    user: User | None = None
    seed: Seed | None = Field(None, description="Blaze extra: image i uses seed + i.")
    steps: int | None = Field(None, ge=1, le=1000, description="Blaze extra: denoising steps.")
    guidance: float | None = Field(None, ge=0.0, le=100.0, description="Blaze extra: guidance scale.")
    negative_prompt: str | None = Field(None, max_length=4000, description="Blaze extra.")
    scheduler: str | None = Field(None, min_length=1, max_length=64, description="Blaze extra: sampler name.")


class ImageData(BaseModel):
    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = None


class ImagesResponse(BaseModel):
    created: int
    data: list[ImageData]

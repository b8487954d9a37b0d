"""What every request body shares: strict parsing and explicit rejection of unsupported parameters.

Request models forbid unknown fields (a 400 naming them). Parameters of the
OpenAI API that Blaze does not implement are listed per route with the values
that mean "off"; sending one of them with any other value is a 400 that names
it, never a silent no-op.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

MAX_INT = 2**31 - 1
MAX_SEED = 2**63 - 1

ModelName = Annotated[str, Field(min_length=1, max_length=256, description="A model id from GET /v1/models.")]
TokenIds = Annotated[list[Annotated[int, Field(ge=0, le=MAX_INT)]], Field(min_length=1)]
Seed = Annotated[int, Field(ge=0, le=MAX_SEED, description="Same seed, same output (per choice).")]
User = Annotated[str, Field(max_length=256, description="End-user id; used as the routing session key.")]

#: Sentinel accepted for every unsupported parameter: absent or null.
NEUTRAL_NONE: tuple[Any, ...] = (None,)


class Strict(BaseModel):
    """A request body: unknown keys are errors, types are not coerced."""

    model_config = ConfigDict(extra="forbid", strict=True)

    #: name -> the values that mean "not used"; any other value is rejected.
    unsupported: ClassVar[Mapping[str, tuple[Any, ...]]] = {}

    @model_validator(mode="before")
    @classmethod
    def _reject_unsupported(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        unsupported = cls.unsupported
        rejected = [k for k, v in data.items() if k in unsupported and not _is_neutral(v, unsupported[k])]
        if rejected:
            raise PydanticCustomError(
                "unsupported_parameter",
                "Blaze AI does not support the parameter(s) {param}",
                {"param": ", ".join(rejected)},
            )
        kept = {k: v for k, v in data.items() if k not in unsupported}
        return kept


def _is_neutral(value: Any, neutral: tuple[Any, ...]) -> bool:
    # True == 1 in Python; a bool only matches a bool.
    return any(
        value == n and isinstance(value, bool) == isinstance(n, bool) for n in (*NEUTRAL_NONE, *neutral)
    )


class StreamOptions(Strict):
    """Options for a streamed response."""

    include_usage: bool | None = Field(None, description="Send usage in a last chunk with no choices.")


class Usage(BaseModel):
    """Token counts of a request."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    """Every error response."""

    error: ErrorDetail


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "blaze-ai"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in (
        (400, "Invalid request, unsupported parameter or context too long"),
        (401, "Missing or invalid API key"),
        (404, "Unknown model"),
        (413, "Body too large"),
        (429, "Queue full or rate limited (see Retry-After)"),
        (503, "Engine unavailable or draining (see Retry-After)"),
        (504, "Deadline passed"),
    )
}

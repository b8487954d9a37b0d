"""Cache keys: a sha256 of the model, the operation and the normalised request.

Only what changes the answer is keyed: the input and the sampling or image
parameters. Bookkeeping fields (``request_id``, ``deadline``, ``arrival``,
``priority``) are left out, so two users asking the same thing share a key.
The normalised form is canonical JSON (sorted keys, no spaces, floats as
floats), so ``temperature=0`` and ``temperature=0.0`` give the same key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Literal

from blaze_ai.engines.requests import EmbeddingRequest, GenerationRequest, ImageRequest

#: Bump when the stored format or the normalisation changes: old entries are then never read.
KEY_VERSION = "v2"

Op = Literal["execute", "stream"]
Mode = Literal["deterministic", "all", "off"]
MODES: tuple[str, ...] = ("deterministic", "all", "off")


def normalise(request: Any) -> dict[str, Any] | None:
    """The fields of ``request`` that decide its answer, or None for a type the cache does not know."""
    if isinstance(request, GenerationRequest):
        params = dataclasses.asdict(request.params)  # every sampling and reporting field decides the answer
        for name in (
            "temperature",
            "top_p",
            "min_p",
            "frequency_penalty",
            "presence_penalty",
            "repetition_penalty",
        ):
            params[name] = float(params[name])
        return {
            "type": "generation",
            "prompt": request.prompt,
            "prompt_token_ids": request.prompt_token_ids,
            "messages": request.messages,
            "tools": request.tools,
            **params,
        }
    if isinstance(request, ImageRequest):
        return {
            "type": "image",
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt,
            "n": request.n,
            "width": request.width,
            "height": request.height,
            "steps": request.steps,
            "guidance": None if request.guidance is None else float(request.guidance),
            "scheduler": request.scheduler,
            "seed": request.seed,
        }
    if isinstance(request, EmbeddingRequest):
        return {
            "type": "embedding",
            "inputs": request.inputs,
            "normalize": request.normalize,
            "dimensions": request.dimensions,
        }
    return None


def cache_key(model: str, request: Any, op: Op) -> str | None:
    """``blaze:v1:<sha256 hex>`` for a known request type, else None."""
    fields = normalise(request)
    if fields is None:
        return None
    document = {"model": model, "op": op, "request": fields}
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return f"blaze:{KEY_VERSION}:{hashlib.sha256(canonical.encode('utf-8')).hexdigest()}"


def deterministic(request: Any) -> bool:
    """Whether asking again gives the same answer: greedy or seeded text, seeded images, embeddings."""
    if isinstance(request, GenerationRequest):
        return request.params.temperature == 0.0 or request.params.seed is not None
    if isinstance(request, ImageRequest):
        return request.seed is not None
    return isinstance(request, EmbeddingRequest)


def cacheable(request: Any, mode: str) -> bool:
    """Whether ``mode`` caches ``request``: ``all`` caches every known type, ``off`` nothing."""
    if mode == "off" or normalise(request) is None:
        return False
    return mode == "all" or deterministic(request)

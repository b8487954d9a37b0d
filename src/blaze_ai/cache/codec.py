"""Results and stream pieces to bytes and back: tagged JSON, PNG bytes as base64.

Never pickle: entries may come from a shared Redis, and unpickling them would
run whatever someone stored. Decoding builds the known dataclasses field by
field and rejects anything else with :class:`CodecError`.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

from blaze_ai.engines.requests import (
    Completion,
    EmbeddingResult,
    GenerationResult,
    ImageResult,
    StreamDelta,
    TokenLogprob,
)

FORMAT = 2


class CodecError(ValueError):
    """A stored entry that is not a result this version can read (treated as a miss)."""


def encode_result(result: Any) -> bytes:
    """One finished result as JSON bytes; raises CodecError for a type the cache does not store."""
    if isinstance(result, GenerationResult | EmbeddingResult):
        data = dataclasses.asdict(result)
    elif isinstance(result, ImageResult):
        data = dataclasses.asdict(result)
        data["images"] = [base64.b64encode(png).decode("ascii") for png in result.images]
    else:
        raise CodecError(f"cannot cache a {type(result).__name__}")
    return _dump({"format": FORMAT, "type": type(result).__name__, "data": data})


def decode_result(blob: bytes) -> Any:
    """The result stored by :func:`encode_result`."""
    kind, data = _load(blob)
    try:
        if kind == "GenerationResult":
            choices = [Completion(**_with_logprobs(c)) for c in data.pop("choices")]
            return GenerationResult(choices=choices, **data)
        if kind == "EmbeddingResult":
            return EmbeddingResult(**data)
        if kind == "ImageResult":
            data["images"] = [base64.b64decode(png, validate=True) for png in data["images"]]
            return ImageResult(**data)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise CodecError(f"stored {kind} is malformed: {exc}") from exc
    raise CodecError(f"stored entry of unknown type {kind!r}")


def encode_pieces(pieces: list[Any]) -> bytes:
    """A finished stream (its StreamDelta pieces, in order) as JSON bytes."""
    if not all(isinstance(p, StreamDelta) for p in pieces):
        raise CodecError("only streams of StreamDelta pieces are cached")
    return _dump({"format": FORMAT, "type": "stream", "data": [dataclasses.asdict(p) for p in pieces]})


def decode_pieces(blob: bytes) -> list[StreamDelta]:
    """The pieces stored by :func:`encode_pieces`, in order."""
    kind, data = _load(blob)
    if kind != "stream" or not isinstance(data, list):
        raise CodecError(f"stored entry is a {kind!r}, not a stream")
    try:
        return [StreamDelta(**_with_logprobs(piece)) for piece in data]
    except (TypeError, AttributeError) as exc:
        raise CodecError(f"stored stream is malformed: {exc}") from exc


def _with_logprobs(fields: dict[str, Any]) -> dict[str, Any]:
    """A choice's or piece's fields with their log probabilities rebuilt as TokenLogprob objects."""
    for name in ("logprobs", "prompt_logprobs"):
        if fields.get(name) is not None:
            fields[name] = [_token(t) for t in fields[name]]
    return fields


def _token(fields: dict[str, Any]) -> TokenLogprob:
    top = [_token(t) for t in fields.pop("top", [])]
    return TokenLogprob(top=top, **fields)


def _dump(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _load(blob: bytes) -> tuple[str, Any]:
    try:
        document = json.loads(blob)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CodecError(f"stored entry is not JSON: {exc}") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise CodecError("stored entry has another format version")
    return str(document.get("type")), document.get("data")

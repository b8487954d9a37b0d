"""Results and streams survive the trip to bytes; foreign bytes are refused, never unpickled."""

from __future__ import annotations

import pickle

import pytest

from blaze_ai.cache import codec
from blaze_ai.engines.requests import (
    Completion,
    EmbeddingResult,
    GenerationResult,
    ImageResult,
    StreamDelta,
    TokenLogprob,
)

PARTIAL = TokenLogprob(9, "bytes:\\xe2", [0xE2], -0.25)
HELLO = TokenLogprob(1, "hé", list("hé".encode()), -0.5, [TokenLogprob(2, "he", [104, 101], -1.5), PARTIAL])


def test_results_round_trip() -> None:
    echoed = Completion(
        0, "llo", [1, 2], "length", [HELLO, PARTIAL], "hé", [TokenLogprob(5, "x", [120], None)]
    )
    results = [
        GenerationResult("r", [Completion(0, "héllo", [1, 2], "stop", [HELLO, PARTIAL])], 3, 2),
        GenerationResult("r", [echoed], 1, 2),
        EmbeddingResult("r", [[0.25, -1.0], [0.5, 0.0]], 4),
        ImageResult("r", [b"\x89PNG\r\n\x1a\n\x00\xff", b""], [7, 8], 64, 32),
    ]
    for result in results:
        assert codec.decode_result(codec.encode_result(result)) == result


def test_stream_round_trip_keeps_order() -> None:
    pieces = [StreamDelta(0, "a", [1], None, 2, 1), StreamDelta(0, " b", [2], "length", 2, 2, [HELLO])]
    assert codec.decode_pieces(codec.encode_pieces(pieces)) == pieces


def test_foreign_entries_are_refused() -> None:
    for blob in (pickle.dumps({"a": 1}), b"not json", b'{"format": 99, "type": "GenerationResult"}',
                 b'{"format": 1, "type": "GenerationResult", "data": {"evil": 1}}'):  # fmt: skip
        with pytest.raises(codec.CodecError):
            codec.decode_result(blob)
    with pytest.raises(codec.CodecError):
        codec.encode_result({"not": "a result"})
    with pytest.raises(codec.CodecError):
        codec.decode_pieces(codec.encode_result(EmbeddingResult("r", [], 0)))

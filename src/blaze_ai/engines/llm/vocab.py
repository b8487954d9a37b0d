"""Each token's exact bytes and its text as OpenAI reports it (logprobs, ``/tokenize``).

Byte-level BPE tokenizers (GPT-2, Llama 3, SmolLM2, Qwen) spell a token's bytes with printable
stand-ins (``Ġ`` for a space); SentencePiece ones write ``▁`` for a space and ``<0xE2>`` for a raw
byte. :class:`Vocabulary` maps a token id back to its bytes for both, and falls back to
``tokenizer.decode`` for anything else. A token that is only part of a UTF-8 character is named
``bytes:\\xe2\\x80`` (OpenAI's spelling); its ``bytes`` are exact either way.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from blaze_ai.engines.requests import TokenLogprob

_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")


@functools.cache
def _byte_decoder() -> dict[str, int]:
    """GPT-2's printable stand-in character -> the byte it spells."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


def _decoder_kind(tokenizer: Any) -> str:
    """``byte-level``, ``metaspace`` (SentencePiece pieces) or ``decode`` (ask the tokenizer)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    name = type(getattr(backend, "decoder", None)).__name__
    if name == "ByteLevel":
        return "byte-level"
    if name == "Metaspace" or (name == "Sequence" and any(p.startswith("▁") for p in tokenizer.get_vocab())):
        return "metaspace"
    return "decode"


class Vocabulary:
    """Token id -> exact bytes and display text, computed once per id."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._kind = _decoder_kind(tokenizer)
        self._special = set(getattr(tokenizer, "all_special_ids", ()) or ())
        self.token_bytes = functools.lru_cache(maxsize=1 << 17)(self._bytes)

    def _bytes(self, token_id: int) -> bytes:
        piece = self._tokenizer.convert_ids_to_tokens(token_id)
        if piece is None:
            return b""
        if token_id in self._special:
            return str(piece).encode()
        if self._kind == "byte-level":
            table = _byte_decoder()
            if all(ch in table for ch in piece):
                return bytes(table[ch] for ch in piece)
        elif self._kind == "metaspace":
            match = _BYTE_TOKEN.fullmatch(piece)
            return bytes([int(match.group(1), 16)]) if match else piece.replace("▁", " ").encode()
        return str(self._tokenizer.decode([token_id])).encode()

    def text(self, token_id: int) -> str:
        """The token's text; ``bytes:\\x..`` when its bytes are not whole UTF-8 characters."""
        raw = self.token_bytes(token_id)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return "bytes:" + "".join(f"\\x{b:02x}" for b in raw)

    def logprob(
        self, token_id: int, logprob: float | None, top: list[TokenLogprob] | None = None
    ) -> TokenLogprob:
        """A :class:`TokenLogprob` for ``token_id``."""
        return TokenLogprob(
            token_id, self.text(token_id), list(self.token_bytes(token_id)), logprob, top or []
        )

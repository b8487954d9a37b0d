"""Incremental detokenisation and stop sequences, one sequence at a time.

:class:`Detokenizer` turns tokens into text as they come without ever
emitting half a UTF-8 character: it decodes a small window of recent tokens
and holds text back while the window ends in the replacement character
``\\ufffd`` (an incomplete byte sequence). :class:`StopMatcher` cuts the text
at the first stop sequence and, while streaming, holds back any tail that
could still be the start of one.
"""

from __future__ import annotations

from typing import Any

_REPLACEMENT = "\ufffd"


class Detokenizer:
    """Turns one sequence's tokens into complete text deltas."""

    __slots__ = ("_ids", "_prefix_offset", "_read_offset", "_tokenizer")

    def __init__(self, tokenizer: Any, prompt_ids: list[int] | None = None) -> None:
        self._tokenizer = tokenizer
        # A few prompt tokens as context: sentencepiece drops a leading space at the start of a decode.
        self._ids: list[int] = list((prompt_ids or [])[-4:])
        self._prefix_offset = 0
        self._read_offset = len(self._ids)

    def _decode(self, ids: list[int]) -> str:
        text: str = self._tokenizer.decode(ids, skip_special_tokens=True)
        return text

    def push(self, token_id: int) -> str:
        """Add one token; return the new complete text (maybe empty)."""
        self._ids.append(token_id)
        prefix = self._decode(self._ids[self._prefix_offset : self._read_offset])
        full = self._decode(self._ids[self._prefix_offset :])
        if len(full) > len(prefix) and not full.endswith(_REPLACEMENT):
            self._prefix_offset = self._read_offset
            self._read_offset = len(self._ids)
            return full[len(prefix) :]
        return ""

    def flush(self) -> str:
        """Return whatever text is still held back (at the end of the sequence)."""
        prefix = self._decode(self._ids[self._prefix_offset : self._read_offset])
        full = self._decode(self._ids[self._prefix_offset :])
        self._prefix_offset = self._read_offset = len(self._ids)
        return full[len(prefix) :] if len(full) > len(prefix) else ""


class StopMatcher:
    """Finds stop sequences in streamed text and holds back possible prefixes."""

    __slots__ = ("_held", "_longest", "_stops")

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._longest = max((len(s) for s in self._stops), default=0)
        self._held = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """Add text; return (text safe to emit, whether a stop sequence was hit)."""
        if not self._stops:
            return text, False
        held = self._held + text
        cut = min((i for i in (held.find(s) for s in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            self._held = ""
            return held[:cut], True
        keep = self._possible_prefix(held)
        self._held = held[len(held) - keep :] if keep else ""
        return held[: len(held) - keep], False

    def _possible_prefix(self, text: str) -> int:
        """Length of the longest tail of ``text`` that begins some stop sequence."""
        for size in range(min(len(text), self._longest - 1), 0, -1):
            tail = text[-size:]
            if any(s.startswith(tail) for s in self._stops):
                return size
        return 0

    def flush(self) -> str:
        """Release the held-back text (the sequence ended without a stop)."""
        held, self._held = self._held, ""
        return held

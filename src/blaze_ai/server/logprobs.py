"""Engine log probabilities in OpenAI's two shapes: chat's ``logprobs.content`` and completions' lists.

Token strings are the tokens' text and ``bytes`` their exact UTF-8 bytes (see
:mod:`blaze_ai.engines.llm.vocab`). A completion's ``text_offset`` is each token's position in
the returned text (prompt first, with ``echo``), counted in characters of the decoded bytes, so a
character split over two tokens is counted once, where it ends.
"""

from __future__ import annotations

from blaze_ai.engines.requests import TokenLogprob
from blaze_ai.server.schemas.chat import ChoiceLogprobs, TopLogprob
from blaze_ai.server.schemas.chat import TokenLogprob as ChatTokenLogprob
from blaze_ai.server.schemas.completions import CompletionLogprobs


def chat_logprobs(tokens: list[TokenLogprob] | None) -> ChoiceLogprobs | None:
    """Chat's ``{"content": [...]}`` with ``top_logprobs`` per token."""
    if tokens is None:
        return None
    return ChoiceLogprobs(
        content=[
            ChatTokenLogprob(
                token=t.token,
                logprob=t.logprob or 0.0,
                bytes=t.bytes,
                top_logprobs=[
                    TopLogprob(token=a.token, logprob=a.logprob or 0.0, bytes=a.bytes) for a in t.top
                ],
            )
            for t in tokens
        ]
    )


class OffsetCounter:
    """Character offsets of consecutive tokens in the text they decode to."""

    def __init__(self, start: int = 0) -> None:
        self._start = start
        self._bytes = bytearray()

    @property
    def position(self) -> int:
        """Characters decoded so far (an incomplete character at the end is not counted yet)."""
        return self._start + len(self._bytes.decode("utf-8", errors="ignore"))

    def add(self, token_bytes: list[int]) -> int:
        """The offset of a token, then move past it."""
        at = self.position
        self._bytes.extend(token_bytes)
        return at


def completion_logprobs(
    tokens: list[TokenLogprob], counter: OffsetCounter, with_top: bool
) -> CompletionLogprobs:
    """Completions' parallel lists; a prompt's first token has no log probability or alternatives."""
    out = CompletionLogprobs(
        tokens=[], token_logprobs=[], top_logprobs=[] if with_top else None, text_offset=[]
    )
    for token in tokens:
        out.tokens.append(token.token)
        out.token_logprobs.append(token.logprob)
        out.text_offset.append(counter.add(token.bytes))
        if out.top_logprobs is not None:
            out.top_logprobs.append(
                None if token.logprob is None else {a.token: a.logprob or 0.0 for a in token.top}
            )
    return out


def merge(first: CompletionLogprobs | None, second: CompletionLogprobs | None) -> CompletionLogprobs | None:
    """The lists of ``first`` followed by those of ``second``."""
    if first is None or second is None:
        return first or second
    tops = None
    if first.top_logprobs is not None and second.top_logprobs is not None:
        tops = first.top_logprobs + second.top_logprobs
    return CompletionLogprobs(
        tokens=first.tokens + second.tokens,
        token_logprobs=first.token_logprobs + second.token_logprobs,
        top_logprobs=tops,
        text_offset=first.text_offset + second.text_offset,
    )

"""Coalescing: a reader that fell behind a stream takes each choice's queued deltas as one.

At GPU rates a step ends every few milliseconds, and what a stream costs the event loop is per
piece handed along (a wake-up, the generator layers, an SSE event, a socket write), not per token.
So wherever pieces queue up for one reader (the engine's per-request stream, the gateway's pump),
the reader merges them with :func:`coalesce` and pays once for all of them.

A merged delta is the concatenation of its parts: text, token ids and log probabilities joined in
order; the last part's finish reason and (cumulative) token counts; the first part's echoed prompt.
Deltas of different choices, or of different sources, are never merged. A choice's deltas stay in
order, and each merged delta takes the place of its first part.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

from blaze_ai.engines.requests import StreamDelta

K = TypeVar("K", bound=Hashable)


def coalesce(pieces: Sequence[tuple[K, StreamDelta]]) -> list[tuple[K, StreamDelta]]:
    """Merge the consecutive deltas of each ``(source, choice index)``; see the module docstring."""
    if len(pieces) < 2:
        return list(pieces)
    runs: list[tuple[K, list[StreamDelta]]] = []
    open_runs: dict[tuple[K, int], list[StreamDelta]] = {}
    for source, delta in pieces:
        run = open_runs.get((source, delta.index))
        if run is not None and _follows(run[-1], delta):
            run.append(delta)
        else:
            run = open_runs[(source, delta.index)] = [delta]
            runs.append((source, run))
    if len(runs) == len(pieces):
        return list(pieces)
    return [(source, merge(run)) for source, run in runs]


def merge(parts: Sequence[StreamDelta]) -> StreamDelta:
    """One delta equal to ``parts`` (consecutive deltas of one choice) in a row."""
    first, last = parts[0], parts[-1]
    if len(parts) == 1:
        return first
    logprobs = None
    if first.logprobs is not None:
        logprobs = [entry for part in parts for entry in part.logprobs or ()]
    return StreamDelta(
        index=first.index,
        text="".join(part.text for part in parts),
        token_ids=[token for part in parts for token in part.token_ids],
        finish_reason=last.finish_reason,
        prompt_tokens=last.prompt_tokens,
        completion_tokens=last.completion_tokens,
        logprobs=logprobs,
        prompt_text=first.prompt_text,
        prompt_logprobs=first.prompt_logprobs,
    )


def _follows(previous: StreamDelta, delta: StreamDelta) -> bool:
    """Whether ``delta`` may be appended to a run ending in ``previous`` (same choice)."""
    return (
        previous.finish_reason is None  # nothing of a choice comes after its end
        and delta.prompt_text is None  # an echoed prompt only ever starts a choice
        and delta.prompt_logprobs is None
        and (previous.logprobs is None) == (delta.logprobs is None)
    )

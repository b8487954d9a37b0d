"""Coalescing stream deltas: a merged delta is its parts in a row; choices and sources stay apart."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from blaze_ai.engines.deltas import coalesce, merge
from blaze_ai.engines.requests import FinishReason, StreamDelta, TokenLogprob


def logprob(token: int) -> TokenLogprob:
    return TokenLogprob(
        token, f"t{token}", [token % 256], -0.5 * token, [TokenLogprob(token + 1, "x", [120], -9.0)]
    )


def choice_deltas(
    index: int,
    texts: list[str],
    *,
    start: int = 0,
    finish: FinishReason | None = "stop",
    logprobs: bool = False,
) -> list[StreamDelta]:
    """Consecutive one-token deltas of one choice, the last one finishing it (with ``finish``)."""
    out = []
    for i, text in enumerate(texts):
        token = start + i
        reason = finish if i == len(texts) - 1 else None
        lps = [logprob(token)] if logprobs else None
        out.append(StreamDelta(index, text, [token], reason, 7, token + 1, lps))
    return out


def joined(deltas: list[StreamDelta]) -> tuple[str, list[int], list[TokenLogprob] | None]:
    logprobs = None if deltas[0].logprobs is None else [e for d in deltas for e in d.logprobs or ()]
    return "".join(d.text for d in deltas), [t for d in deltas for t in d.token_ids], logprobs


def test_a_merged_delta_is_the_concatenation_of_its_parts() -> None:
    parts = choice_deltas(1, ["Hel", "lo", ", é", "!"], start=3, finish="length", logprobs=True)
    merged = merge(parts)
    assert (merged.text, merged.token_ids, merged.logprobs) == joined(parts)
    assert merged.logprobs == [logprob(3), logprob(4), logprob(5), logprob(6)]
    assert merged.index == 1 and merged.finish_reason == "length"
    assert (merged.prompt_tokens, merged.completion_tokens) == (7, 7)  # the last part's cumulative counts
    assert merged.logprobs is not parts[0].logprobs and parts[0].token_ids == [3]  # the parts are untouched


def test_without_logprobs_a_merged_delta_has_none() -> None:
    merged = merge(choice_deltas(0, ["a", "b"], finish=None))
    assert merged.logprobs is None and merged.finish_reason is None and merged.text == "ab"


def test_one_piece_per_source_and_choice_in_the_order_each_first_came() -> None:
    a0, a1 = choice_deltas(0, ["a", "b", "c"]), choice_deltas(1, ["x", "y"])
    b0 = choice_deltas(0, ["p", "q"])
    pieces = [(0, a0[0]), (0, a1[0]), (1, b0[0]), (0, a0[1]), (0, a1[1]), (1, b0[1]), (0, a0[2])]
    out = coalesce(pieces)
    assert [(source, d.index, d.text, d.finish_reason) for source, d in out] == [
        (0, 0, "abc", "stop"),
        (0, 1, "xy", "stop"),
        (1, 0, "pq", "stop"),
    ]


def test_nothing_to_merge_gives_the_pieces_back() -> None:
    pieces = [(0, d) for d in choice_deltas(0, ["a"]) + choice_deltas(1, ["b"])]
    assert coalesce(pieces) == pieces
    assert coalesce(pieces[:1]) == pieces[:1] and coalesce([]) == []


def test_an_echoed_prompt_starts_a_choice_and_a_finish_ends_it() -> None:
    first, second = choice_deltas(0, ["a", "b"], finish=None)
    first.prompt_text, first.prompt_logprobs = "prompt", [logprob(9)]
    merged = coalesce([(0, first), (0, second)])
    assert [(d.prompt_text, d.prompt_logprobs, d.text) for _, d in merged] == [("prompt", [logprob(9)], "ab")]
    # a choice's next piece never joins one that finished (not a stream the engine makes, but kept apart)
    done, after = choice_deltas(0, ["x"]), choice_deltas(0, ["y"])
    assert [d.text for _, d in coalesce([(0, done[0]), (0, after[0])])] == ["x", "y"]
    # nor does a piece that carries an echoed prompt join the one before it
    echoed = choice_deltas(0, ["z"])[0]
    echoed.prompt_text = "again"
    assert [d.text for _, d in coalesce([(0, second), (0, echoed)])] == ["b", "z"]


CHOICE = st.tuples(st.integers(0, 2), st.integers(0, 2))  # (source, index)
FINISH: list[FinishReason | None] = [None, "stop", "length"]
Case = tuple[list[tuple[int, StreamDelta]], dict[tuple[int, int], list[StreamDelta]]]


@st.composite
def interleaved(draw: st.DrawFn) -> Case:
    """Several choices' deltas (some with logprobs, some finishing), interleaved at random."""
    keys = draw(st.lists(CHOICE, min_size=1, max_size=5, unique=True))
    streams: dict[tuple[int, int], list[StreamDelta]] = {}
    for source, index in keys:
        texts = draw(st.lists(st.text(max_size=3), min_size=1, max_size=6))
        finish = draw(st.sampled_from(FINISH))
        streams[(source, index)] = choice_deltas(index, texts, finish=finish, logprobs=draw(st.booleans()))
    order = draw(st.permutations([key for key, deltas in streams.items() for _ in deltas]))
    cursor = dict.fromkeys(streams, 0)
    pieces = []
    for key in order:
        pieces.append((key[0], streams[key][cursor[key]]))
        cursor[key] += 1
    return pieces, streams


@given(interleaved())
def test_coalescing_keeps_each_choice_whole_and_in_order(case: Case) -> None:
    pieces, streams = case
    out = coalesce(pieces)
    assert len(out) == len(streams)  # one piece per source and choice
    for source, delta in out:
        parts = streams[(source, delta.index)]
        assert (delta.text, delta.token_ids, delta.logprobs) == joined(parts)
        assert delta.finish_reason == parts[-1].finish_reason
        assert delta.completion_tokens == parts[-1].completion_tokens
    firsts = list(dict.fromkeys((source, d.index) for source, d in pieces))
    assert [(source, d.index) for source, d in out] == firsts

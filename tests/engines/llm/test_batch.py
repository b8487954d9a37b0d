"""The running batch's KV cache (in-place slots) and the length-grouped prefill, on the tiny built-in."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from blaze_ai.engines.llm import LoadedModel
from blaze_ai.engines.llm import batch as kv
from blaze_ai.engines.llm.core import EngineCore

from .test_engine import PROMPTS, alone, greedy, make_core, run_until_done, tokens_of


class Reference:
    """Each row's tokens so far, replayed alone (one row, no padding) to get the logits it must have."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model.model

    def logits(self, tokens: list[int]) -> torch.Tensor:
        logits, _, _ = kv.prefill(self.model, [tokens], [1])
        return logits[0]


# One step of a random schedule: ("join", prompt length, n copies), ("decode",) or ("drop", row mask bits).
steps = st.lists(
    st.one_of(
        st.tuples(st.just("join"), st.integers(1, 40), st.integers(1, 2)),
        st.tuples(st.just("decode")),
        st.tuples(st.just("drop"), st.integers(0, 2**12 - 1)),
    ),
    min_size=1,
    max_size=14,
)


@settings(max_examples=40, deadline=None)
@given(schedule=steps, seed=st.integers(0, 2**16))
def test_every_row_computes_what_it_would_alone(
    tiny_model: LoadedModel, schedule: list[tuple[object, ...]], seed: int
) -> None:
    """Joins of other widths, decode steps, drops (holes filled from the end) and regrowth keep rows exact."""
    reference = Reference(tiny_model)
    gen = torch.Generator().manual_seed(seed)
    vocab = int(tiny_model.model.config.vocab_size)
    rows: list[list[int]] = []  # each row's tokens, in batch order
    batch: kv.KVBatch | None = None
    with torch.inference_mode():
        for step in [("join", 7, 2), ("join", 3, 1), *schedule]:
            if step[0] == "join":
                prompt = torch.randint(3, vocab, (step[1],), generator=gen).tolist()
                logits, new, _ = kv.prefill(tiny_model.model, [prompt], [step[2]])
                batch = new if batch is None else kv.merge(batch, new)
                rows += [list(prompt) for _ in range(step[2])]
            elif batch is not None and step[0] == "decode":
                tokens = torch.randint(3, vocab, (len(rows),), generator=gen).tolist()
                logits = kv.decode(tiny_model.model, batch, tokens)
                for row, token in zip(rows, tokens, strict=True):
                    row.append(token)
            elif batch is not None and step[0] == "drop":
                finished = [i for i in range(len(rows)) if step[1] >> i & 1][: len(rows) - 1]
                if not finished:
                    continue
                rows = [rows[i] for i in batch.drop(finished)]
                continue
            else:
                continue
            assert batch.rows == len(rows) and batch.lengths.tolist() == [len(r) for r in rows]
            checked = rows if step[0] == "decode" else rows[-step[2] :]  # a join returns its own rows' logits
            for row, got in zip(checked, logits, strict=True):
                torch.testing.assert_close(got, reference.logits(row), atol=2e-4, rtol=1e-4)


def test_a_dropped_row_is_replaced_by_the_last_row_and_columns_are_trimmed(tiny_model: LoadedModel) -> None:
    with torch.inference_mode():
        _, batch, _ = kv.prefill(tiny_model.model, [[5] * 30, [6] * 4, [7] * 6, [8] * 5], [1, 1, 1, 1])
        assert batch.width == 30
        order = batch.drop([0])  # the only long row leaves: the last row takes its place
        assert order == [3, 1, 2]
        assert batch.lengths.tolist() == [5, 4, 6] and batch.width == 6
        assert all(layer.keys.shape[0] == 3 and layer.keys.shape[2] == 6 for layer in batch.cache.layers)


def test_the_cache_grows_in_place_and_reallocates_only_when_full(tiny_model: LoadedModel) -> None:
    with torch.inference_mode():
        _, batch, _ = kv.prefill(tiny_model.model, [[5] * 8], [1])
        kv.decode(tiny_model.model, batch, [9])  # the prefill's own tensors are full: room is made here
        layer = batch.cache.layers[0]
        storage = layer.k.data_ptr()
        capacity = layer.k.shape[2]
        for _ in range(capacity - 9):
            kv.decode(tiny_model.model, batch, [9])
        assert layer.k.data_ptr() == storage  # every step wrote one column in place
        kv.decode(tiny_model.model, batch, [9])
        assert layer.k.data_ptr() != storage and layer.k.shape[2] > capacity
        assert layer.keys.shape[2] == capacity + 1 == batch.width


def test_row_capacity_doubles_but_not_past_the_batch_limit(tiny_model: LoadedModel) -> None:
    with torch.inference_mode():
        _, batch, _ = kv.prefill(tiny_model.model, [[5] * 4] * 3, [1, 1, 1], max_rows=5)
        for _ in range(2):
            _, new, _ = kv.prefill(tiny_model.model, [[6] * 3], [1], max_rows=5)
            batch = kv.merge(batch, new)
        assert batch.rows == 5 and {layer.k.shape[0] for layer in batch.cache.layers} == {5}  # not 6


# -- prefill groups ------------------------------------------------------------------------------


def _cost(groups: list[list[int]], lengths: list[int], overhead: float) -> float:
    return sum(len(g) * max(lengths[i] for i in g) + overhead for g in groups)


@settings(max_examples=200, deadline=None)
@given(lengths=st.lists(st.integers(1, 60), min_size=1, max_size=7), overhead=st.floats(0, 200))
def test_prefill_groups_cover_each_prompt_once_at_the_least_cost(lengths: list[int], overhead: float) -> None:
    groups = kv.prefill_groups(lengths, overhead)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    best = min(  # every split of the sorted prompts into contiguous runs
        _cost([order[a:b] for a, b in itertools.pairwise((0, *cuts, len(order)))], lengths, overhead)
        for k in range(len(order))
        for cuts in itertools.combinations(range(1, len(order)), k)
    )
    assert _cost(groups, lengths, overhead) == pytest.approx(best)


def test_prefill_groups_keep_one_batch_when_a_pass_costs_more_than_the_padding() -> None:
    assert kv.prefill_groups([3, 40, 5, 38], overhead_tokens=1000) == [[0, 2, 3, 1]]
    assert kv.prefill_groups([3, 40, 5, 38], overhead_tokens=10) == [[0, 2], [3, 1]]


def test_the_measured_overhead_is_positive(tiny_model: LoadedModel) -> None:
    with torch.inference_mode():
        assert kv.forward_overhead_tokens(tiny_model.model) > 0


@pytest.mark.parametrize("overhead", [0.0, 1e9], ids=["one-group-per-length", "one-batch"])
def test_grouped_prefill_gives_the_same_tokens_as_alone(tiny_model: LoadedModel, overhead: float) -> None:
    lengths = [12, 5, 20, 9, 16, 3]
    expected = [alone(tiny_model, p, n) for p, n in zip(PROMPTS, lengths, strict=True)]
    core: EngineCore = make_core(tiny_model)
    core.prefill_overhead_tokens = overhead
    for i, (prompt, n) in enumerate(zip(PROMPTS, lengths, strict=True)):
        core.add_request(greedy(prompt, n, request_id=f"r{i}"))
    outputs = run_until_done(core)
    assert [tokens_of(outputs, f"r{i}") for i in range(len(PROMPTS))] == expected
    distinct_lengths = len({len(core.tokenize(greedy(p))) for p in PROMPTS})
    assert core.stats.prefill_passes == (distinct_lengths if overhead == 0.0 else 1)

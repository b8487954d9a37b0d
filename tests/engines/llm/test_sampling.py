"""Per-row sampling, incremental detokenisation and stop sequences."""

from __future__ import annotations

import pytest
import torch
from transformers import ByT5Tokenizer

from blaze_ai.engines.llm import LoadedModel
from blaze_ai.engines.llm.detokenizer import Detokenizer, StopMatcher
from blaze_ai.engines.llm.sampling import RowSampling, make_generator, sample


def random_logits(rows: int, vocab: int = 50, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(rows, vocab, generator=gen) * 3


def test_greedy_rows_take_the_argmax() -> None:
    logits = random_logits(4)
    rows = [RowSampling(), RowSampling(temperature=1.5, top_k=1), RowSampling(), RowSampling()]
    assert sample(logits, rows).tokens == logits.argmax(-1).tolist()


def test_same_seed_same_tokens_whatever_the_batch_mates() -> None:
    logits = random_logits(1, seed=3)
    gen_alone = make_generator(7)
    seq_alone = [sample(logits, [RowSampling(1.0, generator=gen_alone)]).tokens[0] for _ in range(20)]
    gen_batched = make_generator(7)
    seq_batched = []
    for step in range(20):
        mates = random_logits(3, seed=100 + step)
        batch = torch.cat([mates[:1], logits, mates[1:]])
        rows = [RowSampling(0.9), RowSampling(1.0, generator=gen_batched), RowSampling(0.5, top_p=0.5)]
        seq_batched.append(sample(batch, rows).tokens[1])
    assert seq_alone == seq_batched
    assert len(set(seq_alone)) > 1  # it really samples


def test_top_k_keeps_only_the_k_most_likely() -> None:
    logits = random_logits(1, seed=5)
    top3 = set(logits[0].topk(3).indices.tolist())
    gen = make_generator(1)
    seen = {sample(logits, [RowSampling(2.0, top_k=3, generator=gen)]).tokens[0] for _ in range(200)}
    assert seen == top3


def test_top_p_keeps_the_smallest_set_reaching_p() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    gen = make_generator(2)
    seen = {sample(logits, [RowSampling(1.0, top_p=0.7, generator=gen)]).tokens[0] for _ in range(300)}
    assert seen == {0, 1}
    seen = {sample(logits, [RowSampling(1.0, top_p=0.4, generator=gen)]).tokens[0] for _ in range(50)}
    assert seen == {0}


def test_logprobs_are_those_of_the_chosen_token() -> None:
    logits = random_logits(2)
    out = sample(logits, [RowSampling(logprobs=0), RowSampling()])
    expected = torch.log_softmax(logits, -1)[0, out.tokens[0]].item()
    assert out.logprobs is not None
    assert out.logprobs[0] == pytest.approx(expected)
    assert sample(logits, [RowSampling(), RowSampling()]).logprobs is None


def stream_text(tokenizer: object, ids: list[int]) -> list[str]:
    detok = Detokenizer(tokenizer)
    pieces = [detok.push(i) for i in ids]
    return [*pieces, detok.flush()]


def test_detokenizer_never_emits_half_a_character_bytes() -> None:
    tokenizer = ByT5Tokenizer()
    text = "héllo wörld € 🙂!"
    pieces = stream_text(tokenizer, tokenizer(text, add_special_tokens=False)["input_ids"])
    assert "".join(pieces) == text
    assert "" in pieces  # the first bytes of multi-byte characters were held back
    assert all("\ufffd" not in p for p in pieces)


def test_detokenizer_with_a_byte_level_bpe(tiny_model: LoadedModel) -> None:
    tokenizer = tiny_model.tokenizer
    text = "Zürich, naïve café — 東京 🙂 done"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    pieces = stream_text(tokenizer, ids)
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)
    assert len([p for p in pieces if p]) > 3  # text came incrementally


def test_stop_matcher_holds_back_possible_prefixes() -> None:
    stops = StopMatcher(("END", "\n\n"))
    assert stops.feed("hello E") == ("hello ", False)
    assert stops.feed("N") == ("", False)
    assert stops.feed("ormous") == ("ENormous", False)
    assert stops.feed(" fin\n") == (" fin", False)
    assert stops.feed("\nmore") == ("", True)


def test_stop_inside_one_piece_cuts_there() -> None:
    stops = StopMatcher(("stop",))
    assert stops.feed("abc stop def") == ("abc ", True)


def test_stop_matcher_flush_releases_held_text() -> None:
    stops = StopMatcher(("###",))
    assert stops.feed("a #") == ("a ", False)
    assert stops.flush() == "#"
    assert StopMatcher(()).feed("anything") == ("anything", False)

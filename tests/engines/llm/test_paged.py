"""The paged static-shape forward: exact against Hugging Face's forward, pool bookkeeping, graph buckets."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from blaze_ai.engines.llm import LLMConfig, LoadedModel
from blaze_ai.engines.llm import batch as kv
from blaze_ai.engines.llm.forward import Shape, unsupported_reason
from blaze_ai.engines.llm.graphs import block_buckets, row_buckets
from blaze_ai.engines.llm.paged import SCRATCH_BLOCK, PagedCache
from blaze_ai.engines.llm.runner import HFRunner, PagedRunner, make_runner
from blaze_ai.errors import ConfigError, OverloadedError

from .test_engine import PROMPTS, alone, greedy, make_core, run_until_done, tokens_of


def reference(model: LoadedModel, tokens: list[int]) -> torch.Tensor:
    """Next-token logits of ``tokens`` run alone through Hugging Face's forward."""
    logits, _, _ = kv.prefill(model.model, [tokens], [1])
    return logits[0]


# One step of a random schedule: ("join", prompt length, n copies), ("decode",) or ("drop", row mask bits).
steps = st.lists(
    st.one_of(
        st.tuples(st.just("join"), st.integers(1, 40), st.integers(1, 3)),
        st.tuples(st.just("decode")),
        st.tuples(st.just("drop"), st.integers(0, 2**12 - 1)),
    ),
    min_size=1,
    max_size=14,
)


@settings(max_examples=30, deadline=None)
@given(schedule=steps, seed=st.integers(0, 2**16))
def test_every_row_computes_what_it_would_alone(
    tiny_model: LoadedModel, schedule: list[tuple[object, ...]], seed: int
) -> None:
    """Joins, decode steps across block borders and drops give each row its own logits."""
    runner = PagedRunner(tiny_model, max_rows=64, max_tokens=64 * 80, max_context=256)
    gen = torch.Generator().manual_seed(seed)
    vocab = int(tiny_model.model.config.vocab_size)
    rows: list[list[int]] = []
    with torch.inference_mode():
        for step in [("join", 7, 2), ("join", 17, 1), *schedule]:
            if step[0] == "join" and len(rows) + int(step[2]) <= 64:  # type: ignore[call-overload]
                prompt = torch.randint(3, vocab, (int(step[1]),), generator=gen).tolist()  # type: ignore[call-overload]
                logits, _ = runner.prefill([prompt], [int(step[2])], [80])  # type: ignore[call-overload]
                rows += [list(prompt) for _ in range(int(step[2]))]  # type: ignore[call-overload]
            elif rows and step[0] == "decode":
                tokens = torch.randint(3, vocab, (len(rows),), generator=gen).tolist()
                logits = runner.decode(tokens)
                rows = [[*r, t] for r, t in zip(rows, tokens, strict=True)]
            elif rows and step[0] == "drop":
                finished = [i for i in range(len(rows)) if int(step[1]) >> i & 1]  # type: ignore[call-overload]
                rows = [rows[i] for i in runner.drop(finished)]
                continue
            else:
                continue
            new = rows[-len(logits) :]
            for row, row_logits in zip(new, logits, strict=True):
                torch.testing.assert_close(row_logits, reference(tiny_model, row), atol=2e-4, rtol=1e-4)


def test_greedy_tokens_match_the_hf_forward_exactly(tiny_model: LoadedModel) -> None:
    """Float32 greedy text through the engine core is the same token for token on both paths."""
    lengths = [12, 5, 20, 9, 16, 3]
    texts = {}
    for path in ("hf", "paged"):
        core = make_core(tiny_model, decode_path=path)
        assert core.runner.name == path
        for i, (prompt, n) in enumerate(zip(PROMPTS, lengths, strict=True)):
            core.add_request(greedy(prompt, n, request_id=f"r{i}"))
        outputs = run_until_done(core)
        texts[path] = [tokens_of(outputs, f"r{i}") for i in range(len(PROMPTS))]
    assert texts["paged"] == texts["hf"]
    assert texts["paged"] == [alone(tiny_model, p, n) for p, n in zip(PROMPTS, lengths, strict=True)]


def test_prompt_logits_are_those_of_each_position(tiny_model: LoadedModel) -> None:
    """keep_all gives each prompt its own positions' logits, as the HF path does (echo and scoring)."""
    prompts = [[5, 9, 11, 40, 7], [8, 3], [30, 31, 32, 33, 34, 35, 36]]
    with torch.inference_mode():
        _, paged = PagedRunner(tiny_model, 8, 512, 128).prefill(prompts, [1, 1, 1], [16] * 3, keep_all=True)
        _, hf = HFRunner(tiny_model, 8).prefill(prompts, [1, 1, 1], [16] * 3, keep_all=True)
    assert paged is not None and hf is not None
    for mine, theirs, prompt in zip(paged, hf, prompts, strict=True):
        assert mine.shape[0] == len(prompt)
        torch.testing.assert_close(mine, theirs, atol=2e-4, rtol=1e-4)


def test_pool_hands_out_and_takes_back_blocks() -> None:
    cache = PagedCache(
        Shape(layers=2, heads=4, kv_heads=2, head_dim=8),
        tokens=64,
        max_rows=4,
        max_context=64,
        block_size=16,
        device=torch.device("cpu"),
        dtype=torch.float32,
    )
    total = cache.free_blocks
    assert total == 4 + 4  # the budget's blocks plus one spare per row (scratch block apart)
    first, second = cache.add_row(20), cache.add_row(16)
    assert (first, second) == (0, 1)
    assert cache.free_blocks == total - 3
    assert SCRATCH_BLOCK not in cache.tables[:2, :1].flatten().tolist()
    assert cache.slots(0, 15, 2).tolist() == [
        int(cache.tables[0, 0]) * 16 + 15,
        int(cache.tables[0, 1]) * 16,
    ]
    held = cache.tables[1, 0].item()
    assert cache.drop([0]) == [1]
    assert cache.tables[0, 0].item() == held
    assert cache.free_blocks == total - 1
    with pytest.raises(OverloadedError):
        cache.add_row(16 * 9)
    cache.clear()
    assert cache.free_blocks == total and cache.rows == 0


def test_buckets_cover_every_batch_and_width() -> None:
    assert row_buckets(1) == [1]
    assert row_buckets(8) == [1, 2, 4, 8]
    assert row_buckets(64) == [1, 2, 4, 8, 16, 32, 48, 64]
    assert row_buckets(40) == [1, 2, 4, 8, 16, 32, 40]
    assert block_buckets(256, 16) == [16, 32, 64, 128, 256]
    assert block_buckets(100, 16) == [16, 32, 64, 100]
    assert block_buckets(4, 16) == [4]


def test_auto_keeps_the_hf_forward_for_other_architectures(tiny_model: LoadedModel) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=64, n_positions=32))
    other = LoadedModel(gpt2, tiny_model.tokenizer, torch.device("cpu"), torch.float32, 32, (0,), "gpt2")
    assert unsupported_reason(gpt2, 32) is not None
    config = LLMConfig(source="builtin:tiny-llama", device="cpu")
    assert make_runner(other, config, 32).name == "hf"
    with pytest.raises(ConfigError, match="decode_path=paged"):
        make_runner(other, LLMConfig(source="builtin:tiny-llama", device="cpu", decode_path="paged"), 32)
    assert make_runner(tiny_model, config, 128).name == "paged"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
def test_cuda_graph_replay_matches_eager_decode(tiny_model: LoadedModel) -> None:
    """On CUDA, every bucket replays what the eager paged step computes (benchmarks/gpu.sh runs this)."""
    loaded = LoadedModel(
        tiny_model.model.to("cuda"),
        tiny_model.tokenizer,
        torch.device("cuda"),
        torch.float32,
        512,
        (0,),
        "tiny",
    )
    try:
        config = LLMConfig(source="builtin:tiny-llama", device="cuda", max_batch_size=20)
        graphed, eager = make_runner(loaded, config, 512), make_runner(loaded, config, 512)
        assert isinstance(graphed, PagedRunner) and graphed.graphs is not None
        with torch.inference_mode():
            report = graphed.warm_up()
            assert report["cuda_graphs"] == len(row_buckets(20)) * len(block_buckets(32, 16))
            eager.graphs = None  # type: ignore[union-attr]
            for runner in (graphed, eager):
                runner.prefill([[5, 6, 7]] * 3 + [[9] * 40], [1, 1, 2, 1], [300] * 4)
            tokens = [11, 12, 13, 14, 15]
            for _ in range(260):  # across the 256-column bucket border
                mine, theirs = graphed.decode(tokens), eager.decode(tokens)
                torch.testing.assert_close(mine, theirs, atol=1e-3, rtol=1e-3)
                tokens = mine.argmax(-1).tolist()
    finally:
        tiny_model.model.to("cpu")

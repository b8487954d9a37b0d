"""The compiled paged decode step (``compile: true``) computes what the eager step does (slow: compiles).

One compile covers every batch size and width (the inputs are marked dynamic and padded to at least
2 rows and 2 blocks), so serving never stops to compile again: the test decodes lone rows, full
batches and rows crossing block borders after warm-up and checks that no new compile happened.
"""

from __future__ import annotations

import os

import pytest
import torch

from blaze_ai.engines.llm import LLMConfig, load_model
from blaze_ai.engines.llm.runner import PagedRunner, make_runner

os.environ.setdefault("HF_HUB_OFFLINE", "1")

pytestmark = [
    pytest.mark.slow,
    # inductor imports torch.jit helpers that warn about their own deprecation (torch 2.13)
    pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
]


def test_compiled_step_matches_eager_for_every_shape() -> None:
    config = LLMConfig(source="builtin:tiny-llama", device="cpu", compile=True, max_batch_size=12)
    loaded = load_model(config)
    compiled, eager = make_runner(loaded, config, 256), make_runner(loaded, config, 256)
    assert isinstance(compiled, PagedRunner) and isinstance(eager, PagedRunner)
    eager._compiled = None
    with torch.inference_mode():
        report = compiled.warm_up()
        assert report["compile_s"] > 0
        torch._dynamo.utils.counters.clear()
        for runner in (compiled, eager):
            runner.prefill([[5, 6, 7]], [1], [120])  # a lone row first
        tokens = [9]
        for step in range(40):
            if step == 5:  # then a batch of 11 rows, one crossing block borders as it grows
                for runner in (compiled, eager):
                    runner.prefill([[8] * 30, [4, 4]], [1, 9], [120, 120])
                tokens += [10] * 10
            mine, theirs = compiled.decode(tokens), eager.decode(tokens)
            torch.testing.assert_close(mine, theirs, atol=1e-4, rtol=1e-4)
            tokens = theirs.argmax(-1).tolist()
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 0  # no compile after warm-up

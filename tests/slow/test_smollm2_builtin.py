"""The SmolLM2-135M-Instruct built-in answers a factual question (real weights, CPU)."""

from __future__ import annotations

import os

import pytest
import torch

from blaze_ai.engines.llm import LLMConfig, load_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.mark.slow
def test_smollm2_builtin_knows_the_capital_of_france() -> None:
    loaded = load_model(LLMConfig(source="builtin:smollm2-135m", device="cpu"))
    assert loaded.name == "smollm2-135m" and loaded.max_context == 8192
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = loaded.tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = loaded.model.generate(
            **inputs, max_new_tokens=16, do_sample=False, eos_token_id=list(loaded.eos_token_ids)
        )
    answer = loaded.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer, answer

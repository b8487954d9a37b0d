"""The LLM engine on the real SmolLM2-135M-Instruct built-in (slow: loads ~270 MB of weights)."""

from __future__ import annotations

import os

import pytest

from blaze_ai.engines.llm.config import LLMConfig
from blaze_ai.engines.llm.engine import LLMEngine
from blaze_ai.engines.requests import GenerationRequest, SamplingParams

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.mark.slow
async def test_smollm2_knows_the_capital_of_france() -> None:
    engine = LLMEngine(LLMConfig(source="builtin:smollm2-135m", device="cpu", max_batch_size=4))
    await engine.start()
    try:
        messages = [{"role": "user", "content": "What is the capital of France?"}]
        request = GenerationRequest(messages=messages, params=SamplingParams(max_tokens=24, temperature=0))
        result = await engine.execute(request)
    finally:
        await engine.stop()
    assert "Paris" in result.choices[0].text

"""The default LLM dtype on CPU: the fastest whose greedy text is float32's (slow: loads SmolLM2 twice).

On a CPU with native bfloat16 (AMX or AVX512-BF16) bfloat16 decodes about 3x faster than float32 at
64 rows (docs/models.md#the-default-dtype), so it would be the default if its greedy text matched float32's
on the built-in prompts. Measured on a 2-core Xeon with AMX it changes 3 of these 8 texts within 32
tokens, so ``dtype: auto`` resolves to float32 there. The test checks the rule both ways: it fails
if auto picks a dtype that changes the text, and if bfloat16 comes to match and auto does not pick it.
"""

from __future__ import annotations

import asyncio
import os

import pytest
import torch

from blaze_ai.engines.llm.config import LLMConfig
from blaze_ai.engines.llm.engine import LLMEngine
from blaze_ai.engines.llm.loading import resolve_dtype
from blaze_ai.engines.requests import GenerationRequest, SamplingParams
from blaze_ai.loadgen import prompts

os.environ.setdefault("HF_HUB_OFFLINE", "1")

#: The built-in prompts: the first 8 that ``blaze bench`` sends (loadgen seed 0), 32 greedy tokens each.
PROMPTS = prompts(8, seed=0)
TOKENS = 32


async def greedy_texts(config: LLMConfig) -> list[str]:
    """Each prompt's greedy continuation, all decoded together as the server would."""
    engine = LLMEngine(config)
    await engine.start()
    try:
        params = SamplingParams(max_tokens=TOKENS, temperature=0)
        results = await asyncio.gather(
            *(engine.execute(GenerationRequest(prompt=p, params=params)) for p in PROMPTS)
        )
    finally:
        await engine.stop()
    return [r.choices[0].text for r in results]


def native_bfloat16() -> bool:
    """True when this CPU computes bfloat16 in hardware (where bfloat16 is the faster dtype)."""
    capabilities = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    return bool(capabilities.get("amx_bf16") or capabilities.get("avx512_bf16"))


@pytest.mark.slow
async def test_the_default_dtype_is_the_fastest_that_keeps_float32_greedy_text() -> None:
    float32 = await greedy_texts(LLMConfig(device="cpu", max_batch_size=8, dtype="float32"))
    bfloat16 = await greedy_texts(LLMConfig(device="cpu", max_batch_size=8, dtype="bfloat16"))
    default = LLMConfig(device="cpu")
    chosen = resolve_dtype(default.dtype, torch.device("cpu"), default.quantization)
    changed = [i for i, (a, b) in enumerate(zip(float32, bfloat16, strict=True)) if a != b]
    faster_and_same = native_bfloat16() and not changed
    assert chosen == (torch.bfloat16 if faster_and_same else torch.float32), f"bfloat16 changed {changed}"
    assert {torch.float32: float32, torch.bfloat16: bfloat16}[chosen] == float32

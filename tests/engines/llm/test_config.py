"""LLMConfig validation: defaults work, every bad value fails with a message that says the fix."""

from __future__ import annotations

import dataclasses

import pytest

from blaze_ai.engines.llm import LLMConfig


def test_defaults_are_valid_and_cpu_friendly() -> None:
    config = LLMConfig()
    assert config.source == "builtin:smollm2-135m"
    # dtype auto: float32 on CPU, bfloat16 on a GPU (resolve_dtype, tests/engines/llm/test_loading.py)
    assert (config.dtype, config.quantization, config.device) == ("auto", "none", "auto")
    assert config.max_context_length is None


def test_built_from_plain_mapping_like_a_yaml_entry() -> None:
    entry = {"source": "builtin:tiny-llama", "dtype": "bfloat16", "device": "cpu", "max_batch_size": 8}
    config = LLMConfig(**entry)
    assert config.dtype == "bfloat16" and config.max_batch_size == 8


def test_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        LLMConfig().dtype = "bfloat16"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "fix"),
    [
        ({"source": " "}, "builtin:smollm2-135m"),
        ({"source": "builtin:gpt-5"}, "builtin:tiny-llama, builtin:smollm2-135m"),
        ({"dtype": "fp8"}, "float32, bfloat16, float16, auto"),
        ({"quantization": "gptq"}, "none, int8-dynamic, bnb-8bit, bnb-4bit"),
        ({"device": "tpu"}, "auto, cpu, cuda or cuda:N"),
        ({"device": "cuda:x"}, "auto, cpu, cuda or cuda:N"),
        ({"device": "cpu", "dtype": "float16"}, "bfloat16 or float32"),
        ({"device": "cpu", "quantization": "bnb-4bit"}, "int8-dynamic or none"),
        ({"device": "cpu", "quantization": "bnb-8bit"}, "int8-dynamic or none"),
        ({"device": "cuda", "quantization": "int8-dynamic"}, "set device=cpu"),
        ({"dtype": "bfloat16", "quantization": "int8-dynamic"}, "set dtype=float32"),
        ({"amp": True, "quantization": "int8-dynamic"}, "set amp=false"),
        ({"max_batch_size": 0}, "integer >= 1"),
        ({"max_batch_size": True}, "integer >= 1"),
        ({"max_tokens_in_flight": -5}, "integer >= 1"),
        ({"max_queued_requests": 2.5}, "integer >= 1"),
        ({"max_context_length": 1}, "or None"),
        ({"max_batch_size": 64, "max_tokens_in_flight": 32}, "raise it or lower the batch size"),
    ],
)
def test_invalid_values_say_how_to_fix(kwargs: dict[str, object], fix: str) -> None:
    with pytest.raises(ValueError, match="LLMConfig") as info:
        LLMConfig(**kwargs)  # type: ignore[arg-type]
    assert fix in str(info.value)


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1"])
def test_devices_accepted(device: str) -> None:
    assert LLMConfig(device=device).device == device


def test_gpu_options_accepted_when_device_is_not_pinned_to_cpu() -> None:
    # Whether a GPU exists is only known at load time (see test_loading).
    config = LLMConfig(device="auto", dtype="float16", quantization="bnb-4bit")
    assert config.quantization == "bnb-4bit"

"""load_model and the tiny built-in: determinism, sources, dtype, quantization, refusals."""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path

import pytest
import torch
from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

from blaze_ai.engines.llm import LLMConfig, LoadedModel, builtins, load_model
from blaze_ai.engines.llm.loading import check_quantization, is_checkpointing, resolve_dtype
from blaze_ai.errors import ConfigError

CPU_ONLY = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without GPU")
MESSAGES = [{"role": "user", "content": "Say hi"}]


def _tiny(**kwargs: object) -> LoadedModel:
    return load_model(LLMConfig(source="builtin:tiny-llama", device="cpu", **kwargs))  # type: ignore[arg-type]


def _logits(loaded: LoadedModel, text: str = "def main():") -> torch.Tensor:
    ids = loaded.tokenizer(text, return_tensors="pt").input_ids.to(loaded.device)
    with torch.no_grad():
        return loaded.model(ids).logits.float()


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# ------------------------------------------------------------------ the tiny built-in


def test_tiny_builds_are_identical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folders = []
    for name in ("a", "b"):
        monkeypatch.setenv("BLAZE_CACHE_DIR", str(tmp_path / name))
        folders.append(builtins.materialize("builtin:tiny-llama"))
    first, second = (_files(f) for f in folders)
    assert {"model.safetensors", "tokenizer.json", "config.json"} <= first.keys()
    assert first == second


def test_concurrent_first_builds_share_one_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLAZE_CACHE_DIR", str(tmp_path))
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(builtins.materialize("builtin:tiny-llama")))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 3 and len(set(results)) == 1
    leftovers = [p.name for p in results[0].parent.iterdir() if ".tmp-" in p.name]
    assert leftovers == []
    assert (results[0] / "model.safetensors").is_file()


def test_leftovers_of_a_killed_build_are_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLAZE_CACHE_DIR", str(tmp_path))
    folder = builtins.builtin_folder("builtin:tiny-llama")
    stale = folder.parent / f".{folder.name}.tmp-dead"
    stale.mkdir(parents=True)
    builtins.materialize("builtin:tiny-llama")
    assert not stale.exists()


def test_losing_the_rename_race_keeps_the_winner(tmp_path: Path) -> None:
    target, loser = tmp_path / "model", tmp_path / "tmp"
    target.mkdir()
    (target / "winner").write_text("1")
    loser.mkdir()
    (loser / "loser").write_text("2")
    builtins._publish(loser, target)
    assert [p.name for p in target.iterdir()] == ["winner"]


def test_build_reports_progress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLAZE_CACHE_DIR", str(tmp_path))
    seen: list[tuple[str, float]] = []
    load_model(LLMConfig(source="builtin:tiny-llama", device="cpu"), lambda s, f: seen.append((s, f)))
    fractions = [fraction for _, fraction in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert {"train tokenizer", "load weights", "ready"} <= {stage for stage, _ in seen}


def test_tiny_model_is_ready_to_serve(tiny_model: LoadedModel) -> None:
    assert tiny_model.name == "tiny-llama"
    assert not tiny_model.model.training
    assert tiny_model.device == torch.device("cpu")
    assert tiny_model.model.dtype == tiny_model.dtype == torch.float32
    assert tiny_model.max_context == 2048
    im_end = tiny_model.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tiny_model.eos_token_ids == (im_end,)
    assert sum(p.numel() for p in tiny_model.model.parameters()) < 2_000_000


def test_tiny_tokenizer_round_trips_text_and_uses_chatml(tiny_model: LoadedModel) -> None:
    tokenizer = tiny_model.tokenizer
    text = "def f(x):\n    return x  # héllo wörld ✓ 日本"
    assert tokenizer.decode(tokenizer(text).input_ids) == text
    assert len(tokenizer(text).input_ids) < len(text.encode())  # BPE merges, not bytes
    prompt = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    assert prompt == "<|im_start|>user\nSay hi<|im_end|>\n<|im_start|>assistant\n"


def test_memory_bytes_counts_parameters_and_buffers(tiny_model: LoadedModel) -> None:
    params = {id(p): p for p in tiny_model.model.parameters()}  # tied weights count once
    expected = sum(p.numel() * 4 for p in params.values())
    expected += sum(b.numel() * b.element_size() for b in tiny_model.model.buffers())
    assert tiny_model.memory_bytes() == expected


def test_kv_cache_bytes_follow_the_model_config(tiny_model: LoadedModel) -> None:
    cfg = tiny_model.model.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    per_token = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * head_dim * 4  # keys and values, fp32
    assert tiny_model.kv_cache_bytes(1000) == 1000 * per_token
    assert tiny_model.kv_cache_bytes(0) == 0


# ------------------------------------------------------------------ sources


def test_local_folder_round_trip(tiny_model: LoadedModel, tmp_path: Path) -> None:
    tiny_model.model.save_pretrained(tmp_path)
    tiny_model.tokenizer.save_pretrained(tmp_path)
    again = load_model(LLMConfig(source=str(tmp_path), device="cpu"))
    assert again.name == tmp_path.name
    assert again.eos_token_ids == tiny_model.eos_token_ids
    assert torch.equal(_logits(again), _logits(tiny_model))


def test_folder_without_chat_template_gets_chatml(tiny_model: LoadedModel, tmp_path: Path) -> None:
    tiny_model.model.save_pretrained(tmp_path)
    tiny_model.tokenizer.save_pretrained(tmp_path)
    (tmp_path / "chat_template.jinja").unlink()
    again = load_model(LLMConfig(source=str(tmp_path), device="cpu"))
    assert again.tokenizer.chat_template == builtins.CHATML_TEMPLATE


def test_missing_folder_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_model(LLMConfig(source="/no/such/model", device="cpu"))


def test_folder_without_model_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tokenizer"):
        load_model(LLMConfig(source=str(tmp_path), device="cpu"))


def test_folder_with_tokenizer_but_no_weights_is_a_config_error(
    tiny_model: LoadedModel, tmp_path: Path
) -> None:
    tiny_model.tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="cannot load a causal language model"):
        load_model(LLMConfig(source=str(tmp_path), device="cpu"))


def test_hub_id_offline_is_a_clear_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="HF_HUB_OFFLINE") as info:
        load_model(LLMConfig(source="HuggingFaceTB/SmolLM2-135M-Instruct", device="cpu"))
    assert "builtin:tiny-llama" in str(info.value)


def test_unknown_builtin_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="builtin:tiny-llama, builtin:smollm2-135m"):
        builtins.materialize("builtin:gpt-5")


# ------------------------------------------------------------------ precision and options


def test_bfloat16_weights(tiny_model: LoadedModel) -> None:
    loaded = _tiny(dtype="bfloat16")
    assert loaded.dtype == loaded.model.dtype == torch.bfloat16
    assert loaded.memory_bytes() < 0.6 * tiny_model.memory_bytes()
    close = torch.allclose(_logits(loaded), _logits(tiny_model), atol=0.1)
    assert close and not torch.equal(_logits(loaded), _logits(tiny_model))


def test_auto_dtype_is_float32_on_cpu() -> None:
    # bfloat16 is faster on an AMX CPU but changes SmolLM2's greedy text (tests/slow/test_smollm2_dtype.py).
    assert LLMConfig().dtype == "auto"
    assert _tiny(dtype="auto").dtype == torch.float32


@pytest.mark.parametrize(("bf16", "expected"), [(True, torch.bfloat16), (False, torch.float16)])
def test_auto_dtype_on_cuda_is_bfloat16_where_supported(
    monkeypatch: pytest.MonkeyPatch, bf16: bool, expected: torch.dtype
) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)
    assert resolve_dtype("auto", torch.device("cuda:0")) == expected
    assert resolve_dtype("float32", torch.device("cuda:0")) == torch.float32  # an explicit dtype wins


def test_auto_dtype_with_int8_dynamic_loads_float32_weights_and_quantizes_them() -> None:
    assert resolve_dtype("auto", torch.device("cpu"), "int8-dynamic") == torch.float32
    loaded = _tiny(dtype="auto", quantization="int8-dynamic")
    assert loaded.dtype == torch.float32
    assert any(isinstance(m, DynamicQuantizedLinear) for m in loaded.model.modules())


def test_the_load_log_names_the_resolved_dtype(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="blaze_ai.engines.llm.loading"):
        _tiny(dtype="auto")
    assert "tiny-llama loaded on cpu as float32 (dtype=auto, quantization=none)" in caplog.text


def test_int8_dynamic_quantizes_every_linear(tiny_model: LoadedModel) -> None:
    loaded = _tiny(quantization="int8-dynamic")
    linears = [m for m in loaded.model.modules() if isinstance(m, torch.nn.Linear)]
    quantized = [m for m in loaded.model.modules() if isinstance(m, DynamicQuantizedLinear)]
    assert linears == [] and len(quantized) == 2 * 7 + 1  # q k v o gate up down per layer + lm_head
    assert loaded.memory_bytes() < tiny_model.memory_bytes()
    ids = loaded.tokenizer("import os", return_tensors="pt").input_ids
    out = loaded.model.generate(ids, max_new_tokens=4, do_sample=False)
    assert out.shape == (1, ids.shape[1] + 4)


def test_gradient_checkpointing_applied_and_trains(tiny_model: LoadedModel) -> None:
    assert not is_checkpointing(tiny_model.model)
    loaded = _tiny(gradient_checkpointing=True)
    assert is_checkpointing(loaded.model)
    ids = loaded.tokenizer("x = 1\ny = 2", return_tensors="pt").input_ids
    loaded.model.train()
    loss = loaded.model(ids, labels=ids, use_cache=False).loss
    loss.backward()
    assert loaded.model.model.embed_tokens.weight.grad is not None


def test_autocast_follows_the_amp_switch(tiny_model: LoadedModel) -> None:
    with tiny_model.autocast(True):
        assert _logits(tiny_model).dtype == torch.float32  # _logits casts back
        ids = tiny_model.tokenizer("a", return_tensors="pt").input_ids
        assert tiny_model.model(ids).logits.dtype == torch.bfloat16
    with tiny_model.autocast(False):
        assert tiny_model.model(ids).logits.dtype == torch.float32


def test_max_context_length_caps_and_cannot_exceed_the_model() -> None:
    assert _tiny(max_context_length=64).max_context == 64
    with pytest.raises(ConfigError, match="exceeds the model's own context"):
        _tiny(max_context_length=4096)


# ------------------------------------------------------------------ GPU-only options on CPU


@CPU_ONLY
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"device": "cuda"}, "no CUDA GPU"),
        ({"device": "cuda:0"}, "no CUDA GPU"),
        ({"device": "auto", "dtype": "float16"}, "float16 needs a GPU"),
        ({"device": "auto", "quantization": "bnb-4bit"}, "needs a CUDA GPU"),
        ({"device": "auto", "quantization": "bnb-8bit"}, "needs a CUDA GPU"),
    ],
)
def test_gpu_only_options_refused_without_gpu(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_model(LLMConfig(source="builtin:tiny-llama", **kwargs))  # type: ignore[arg-type]


def test_bitsandbytes_missing_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # makes `import bitsandbytes` fail
    with pytest.raises(ConfigError, match="pip install bitsandbytes"):
        check_quantization("bnb-4bit", torch.device("cuda"))


def test_int8_dynamic_refused_on_gpu() -> None:
    with pytest.raises(ConfigError, match="CPU only"):
        check_quantization("int8-dynamic", torch.device("cuda"))

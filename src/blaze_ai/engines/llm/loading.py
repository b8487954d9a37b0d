"""Load a causal language model as an LLMConfig asks: source, device, dtype, quantization.

Failures that the user fixes in the configuration become ``ConfigError``; failures of the
model files or the runtime become ``EngineFailureError``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

from blaze_ai.engines.llm import builtins
from blaze_ai.engines.llm.config import LLMConfig
from blaze_ai.errors import ConfigError, EngineFailureError

Progress = Callable[[str, float], None]

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
#: Share of the progress bar given to building a built-in (the rest is loading it).
_BUILD_SHARE = 0.8


@dataclass
class LoadedModel:
    """A model ready to serve: eval mode, on its device and dtype, quantized if asked."""

    model: Any  # a transformers PreTrainedModel (causal LM)
    tokenizer: Any  # a transformers tokenizer with a chat template
    device: torch.device
    dtype: torch.dtype
    max_context: int
    eos_token_ids: tuple[int, ...]
    name: str
    quantization: str = "none"
    load_seconds: float = 0.0

    def memory_bytes(self) -> int:
        """Bytes held by parameters and buffers (packed int8 weights included)."""
        total = sum(t.numel() * t.element_size() for t in self.model.parameters())
        total += sum(t.numel() * t.element_size() for t in self.model.buffers())
        for module in self.model.modules():
            if isinstance(module, DynamicQuantizedLinear):  # packed weights are no parameters
                packed: Any = module
                weight = packed.weight()
                total += weight.numel() * weight.element_size()
                bias = packed.bias()
                total += 0 if bias is None else bias.numel() * bias.element_size()
        return int(total)

    def kv_cache_bytes(self, tokens: int) -> int:
        """Bytes a KV cache holding ``tokens`` tokens takes (keys and values, every layer)."""
        cfg = self.model.config
        heads = getattr(cfg, "num_attention_heads", 1)
        kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
        per_token = 2 * cfg.num_hidden_layers * kv_heads * head_dim
        element = torch.finfo(self.dtype).bits // 8 if self.dtype.is_floating_point else 4
        return int(per_token * element * tokens)

    def autocast(self, enabled: bool) -> contextlib.AbstractContextManager[Any]:
        """A context that runs forward passes under AMP when ``enabled`` (LLMConfig.amp)."""
        if not enabled:
            return contextlib.nullcontext()
        amp_dtype = torch.bfloat16
        if self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            amp_dtype = torch.float16
        return torch.autocast(self.device.type, dtype=amp_dtype)


def resolve_device(spec: str) -> torch.device:
    """``auto`` / ``cpu`` / ``cuda`` / ``cuda:N`` -> a device that exists here."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise ConfigError(
            f"device={spec} but no CUDA GPU is visible to torch {torch.__version__}: use device=cpu or auto",
            param="device",
        )
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(
            f"device={spec} but only {torch.cuda.device_count()} CUDA GPU(s) exist", param="device"
        )
    return device


def resolve_dtype(spec: str, device: torch.device, quantization: str = "none") -> torch.dtype:
    """The weight dtype for ``spec`` on ``device``; float16 is refused on CPU.

    ``auto`` is bfloat16 on CUDA (float16 where the GPU has no bfloat16) and float32 on CPU and for
    int8-dynamic, which quantizes float32 weights. On CPU bfloat16 decodes about 3x faster where the
    CPU has AMX, but its greedy text differs from float32's on the built-in prompts, so it stays
    opt-in there (docs/models.md#the-default-dtype).
    """
    if spec == "auto":
        if device.type != "cuda" or quantization == "int8-dynamic":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if spec == "float16" and device.type != "cuda":
        raise ConfigError(
            "dtype=float16 needs a GPU (no CUDA device here): use bfloat16 or float32", param="dtype"
        )
    return _DTYPES[spec]


def check_quantization(quantization: str, device: torch.device) -> None:
    """Refuse a quantization that this device or install cannot run, saying what to do."""
    if quantization == "int8-dynamic" and device.type != "cpu":
        raise ConfigError("quantization=int8-dynamic runs on CPU only: set device=cpu", param="quantization")
    if not quantization.startswith("bnb-"):
        return
    if device.type != "cuda":
        raise ConfigError(
            f"quantization={quantization} needs a CUDA GPU and none is visible: "
            "use int8-dynamic or none on CPU",
            param="quantization",
        )
    try:
        found = importlib.util.find_spec("bitsandbytes") is not None
    except (ImportError, ValueError):  # ValueError: a broken or stubbed-out module
        found = False
    if not found:
        raise ConfigError(
            f"quantization={quantization} needs bitsandbytes: pip install bitsandbytes",
            param="quantization",
        )


def load_model(config: LLMConfig, progress: Progress | None = None) -> LoadedModel:
    """Load ``config.source`` on the configured device, dtype and quantization.

    Example::

        loaded = load_model(LLMConfig(source="builtin:tiny-llama", device="cpu"))
        ids = loaded.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    """
    report = progress or (lambda stage, fraction: None)
    started = time.monotonic()
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, device, config.quantization)
    check_quantization(config.quantization, device)
    with _quiet_progress_bars(progress is not None):
        path, name, local = _resolve_source(config.source, report)
        report("load tokenizer", 0.85)
        tokenizer = _load_tokenizer(path, config, local)
        report("load weights", 0.9)
        model = _load_weights(path, config, device, dtype, local)
    if config.gradient_checkpointing:
        enable_checkpointing(model)
    if config.quantization == "int8-dynamic":
        report("quantize int8", 0.95)
        model = quantize_int8_dynamic(model)
    loaded = LoadedModel(
        model=model,
        tokenizer=tokenizer,
        device=device,
        dtype=dtype,
        max_context=_max_context(model, config),
        eos_token_ids=_eos_token_ids(model, tokenizer),
        name=name,
        quantization=config.quantization,
        load_seconds=time.monotonic() - started,
    )
    report("ready", 1.0)
    log.info(
        "%s loaded on %s as %s (dtype=%s, quantization=%s): %.0f MiB of weights in %.1f s",
        name,
        device,
        dtype_name(dtype),
        config.dtype,
        config.quantization,
        loaded.memory_bytes() / 2**20,
        loaded.load_seconds,
    )
    return loaded


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``bfloat16``, the spelling of LLMConfig.dtype."""
    return str(dtype).removeprefix("torch.")


@contextlib.contextmanager
def _quiet_progress_bars(quiet: bool) -> Iterator[None]:
    """Hide transformers' own progress bars while the caller draws one from ``progress``."""
    from transformers.utils import logging

    hf_logging: Any = logging  # untyped module functions
    was_enabled = hf_logging.is_progress_bar_enabled()
    if quiet and was_enabled:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if quiet and was_enabled:
            hf_logging.enable_progress_bar()


def enable_checkpointing(model: Any) -> None:
    """Recompute activations in backward (training memory); serving in eval mode is unchanged."""
    # transformers 5.2x renamed gradient_checkpointing_enable (now a deprecated alias).
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    try:
        enable()
    except ValueError as exc:  # the architecture does not support it
        raise ConfigError(f"gradient_checkpointing: {exc}", param="gradient_checkpointing") from exc


def is_checkpointing(model: Any) -> bool:
    """True when activation (gradient) checkpointing is on for ``model``."""
    return any(getattr(module, "gradient_checkpointing", False) is True for module in model.modules())


def quantize_int8_dynamic(model: Any) -> Any:
    """Replace every nn.Linear by a dynamically quantized int8 Linear (CPU inference)."""
    with warnings.catch_warnings():
        # Eager quantization is deprecated in favour of torchao (not installed); it still works.
        warnings.filterwarnings(
            "ignore", message=r"torch\.ao\.quantization is deprecated", category=DeprecationWarning
        )
        warnings.filterwarnings(
            "ignore", message=r"torch\.quantize_per_tensor.* are deprecated", category=UserWarning
        )
        quantize: Any = torch.ao.quantization.quantize_dynamic
        return quantize(model, {torch.nn.Linear}, dtype=torch.qint8)


def _resolve_source(source: str, report: Progress) -> tuple[str, str, bool]:
    """(path or hub id, display name, is local) for a model source."""
    if builtins.is_builtin(source):
        folder = builtins.materialize(source, lambda stage, f: report(stage, f * _BUILD_SHARE))
        return str(folder), source.removeprefix(builtins.BUILTIN_PREFIX), True
    path = Path(source).expanduser()
    if path.is_dir():
        return str(path), path.name, True
    if source.startswith(("/", ".", "~")) or path.exists():
        raise ConfigError(f"model folder {source!r} does not exist or is not a folder", param="source")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise ConfigError(
            f"model source {source!r} is neither a built-in nor a local folder, and HF_HUB_OFFLINE is set "
            f"so it cannot be downloaded: use one of {', '.join(builtins.builtin_names())} or a folder",
            param="source",
        )
    return source, source, False


def _load_tokenizer(path: str, config: LLMConfig, local: bool) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(
            path, trust_remote_code=config.trust_remote_code, local_files_only=local
        )
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"no usable tokenizer in {path!r}: {exc}", param="source") from exc
    if not tokenizer.chat_template:
        tokenizer.chat_template = builtins.CHATML_TEMPLATE
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _load_weights(path: str, config: LLMConfig, device: torch.device, dtype: torch.dtype, local: bool) -> Any:
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {
        "dtype": dtype,
        "trust_remote_code": config.trust_remote_code,
        "local_files_only": local,
    }
    if config.quantization.startswith("bnb-"):
        kwargs["quantization_config"] = _bnb_config(config.quantization, dtype)
        kwargs["device_map"] = {"": device.index or 0}
    model: Any
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        if "device_map" not in kwargs:
            model = model.to(device)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(
            f"cannot load a causal language model from {path!r}: {exc}", param="source"
        ) from exc
    except Exception as exc:  # torch / safetensors runtime failures (out of memory, corrupt file)
        raise EngineFailureError(f"loading {path!r} failed: {type(exc).__name__}: {exc}") from exc
    model.eval()
    return model


def _bnb_config(quantization: str, dtype: torch.dtype) -> Any:
    from transformers import BitsAndBytesConfig

    if quantization == "bnb-8bit":
        return BitsAndBytesConfig(load_in_8bit=True)  # type: ignore[no-untyped-call]
    return BitsAndBytesConfig(  # type: ignore[no-untyped-call]
        load_in_4bit=True, bnb_4bit_compute_dtype=dtype, bnb_4bit_quant_type="nf4"
    )


def _max_context(model: Any, config: LLMConfig) -> int:
    own = getattr(model.config, "max_position_embeddings", None)
    if config.max_context_length is None:
        if own is None:
            raise ConfigError("the model does not state its context length: set max_context_length")
        return int(own)
    if own is not None and config.max_context_length > own:
        raise ConfigError(
            f"max_context_length={config.max_context_length} exceeds the model's own context ({own}): "
            "lower it or leave it unset",
            param="max_context_length",
        )
    return config.max_context_length


def _eos_token_ids(model: Any, tokenizer: Any) -> tuple[int, ...]:
    """Every id that ends a turn: from the generation config, model config, tokenizer and ChatML."""
    found: list[int] = []
    candidates: list[Any] = [
        getattr(model.generation_config, "eos_token_id", None),
        getattr(model.config, "eos_token_id", None),
        tokenizer.eos_token_id,
    ]
    if "<|im_end|>" in (tokenizer.chat_template or "") and "<|im_end|>" in tokenizer.get_vocab():
        candidates.append(tokenizer.convert_tokens_to_ids("<|im_end|>"))
    for candidate in candidates:
        for token_id in candidate if isinstance(candidate, list | tuple) else [candidate]:
            if isinstance(token_id, int) and token_id not in found:
                found.append(token_id)
    if not found:
        raise ConfigError("the model has no end-of-sequence token: its tokenizer needs an eos_token")
    return tuple(found)

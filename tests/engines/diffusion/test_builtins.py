"""The built-in models: a tokenizer that knows words, cached atomically, and the DDPM builtin."""

from __future__ import annotations

import os
from typing import Any

import pytest

from blaze_ai.engines.diffusion.builtins import builtin_path, train_clip_tokenizer
from blaze_ai.engines.requests import ImageRequest
from blaze_ai.errors import BadRequestError

from .conftest import pixels


def test_tokenizer_knows_prompt_words() -> None:
    tokenizer = train_clip_tokenizer()
    ids = tokenizer("a red cat sitting on the moon").input_ids
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.unk_token_id not in ids[1:-1]
    assert len(ids) == 2 + 7  # every word is one known token
    assert tokenizer.decode(ids, skip_special_tokens=True) == "a red cat sitting on the moon"


def test_builtin_is_materialised_once_and_small(blaze_cache_dir: str) -> None:
    path = builtin_path("builtin:tiny-sd")
    assert path.startswith(blaze_cache_dir)
    index = os.path.join(path, "model_index.json")
    stamp = os.stat(index).st_mtime_ns
    assert builtin_path("builtin:tiny-sd") == path
    assert os.stat(index).st_mtime_ns == stamp  # not rebuilt
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
    assert size < 10 * 1024 * 1024
    leftovers = [n for n in os.listdir(os.path.dirname(path)) if n.startswith(".")]
    assert leftovers == []  # the temporary build folder was renamed away


def test_unknown_builtin_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown builtin"):
        builtin_path("builtin:nope")


async def test_ddpm_builtin_makes_images_of_its_native_size(make_engine: Any) -> None:
    engine = await make_engine(source="builtin:tiny-ddpm", width=None, height=None, max_batch_size=4)
    seen: list[int] = []
    result = await engine.execute(ImageRequest(prompt="", n=2, seed=9), on_step=lambda d, t: seen.append(d))
    assert [pixels(png).shape for png in result.images] == [(32, 32, 3), (32, 32, 3)]
    assert result.images[0] != result.images[1]
    assert seen == [1, 2, 3]  # one batch of two images, three steps
    again = await engine.execute(ImageRequest(prompt="ignored", seed=9))
    assert again.images[0] == result.images[0]  # same seed, same image; the prompt plays no part
    with pytest.raises(BadRequestError, match="only makes 32x32"):
        await engine.execute(ImageRequest(prompt="", width=64, height=64))

"""Cache keys: same request -> same key; anything that changes the answer -> another key."""

from __future__ import annotations

import dataclasses

import pytest

from blaze_ai.cache.keys import cache_key, cacheable, deterministic
from blaze_ai.engines.requests import EmbeddingRequest, GenerationRequest, ImageRequest, SamplingParams


def gen(prompt: str = "hello", **params: object) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, params=SamplingParams(**{"temperature": 0.0, **params}))  # type: ignore[arg-type]


def test_same_request_same_key_and_bookkeeping_ignored() -> None:
    a = GenerationRequest(prompt="hi", params=SamplingParams(temperature=0), request_id="a", deadline=1.0)
    b = GenerationRequest(prompt="hi", params=SamplingParams(temperature=0.0), request_id="b", priority=5)
    assert a.arrival != b.arrival or a.request_id != b.request_id
    key = cache_key("m", a, "execute")
    assert key is not None and key.startswith("blaze:v2:") and len(key) == len("blaze:v2:") + 64
    assert key == cache_key("m", b, "execute")


@pytest.mark.parametrize(
    "other",
    [
        gen(temperature=0.5),
        gen(seed=1),
        gen(max_tokens=17),
        gen(top_p=0.9),
        gen(stop=("x",)),
        gen(n=2),
        gen("hello!"),
        GenerationRequest(
            messages=[{"role": "user", "content": "hello"}], params=SamplingParams(temperature=0)
        ),
    ],
)
def test_anything_that_changes_the_answer_changes_the_key(other: GenerationRequest) -> None:
    assert cache_key("m", gen(), "execute") != cache_key("m", other, "execute")


def test_model_and_operation_are_in_the_key() -> None:
    request = gen()
    keys = {
        cache_key("m", request, "execute"),
        cache_key("n", request, "execute"),
        cache_key("m", request, "stream"),
    }
    assert len(keys) == 3


def test_message_order_matters_but_dict_order_does_not() -> None:
    one = GenerationRequest(messages=[{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
    two = GenerationRequest(messages=[{"content": "a", "role": "user"}, {"content": "b", "role": "user"}])
    swapped = GenerationRequest(messages=[{"role": "user", "content": "b"}, {"role": "user", "content": "a"}])
    assert cache_key("m", one, "execute") == cache_key("m", two, "execute")
    assert cache_key("m", one, "execute") != cache_key("m", swapped, "execute")


def test_images_and_embeddings_key_on_their_parameters() -> None:
    image = ImageRequest(prompt="cat", seed=1, request_id="x")
    assert cache_key("m", image, "execute") == cache_key(
        "m", dataclasses.replace(image, request_id="y"), "execute"
    )
    assert cache_key("m", image, "execute") != cache_key("m", dataclasses.replace(image, seed=2), "execute")
    assert cache_key("m", image, "execute") != cache_key("m", dataclasses.replace(image, width=32), "execute")
    embed = EmbeddingRequest(inputs=["a", "b"])
    assert cache_key("m", embed, "execute") != cache_key("m", EmbeddingRequest(inputs=["b", "a"]), "execute")
    assert cache_key("m", embed, "execute") != cache_key(
        "m", EmbeddingRequest(["a", "b"], dimensions=4), "execute"
    )


def test_unknown_request_types_have_no_key() -> None:
    assert cache_key("m", {"prompt": "x"}, "execute") is None
    assert not cacheable({"prompt": "x"}, "all")


def test_deterministic_requests() -> None:
    assert deterministic(gen())
    assert deterministic(gen(temperature=0.8, seed=3))
    assert not deterministic(gen(temperature=0.8))
    assert deterministic(ImageRequest(prompt="x", seed=0))
    assert not deterministic(ImageRequest(prompt="x"))
    assert deterministic(EmbeddingRequest(inputs=["x"]))


def test_modes_widen_and_narrow() -> None:
    sampled = gen(temperature=0.8)
    assert not cacheable(sampled, "deterministic")
    assert cacheable(sampled, "all")
    assert cacheable(gen(), "deterministic")
    assert not cacheable(gen(), "off")
    assert not cacheable(EmbeddingRequest(inputs=["x"]), "off")

"""The official openai client's images and embeddings APIs against one real ``blaze serve``.

One server serves text, images and embeddings at once (the tiny LLM, the tiny
Stable Diffusion built-in and the real all-MiniLM-L6-v2 built-in).
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest
from PIL import Image

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CONFIG = """
server: {host: 127.0.0.1}
models:
  - name: tiny
    kind: llm
    llm: {source: "builtin:tiny-llama"}
  - name: tiny-sd
    kind: diffusion
    diffusion: {source: "builtin:tiny-sd", steps: 2}
  - name: minilm
    kind: embedding
    embedding: {source: "builtin:all-minilm-l6-v2"}
"""


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, gateway: Any) -> Iterator[openai.OpenAI]:
    with gateway(CONFIG, tmp_path_factory.mktemp("multi")) as server:
        yield openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="none", max_retries=0, timeout=120)


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def test_one_server_lists_every_kind(client: openai.OpenAI) -> None:
    assert sorted(m.id for m in client.models.list()) == ["minilm", "tiny", "tiny-sd"]


def test_images_generate_decodes_to_the_asked_size(client: openai.OpenAI) -> None:
    result = client.images.generate(
        model="tiny-sd",
        prompt="a red square",
        n=2,
        size="64x64",
        response_format="b64_json",
        extra_body={"seed": 7, "steps": 2},
    )
    assert len(result.data) == 2
    images = [Image.open(io.BytesIO(base64.b64decode(d.b64_json or ""))) for d in result.data]
    assert all(img.format == "PNG" and img.size == (64, 64) for img in images)
    again = client.images.generate(
        model="tiny-sd",
        prompt="a red square",
        n=1,
        size="64x64",
        response_format="b64_json",
        extra_body={"seed": 7, "steps": 2},
    )
    first = np.asarray(images[0], dtype=np.int16)
    repeat = np.asarray(Image.open(io.BytesIO(base64.b64decode(again.data[0].b64_json or ""))), np.int16)
    assert np.abs(first - repeat).max() <= 1  # same seed, same image


def test_images_bad_size_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        client.images.generate(model="tiny-sd", prompt="x", size="63x64")  # type: ignore[arg-type]


def test_embeddings_rank_similar_sentences_higher(client: openai.OpenAI) -> None:
    result = client.embeddings.create(model="minilm", input=["a cat", "a kitten", "quarterly revenue"])
    cat, kitten, revenue = (d.embedding for d in result.data)
    assert len(cat) == 384
    assert cosine(cat, kitten) > cosine(cat, revenue) + 0.2
    assert result.usage.prompt_tokens > 0


def test_embeddings_base64_decodes_to_the_float_vector(client: openai.OpenAI) -> None:
    floats = client.embeddings.create(model="minilm", input="a cat", encoding_format="float")
    packed = client.embeddings.with_raw_response.create(
        model="minilm", input="a cat", encoding_format="base64"
    ).http_response.json()
    decoded = np.frombuffer(base64.b64decode(packed["data"][0]["embedding"]), dtype=np.float32)
    assert np.allclose(decoded, floats.data[0].embedding, atol=1e-6)


def test_embeddings_batched_equal_single(client: openai.OpenAI) -> None:
    batch = client.embeddings.create(model="minilm", input=["a cat", "a dog", "the stock market"])
    single = client.embeddings.create(model="minilm", input="a dog")
    assert np.allclose(batch.data[1].embedding, single.data[0].embedding, atol=1e-5)


def test_text_still_served_beside_images(client: openai.OpenAI, tmp_path: Path) -> None:
    reply = client.completions.create(model="tiny", prompt="Hello", max_tokens=4, temperature=0)
    assert reply.usage is not None and reply.usage.completion_tokens >= 1

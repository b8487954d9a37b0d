"""The /v1 routes answer in the shapes the official openai client reads."""

from __future__ import annotations

import base64
import io
import struct

import httpx
import pytest
from PIL import Image

from blaze_ai.engines import FakeEngine

from .conftest import MakeClient, chat_body


async def test_models_list_and_get(client: httpx.AsyncClient) -> None:
    listing = (await client.get("/v1/models")).json()
    assert listing["object"] == "list"
    assert [m["id"] for m in listing["data"]] == ["fake"]
    assert listing["data"][0]["object"] == "model"
    assert (await client.get("/v1/models/fake")).json()["id"] == "fake"
    assert (await client.get("/v1/models/other")).status_code == 404


async def test_chat_completion_shape_and_usage(client: httpx.AsyncClient) -> None:
    body = chat_body("one two three", n=2, max_completion_tokens=2)
    data = (await client.post("/v1/chat/completions", json=body)).json()
    assert data["object"] == "chat.completion" and data["id"].startswith("chatcmpl-")
    assert [c["index"] for c in data["choices"]] == [0, 1]
    assert data["choices"][0]["message"] == {"role": "assistant", "content": "one two"}
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}


async def test_chat_content_parts_and_developer_role(client: httpx.AsyncClient) -> None:
    body = {
        "model": "fake",
        "messages": [
            {"role": "developer", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}]},
        ],
    }
    data = (await client.post("/v1/chat/completions", json=body)).json()
    assert data["choices"][0]["message"]["content"] == "hi there"
    image_part = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
    rejected = await client.post("/v1/chat/completions", json={"model": "fake", "messages": [image_part]})
    assert rejected.status_code == 400


async def test_both_max_tokens_fields_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/chat/completions", json=chat_body(max_tokens=2, max_completion_tokens=2)
    )
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("prompt", "texts"),
    [
        ("a b c", ["a b c"]),
        (["a b", "c"], ["a b", "c"]),
        ([5, 6], ["5 6"]),
        ([[5], [6, 7]], ["5", "6 7"]),
    ],
)
async def test_completions_prompt_forms(client: httpx.AsyncClient, prompt: object, texts: list[str]) -> None:
    data = (await client.post("/v1/completions", json={"model": "fake", "prompt": prompt})).json()
    assert data["object"] == "text_completion"
    assert [c["text"] for c in data["choices"]] == texts
    assert [c["index"] for c in data["choices"]] == list(range(len(texts)))


async def test_completions_default_max_tokens_is_16_and_stop_applies(client: httpx.AsyncClient) -> None:
    words = " ".join(f"w{i}" for i in range(30))
    data = (await client.post("/v1/completions", json={"model": "fake", "prompt": words})).json()
    assert data["usage"]["completion_tokens"] == 16
    stopped = await client.post(
        "/v1/completions", json={"model": "fake", "prompt": "a b STOP c", "stop": "STOP"}
    )
    assert stopped.json()["choices"][0]["text"] == "a b"


async def test_embeddings_float_and_base64_agree(client: httpx.AsyncClient) -> None:
    body = {"model": "fake", "input": ["a cat", "a kitten"]}
    floats = (await client.post("/v1/embeddings", json=body)).json()
    encoded = (await client.post("/v1/embeddings", json={**body, "encoding_format": "base64"})).json()
    assert floats["object"] == "list" and floats["usage"]["prompt_tokens"] == 4
    for f, e in zip(floats["data"], encoded["data"], strict=True):
        raw = base64.b64decode(e["embedding"])
        decoded = struct.unpack(f"<{len(raw) // 4}f", raw)
        assert decoded == pytest.approx(f["embedding"], abs=1e-6)
        assert f["object"] == "embedding"


@pytest.mark.parametrize("value", ["one", [1, 2, 3], [[1], [2, 3]]])
async def test_embeddings_input_forms(client: httpx.AsyncClient, value: object) -> None:
    data = (
        await client.post("/v1/embeddings", json={"model": "fake", "input": value, "dimensions": 4})
    ).json()
    assert all(len(d["embedding"]) == 4 for d in data["data"])


async def test_images_b64_and_url(client: httpx.AsyncClient) -> None:
    body = {"model": "fake", "prompt": "a red cube", "n": 2, "size": "32x16", "seed": 3}
    data = (await client.post("/v1/images/generations", json={**body, "response_format": "b64_json"})).json()
    assert len(data["data"]) == 2
    image = Image.open(io.BytesIO(base64.b64decode(data["data"][0]["b64_json"])))
    assert image.size == (32, 16)
    by_url = (await client.post("/v1/images/generations", json=body)).json()
    png = await client.get(by_url["data"][0]["url"])
    assert png.headers["content-type"] == "image/png"
    assert png.content == base64.b64decode(data["data"][0]["b64_json"])  # same seed, same image
    assert (await client.get("/v1/images/files/nope")).status_code == 404


@pytest.mark.parametrize("size", ["0x10", "10", "10x10x10", "5000x5000"])
async def test_images_bad_size_is_400(client: httpx.AsyncClient, size: str) -> None:
    response = await client.post(
        "/v1/images/generations", json={"model": "fake", "prompt": "x", "size": size}
    )
    assert response.status_code == 400 and response.json()["error"]["param"] == "size"


async def test_images_need_a_model_when_no_diffusion_model_is_served(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/images/generations", json={"prompt": "x"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "model"


async def test_images_default_to_the_diffusion_model(make_client: MakeClient) -> None:
    class Painter(FakeEngine):
        kind = "diffusion"

    client = await make_client(engines={"painter": Painter()})
    response = await client.post(
        "/v1/images/generations", json={"prompt": "x", "response_format": "b64_json"}
    )
    assert response.status_code == 200 and len(response.json()["data"]) == 1


async def test_openapi_lists_every_route(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path in (
        "/v1/models",
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/images/generations",
    ):
        assert path in paths
    chat = paths["/v1/chat/completions"]["post"]
    assert "400" in chat["responses"] and "422" not in chat["responses"]

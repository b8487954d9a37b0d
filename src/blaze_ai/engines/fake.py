"""A model-free engine for tests, demos and the router: echo, slow, fail, hang or crash.

``FakeEngine`` speaks every request type: it echoes a generation's prompt
back word by word, draws a flat-coloured PNG for an image request and returns
deterministic unit vectors for embeddings. Its misbehaviour is set in
:class:`FakeConfig` and can be changed at run time with ``set_mode``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import math
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from blaze_ai.engines.base import HealthReport
from blaze_ai.engines.requests import (
    Completion,
    EmbeddingRequest,
    EmbeddingResult,
    GenerationRequest,
    GenerationResult,
    ImageRequest,
    ImageResult,
    StreamDelta,
)
from blaze_ai.errors import BadRequestError, EngineFailureError, UnavailableError

EMBEDDING_DIM = 8


@dataclass(frozen=True, slots=True)
class FakeConfig:
    """How the fake engine behaves; every field can be changed with ``set_mode``."""

    delay_s: float = 0.0  # before answering (or before the first streamed token)
    token_delay_s: float = 0.0  # between streamed tokens
    fail_rate: float = 0.0  # share of requests that raise EngineFailureError
    hang: bool = False  # requests and health checks never finish (until stop)
    crash: bool = False  # the engine is dead: requests fail, health checks fail
    fail_starts: int = 0  # the next N starts raise
    start_delay_s: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.delay_s < 0 or self.token_delay_s < 0 or self.start_delay_s < 0:
            raise ValueError("fake delays must be >= 0")
        if not 0.0 <= self.fail_rate <= 1.0:
            raise ValueError("fake fail_rate must be between 0 and 1")
        if self.fail_starts < 0:
            raise ValueError("fake fail_starts must be >= 0")


class FakeEngine:
    """An engine with no model; see the module docstring."""

    kind = "fake"

    def __init__(self, config: FakeConfig | None = None, **_: Any) -> None:
        self.config = config or FakeConfig()
        self._fail_starts = self.config.fail_starts
        self._rng = random.Random(self.config.seed)
        self._running = False
        self._stopped = asyncio.Event()
        self.starts = 0
        self.requests = 0
        self.tokens = 0

    def set_mode(self, **changes: Any) -> None:
        """Change behaviour at run time, e.g. ``set_mode(crash=True)``."""
        self.config = dataclasses.replace(self.config, **changes)
        if "fail_starts" in changes:
            self._fail_starts = self.config.fail_starts

    # -- lifecycle -------------------------------------------------------------
    async def start(self) -> None:
        self.starts += 1
        await asyncio.sleep(self.config.start_delay_s)
        if self._fail_starts > 0:
            self._fail_starts -= 1
            raise EngineFailureError("fake engine failed to start")
        if self.config.crash:  # a restart brings a crashed engine back
            self.config = dataclasses.replace(self.config, crash=False)
        self._stopped = asyncio.Event()
        self._running = True

    async def stop(self) -> None:
        self._running = False
        self._stopped.set()  # releases hung requests

    async def health_check(self) -> HealthReport:
        if self.config.hang:
            await self._stopped.wait()
        if not self._running or self.config.crash:
            return HealthReport(healthy=False, detail="fake engine is down")
        return HealthReport(healthy=True)

    def stats(self) -> dict[str, Any]:
        return {"starts": self.starts, "requests": self.requests, "tokens": self.tokens}

    # -- requests --------------------------------------------------------------
    async def _misbehave(self) -> None:
        if not self._running:
            raise UnavailableError("fake engine is not running")
        self.requests += 1
        if self.config.hang:
            await self._stopped.wait()
            raise UnavailableError("fake engine stopped while the request hung")
        await asyncio.sleep(self.config.delay_s)
        if self.config.crash or self._rng.random() < self.config.fail_rate:
            raise EngineFailureError("fake engine failure")

    async def execute(self, request: Any) -> Any:
        await self._misbehave()
        if isinstance(request, GenerationRequest):
            return self._generate(request)
        if isinstance(request, ImageRequest):
            return _images(request)
        if isinstance(request, EmbeddingRequest):
            return _embed(request)
        raise BadRequestError(f"fake engine cannot run {type(request).__name__}")

    async def stream(self, request: Any) -> AsyncIterator[StreamDelta]:
        if not isinstance(request, GenerationRequest):
            raise BadRequestError("only generation requests stream")
        await self._misbehave()
        words, prompt_tokens = _words(request)
        for index in range(request.params.n):
            for i, word in enumerate(words):
                if i:
                    await asyncio.sleep(self.config.token_delay_s)
                if self.config.crash:
                    raise EngineFailureError("fake engine crashed mid-stream")
                self.tokens += 1
                last = i == len(words) - 1
                finish = _finish_reason(request, len(words)) if last else None
                text = word if i == 0 else " " + word
                yield StreamDelta(index, text, [i], finish, prompt_tokens, i + 1)

    def _generate(self, request: GenerationRequest) -> GenerationResult:
        words, prompt_tokens = _words(request)
        self.tokens += len(words) * request.params.n
        text = " ".join(words)
        reason = _finish_reason(request, len(words))
        choices = [Completion(i, text, list(range(len(words))), reason) for i in range(request.params.n)]
        return GenerationResult(request.request_id, choices, prompt_tokens, len(words) * request.params.n)


def _prompt_text(request: GenerationRequest) -> str:
    if request.prompt is not None:
        return request.prompt
    if request.messages is not None:
        return (request.messages[-1].get("content") or "") if request.messages else ""
    return " ".join(str(t) for t in request.prompt_token_ids or [])


def _words(request: GenerationRequest) -> tuple[list[str], int]:
    """The echoed words (cut at max_tokens and at a stop word) and the prompt size."""
    words = _prompt_text(request).split() or ["ok"]
    prompt_tokens = len(words)
    words = words[: request.params.max_tokens]
    for i, word in enumerate(words):
        if any(stop in word for stop in request.params.stop):
            return words[:i] or [""], prompt_tokens
    return words, prompt_tokens


def _finish_reason(request: GenerationRequest, produced: int) -> Any:
    return "length" if produced >= request.params.max_tokens else "stop"


def _images(request: ImageRequest) -> ImageResult:
    from PIL import Image

    width, height = request.width or 64, request.height or 64
    base = request.seed if request.seed is not None else 0
    images = []
    for i in range(request.n):
        colour = tuple(hashlib.sha256(f"{request.prompt}:{base + i}".encode()).digest()[:3])
        buffer = io.BytesIO()
        Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
        images.append(buffer.getvalue())
    return ImageResult(request.request_id, images, [base + i for i in range(request.n)], width, height)


def _embed(request: EmbeddingRequest) -> EmbeddingResult:
    vectors = []
    tokens = 0
    for item in request.inputs:
        text = item if isinstance(item, str) else " ".join(map(str, item))
        tokens += max(1, len(text.split()))
        dim = request.dimensions or EMBEDDING_DIM
        # One sha256 gives 32 bytes; chain blocks so any dimension gets distinct values.
        blocks = (hashlib.sha256(f"{block}:{text}".encode()).digest() for block in range(dim // 32 + 1))
        vector = [b / 255.0 - 0.5 for b in b"".join(blocks)[:dim]]
        norm = math.sqrt(sum(v * v for v in vector)) or 1.0
        vectors.append([v / norm for v in vector] if request.normalize else vector)
    return EmbeddingResult(request.request_id, vectors, tokens)

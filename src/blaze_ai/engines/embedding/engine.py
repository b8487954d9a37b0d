"""The embedding engine: each input is one item of a :class:`DynamicBatcher`; weights live in a ModelCache."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from blaze_ai.batching import DynamicBatcher
from blaze_ai.compute import run_in_thread
from blaze_ai.engines.base import HealthReport
from blaze_ai.engines.embedding.config import EmbeddingConfig
from blaze_ai.engines.embedding.model import TokenizerInfo, embed_batch, load_model, load_tokenizer
from blaze_ai.engines.requests import EmbeddingRequest, EmbeddingResult
from blaze_ai.errors import BadRequestError, ContextLengthError, UnavailableError
from blaze_ai.model_cache import ModelCache


class EmbeddingEngine:
    """Serves one sentence-embedding model (kind ``"embedding"``).

    Example::

        engine = EmbeddingEngine(EmbeddingConfig())  # builtin:all-minilm-l6-v2
        await engine.start()
        result = await engine.execute(EmbeddingRequest(inputs=["a cat", "a kitten"]))
        await engine.stop()

    Inputs are strings or lists of token ids (without special tokens; the
    engine adds them like it does for text). Each input is batched on its own,
    so inputs of concurrent requests share forward passes.
    """

    kind = "embedding"

    def __init__(self, config: EmbeddingConfig, *, model_cache: ModelCache | None = None) -> None:
        self.config = config
        self._cache = model_cache or ModelCache(config.cache_budget_mb * 1024 * 1024)
        self._info: TokenizerInfo | None = None
        self._batcher: DynamicBatcher[list[int], Any] = DynamicBatcher(
            self._run_batch,
            max_batch_size=config.max_batch_size,
            max_wait_s=config.max_wait_ms / 1000,
            max_queue=config.max_queue,
        )
        self._requests = 0
        self._inputs = 0
        self._tokens = 0

    # -- lifecycle -----------------------------------------------------------------

    @property
    def dimensions(self) -> int:
        """The model's vector size (known once started)."""
        if self._info is None:
            raise UnavailableError("the embedding engine is not started")
        return self._info.hidden_size

    async def start(self) -> None:
        """Load the tokenizer and warm the model into the cache, then take requests."""
        if self._info is None:
            self._info = await asyncio.to_thread(load_tokenizer, self.config)
            await run_in_thread(self._cache.get_or_load, self.config.cache_key, self._load)
        await self._batcher.start()

    async def stop(self) -> None:
        """Stop taking requests, fail the queued ones, and let the cache evict the model."""
        await self._batcher.stop()
        self._info = None

    async def health_check(self) -> HealthReport:
        """Healthy while started; degraded when the queue is over 80 % full."""
        if self._info is None or not self._batcher.running:
            return HealthReport(healthy=False, detail="engine not started")
        queued = self._batcher.stats()["queued"]
        if queued > 0.8 * self.config.max_queue:
            return HealthReport(healthy=True, degraded=True, detail=f"{queued} inputs queued")
        return HealthReport(healthy=True)

    def stats(self) -> dict[str, Any]:
        """Plain counters: requests, inputs, tokens, and the batcher's numbers (``batch_`` prefix)."""
        batcher = {f"batch_{k}": v for k, v in self._batcher.stats().items() if isinstance(v, int | float)}
        return {
            "kind": self.kind,
            "source": self.config.source,
            "requests": self._requests,
            "inputs": self._inputs,
            "tokens": self._tokens,
            "model_loaded": self.config.cache_key in self._cache,
            **batcher,
        }

    # -- requests ------------------------------------------------------------------

    async def execute(self, request: EmbeddingRequest) -> EmbeddingResult:
        """Embed every input of ``request``; vectors come back in input order."""
        info = self._info
        if info is None or not self._batcher.running:
            raise UnavailableError("the embedding engine is not started")
        dimensions = self._check_request(request, info)
        sequences = [self._to_ids(item, index, info) for index, item in enumerate(request.inputs)]
        pooled = await self._submit_all(sequences, request.deadline)
        vectors = _finish(pooled, dimensions, request.normalize and self.config.normalize)
        tokens = sum(len(ids) for ids in sequences)
        self._requests += 1
        self._inputs += len(sequences)
        self._tokens += tokens
        return EmbeddingResult(request_id=request.request_id, vectors=vectors, prompt_tokens=tokens)

    def stream(self, request: EmbeddingRequest) -> AsyncIterator[Any]:
        """Embeddings do not stream."""
        raise BadRequestError("embeddings do not stream; call execute()", param="stream")

    # -- helpers -------------------------------------------------------------------

    def _check_request(self, request: EmbeddingRequest, info: TokenizerInfo) -> int | None:
        count = len(request.inputs)
        if count == 0:
            raise BadRequestError("input must not be empty", param="input")
        if count > self.config.max_inputs_per_request:
            raise BadRequestError(
                f"{count} inputs in one request; the limit is {self.config.max_inputs_per_request}",
                param="input",
            )
        dims = request.dimensions
        if dims is not None and not 1 <= dims <= info.hidden_size:
            raise BadRequestError(
                f"dimensions must be between 1 and {info.hidden_size} for this model, not {dims}",
                param="dimensions",
            )
        return dims

    def _to_ids(self, item: object, index: int, info: TokenizerInfo) -> list[int]:
        """Token ids the model reads for one input: the text's ids wrapped in the special tokens."""
        if isinstance(item, str):
            ids = list(info.tokenizer(item, add_special_tokens=False)["input_ids"])
        elif isinstance(item, list) and all(isinstance(t, int) and 0 <= t < info.vocab_size for t in item):
            ids = [int(t) for t in item]
        else:
            raise BadRequestError(
                f"input[{index}] must be a string or a list of token ids below {info.vocab_size}",
                param="input",
            )
        room = self.config.max_tokens_per_input - len(info.prefix) - len(info.suffix)
        if len(ids) > room:
            if not self.config.truncate:
                raise ContextLengthError(
                    f"input[{index}] has {len(ids) + len(info.prefix) + len(info.suffix)} tokens; "
                    f"the limit is {self.config.max_tokens_per_input}",
                    param="input",
                )
            ids = ids[:room]
        return [*info.prefix, *ids, *info.suffix]

    async def _submit_all(self, sequences: list[list[int]], deadline: float | None) -> list[Any]:
        """Submit each input; if one fails (or we are cancelled), withdraw the others."""
        tasks = [asyncio.ensure_future(self._batcher.submit(ids, deadline=deadline)) for ids in sequences]
        try:
            return await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()  # a no-op for finished tasks; frees queue slots otherwise

    def _load(self) -> Any:
        return load_model(self.config)

    def _run_batch(self, batch: list[list[int]]) -> list[Any]:
        """Runs in the batcher's worker thread: pin the model for one forward pass."""
        info = self._info
        if info is None:
            raise UnavailableError("the embedding engine stopped")
        with self._cache.use(self.config.cache_key, self._load) as model:
            return embed_batch(model, info, batch, self.config.device)


def _finish(pooled: list[Any], dimensions: int | None, normalize: bool) -> list[list[float]]:
    """Truncate (Matryoshka style) and L2-normalise the pooled vectors, as plain lists."""
    import torch

    vectors = torch.stack(pooled)
    if dimensions is not None:
        vectors = vectors[:, :dimensions]
    if normalize:
        vectors = torch.nn.functional.normalize(vectors, p=2.0, dim=1)
    result: list[list[float]] = vectors.tolist()
    return result

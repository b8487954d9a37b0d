"""LLMEngine: the async shell around :class:`~blaze_ai.engines.llm.core.EngineCore`.

The model runs on one dedicated thread that calls ``core.step()`` while there
is work and sleeps otherwise, so the event loop stays free. Each step's
outputs go back to the event loop in one ``call_soon_threadsafe`` call and
are sorted per request (see :mod:`blaze_ai.engines.llm.outputs`): a streamed
request's outputs go into its :class:`OutputStream`, whose reader takes all
that queued up while it was busy and yields them merged per choice (one delta
for several steps, :func:`~blaze_ai.engines.deltas.coalesce`); a whole
(``execute``) request's deltas are held by a :class:`Collector` that wakes its
caller once, when the request ends, so a request that nobody streams costs the
event loop no wake-up per token.
``execute`` and ``stream`` add the request (errors such as a full queue or an
over-long prompt are raised at once); cancelling ``execute`` or closing the
stream aborts the request at the next step.

Example::

    engine = LLMEngine(LLMConfig(source="builtin:tiny-llama"))
    await engine.start()
    result = await engine.execute(GenerationRequest(prompt="Hello", params=SamplingParams(max_tokens=8)))
    await engine.stop()
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any

from blaze_ai.compute import run_in_thread
from blaze_ai.engines.base import HealthReport
from blaze_ai.engines.llm.config import LLMConfig
from blaze_ai.engines.llm.core import EngineCore, StepOutput
from blaze_ai.engines.llm.loading import LoadedModel, load_model
from blaze_ai.engines.llm.outputs import Collector, OutputStream
from blaze_ai.engines.llm.runner import kv_pool_tokens
from blaze_ai.engines.requests import (
    Completion,
    DetokenizeRequest,
    DetokenizeResult,
    GenerationRequest,
    GenerationResult,
    StreamDelta,
    TokenizeRequest,
    TokenizeResult,
    TokenizerInfo,
    TokenizerInfoRequest,
)
from blaze_ai.errors import BadRequestError, EngineFailureError, UnavailableError
from blaze_ai.model_cache import ModelCache

Progress = Callable[[str, float], None]

log = logging.getLogger(__name__)

#: Seconds the idle engine thread sleeps before checking again (new work wakes it at once).
_IDLE_WAIT_S = 1.0


class LLMEngine:
    """Serves one causal LM with continuous batching (kind ``"llm"``)."""

    kind = "llm"

    def __init__(
        self, config: LLMConfig, *, model_cache: ModelCache | None = None, progress: Progress | None = None
    ) -> None:
        self.config = config
        self._model_cache = model_cache
        self._progress = progress
        self._core: EngineCore | None = None
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queues: dict[str, OutputStream | Collector] = {}
        self._last_error: str | None = None
        self._started_at: float | None = None

    @property
    def cache_key(self) -> str:
        """The model cache key: the same source, dtype, quantization and device share one load."""
        c = self.config
        return f"llm:{c.source}:{c.dtype}:{c.quantization}:{c.device}"

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the model in a worker thread, then start the step loop."""
        if self._thread is not None:
            return
        loaded = await run_in_thread(self._load)
        self._core = await run_in_thread(self._prepare, loaded)
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._started_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"blaze-llm-{loaded.name}", daemon=True)
        self._thread.start()

    def _prepare(self, loaded: LoadedModel) -> EngineCore:
        """The engine core, its KV cache allocated, prefill measured and CUDA graphs captured."""
        core = EngineCore(loaded, self.config)
        try:
            core.warm_up()
        except Exception as exc:  # without the measurement each step's newcomers form one prefill batch
            log.warning(
                "warm-up of %s failed, serving without it: %s: %s", loaded.name, type(exc).__name__, exc
            )
        log.info("%s ready: %s", loaded.name, ", ".join(f"{k}={v}" for k, v in core.warm_up_report.items()))
        return core

    def _load(self) -> LoadedModel:
        if self._model_cache is None:
            return load_model(self.config, self._progress)
        loaded: LoadedModel = self._model_cache.get_or_load(
            self.cache_key,
            lambda: load_model(self.config, self._progress),
            # the budget counts the KV cache of a full batch, not just the weights
            extra_bytes=lambda m: m.kv_cache_bytes(kv_pool_tokens(self.config)),
            pin=True,
        )
        return loaded

    async def stop(self) -> None:
        """Stop the loop, fail what is still pending, release the model."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stopping = True
            self._wake.set()
            await asyncio.to_thread(thread.join)
        core, self._core = self._core, None
        if core is not None:
            self._deliver(core.fail_all(UnavailableError("the engine stopped")))
            if self._model_cache is not None:
                self._model_cache.unpin(self.cache_key)

    async def health_check(self) -> HealthReport:
        """Healthy while the step thread runs; the last step error is reported as degraded."""
        if self._core is None or self._thread is None or not self._thread.is_alive():
            return HealthReport(healthy=False, detail="engine not running")
        if self._last_error is not None:
            return HealthReport(healthy=True, degraded=True, detail=f"last step failed: {self._last_error}")
        return HealthReport(healthy=True)

    # -- the step thread ------------------------------------------------------------------------

    def _run(self) -> None:
        core = self._core
        assert core is not None and self._loop is not None
        while not self._stopping:
            if not core.has_work():
                self._wake.wait(_IDLE_WAIT_S)
                self._wake.clear()
                continue
            try:
                outputs = core.step()
            except Exception as exc:  # a failed forward pass must not kill the loop
                self._last_error = f"{type(exc).__name__}: {exc}"
                error = EngineFailureError(f"the model failed during a step: {self._last_error}")
                error.__cause__ = exc
                outputs = core.fail_all(error)
            if outputs:
                self._loop.call_soon_threadsafe(self._deliver, outputs)

    def _deliver(self, outputs: list[StepOutput]) -> None:
        for output in outputs:
            queue = self._queues.get(output.request_id)
            if queue is not None:
                queue.put_nowait(output)

    # -- requests -------------------------------------------------------------------------------

    def _ready_core(self) -> EngineCore:
        if self._core is None or self._thread is None:
            raise UnavailableError("the LLM engine is not started")
        return self._core

    def _claim(self, request_id: str, sink: OutputStream | Collector) -> None:
        """Route ``request_id``'s outputs to ``sink``; an id already in flight is refused."""
        if request_id in self._queues:
            raise BadRequestError(f"request id {request_id!r} is already in use")
        self._queues[request_id] = sink

    async def _outputs(self, request: GenerationRequest) -> AsyncGenerator[StreamDelta, None]:
        """Add the request and yield its deltas; abort it if the consumer goes away."""
        core = self._ready_core()
        request_id = request.request_id
        stream = OutputStream(asyncio.get_running_loop())
        await self._compile_grammar(core, request)
        self._claim(request_id, stream)
        added = False
        try:
            core.add_request(request)
            added = True
            self._wake.set()
            while not stream.finished:
                for delta in await stream.deltas():  # a reader that fell behind gets several steps at once
                    yield delta
        finally:
            self._queues.pop(request_id, None)
            if added and not stream.ended:
                core.abort(request_id)
                self._wake.set()

    def stream(self, request: GenerationRequest) -> AsyncGenerator[StreamDelta, None]:
        """Yield text deltas as tokens are made; closing the iterator aborts the request."""
        return self._outputs(request)

    async def _collect(self, request: GenerationRequest) -> list[StreamDelta]:
        """Add the request and return all its deltas at the end; abort it if the caller is cancelled."""
        core = self._ready_core()
        request_id = request.request_id
        collector = Collector(asyncio.get_running_loop())
        await self._compile_grammar(core, request)
        self._claim(request_id, collector)
        added = False
        try:
            core.add_request(request)
            added = True
            self._wake.set()
            return await collector.done
        finally:
            self._queues.pop(request_id, None)
            done = collector.done
            if done.done() and not done.cancelled():
                done.exception()  # retrieved: a failure that raced a cancellation is not worth a log line
            if added and not collector.finished:
                core.abort(request_id)
                self._wake.set()

    @staticmethod
    async def _compile_grammar(core: EngineCore, request: GenerationRequest) -> None:
        """Compile a new structured output off the event loop (a complex schema takes a while)."""
        spec = request.params.structured
        if spec is not None and not core.grammars.is_compiled(spec):
            await asyncio.to_thread(core.grammars.compile, spec)

    async def execute(self, request: Any) -> Any:
        """Run a request to completion; cancelling the awaiting task aborts it.

        Also answers :class:`TokenizeRequest`, :class:`DetokenizeRequest` and
        :class:`TokenizerInfoRequest` with this model's tokenizer.
        """
        if isinstance(request, TokenizeRequest):
            return self._tokenize(request)
        if isinstance(request, DetokenizeRequest):
            return DetokenizeResult(self._ready_core().decode(request.token_ids))
        if isinstance(request, TokenizerInfoRequest):
            return self._tokenizer_info()
        return _assemble(request, await self._collect(request))

    def _tokenizer_info(self) -> TokenizerInfo:
        core = self._ready_core()
        tokenizer = core.loaded.tokenizer
        template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None
        return TokenizerInfo(
            type(tokenizer).__name__,
            tokenizer.eos_token,
            tokenizer.bos_token,
            tokenizer.pad_token,
            template,
            core.max_context,
        )

    def _tokenize(self, request: TokenizeRequest) -> TokenizeResult:
        core = self._ready_core()
        ids = core.encode(
            request.prompt,
            request.messages,
            request.tools,
            special=request.add_special_tokens,
            generation=request.add_generation_prompt,
        )
        return TokenizeResult(ids, [core.vocab.text(t) for t in ids], core.max_context)

    # -- reporting ------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Plain per-engine statistics for metrics and the admin API."""
        core = self._core
        if core is None:
            return {"status": "stopped", "model": self.config.source, "steps": 0}
        s, sched = core.stats, core.scheduler
        return {
            "status": "running",
            "model": core.loaded.name,
            "running": sched.running,
            "running_rows": sched.running_rows,
            "waiting": sched.waiting,
            "batch_size": s.last_batch_size,
            "max_batch_size": self.config.max_batch_size,
            "tokens_in_flight": sched.tokens_in_flight,
            "steps": s.steps,
            "prefill_passes": s.prefill_passes,
            "generated_tokens": s.generated_tokens,
            "prompt_tokens": s.prompt_tokens,
            "finished_requests": s.finished_requests,
            "tokens_per_s": round(s.tokens_per_s(), 2),
            "ttft_avg_s": round(s.ttft_sum_s / s.ttft_count, 4) if s.ttft_count else 0.0,
            "memory_bytes": core.loaded.memory_bytes(),
            "last_error": self._last_error,
            **core.warm_up_report,
        }


def _assemble(request: GenerationRequest, deltas: list[StreamDelta]) -> GenerationResult:
    """A whole result from a request's deltas (each choice's pieces, in order)."""
    n, want_logprobs = request.params.n, request.params.logprobs is not None
    choices = [Completion(i, "", [], "length", [] if want_logprobs else None) for i in range(n)]
    texts: list[list[str]] = [[] for _ in range(n)]
    counts = [0] * n
    prompt_tokens = 0
    for delta in deltas:
        choice = choices[delta.index]
        texts[delta.index].append(delta.text)
        choice.token_ids.extend(delta.token_ids)
        if choice.logprobs is not None:
            choice.logprobs.extend(delta.logprobs or [])
        if delta.finish_reason is not None:
            choice.finish_reason = delta.finish_reason
        if delta.prompt_text is not None:
            choice.prompt_text, choice.prompt_logprobs = delta.prompt_text, delta.prompt_logprobs
        counts[delta.index] = delta.completion_tokens
        prompt_tokens = delta.prompt_tokens
    for choice, pieces in zip(choices, texts, strict=True):
        choice.text = "".join(pieces)
    return GenerationResult(request.request_id, choices, prompt_tokens, sum(counts))

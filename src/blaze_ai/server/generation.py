"""Text generation plumbing shared by chat and completions: limits, sampling, usage, stream pieces."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from blaze_ai.engines.deltas import coalesce
from blaze_ai.engines.requests import GenerationRequest, SamplingParams, StreamDelta, StructuredOutput
from blaze_ai.errors import BadRequestError, NotFoundError
from blaze_ai.server.dispatch import Dispatch, RequestContext
from blaze_ai.server.lifecycle import Pump, run_guarded
from blaze_ai.server.schemas import SamplingFields, Usage

TEXT_KINDS = ("llm", "fake")
#: max_tokens when a chat request gives none (completions default to 16, as OpenAI does).
DEFAULT_CHAT_MAX_TOKENS = 512


def require_kind(request: Request, model: str, kinds: tuple[str, ...], api: str) -> None:
    """404 for an unknown model, 400 when the model cannot serve this API."""
    dispatch: Dispatch = request.app.state.dispatch
    served = dispatch.models()
    if model not in served:
        raise NotFoundError(f"The model '{model}' does not exist", param="model")
    if served[model] not in kinds:
        raise BadRequestError(
            f"model '{model}' is a {served[model]} model and cannot serve {api}", param="model"
        )


def sampling_params(
    request: Request,
    body: SamplingFields,
    *,
    max_tokens: int | None,
    default: int,
    logprobs: int | None,
    structured: StructuredOutput | None = None,
    echo: bool = False,
) -> SamplingParams:
    """SamplingParams from the body, within the server's limits (400 naming the parameter)."""
    server = request.app.state.server_config
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    n = body.n or 1
    tokens = max_tokens if max_tokens is not None else min(default, server.max_tokens_limit)
    for name, value, limit in (
        ("n", n, server.max_n),
        ("stop", len(stop), server.max_stop),
        ("max_tokens", tokens, server.max_tokens_limit),
    ):
        if value > limit:
            raise BadRequestError(f"{name} is {value}, more than this server's limit of {limit}", param=name)
    if tokens == 0 and not echo:
        raise BadRequestError("max_tokens must be at least 1 (0 only with echo)", param="max_tokens")
    try:
        return SamplingParams(
            max_tokens=tokens,
            temperature=1.0 if body.temperature is None else body.temperature,
            top_p=1.0 if body.top_p is None else body.top_p,
            top_k=max(body.top_k or 0, 0),
            min_p=body.min_p or 0.0,
            stop=stop,
            stop_token_ids=tuple(body.stop_token_ids or ()),
            seed=body.seed,
            n=n,
            frequency_penalty=body.frequency_penalty or 0.0,
            presence_penalty=body.presence_penalty or 0.0,
            repetition_penalty=1.0 if body.repetition_penalty is None else body.repetition_penalty,
            logit_bias=_logit_bias(body.logit_bias),
            min_tokens=min(body.min_tokens or 0, tokens),
            ignore_eos=bool(body.ignore_eos),
            logprobs=logprobs,
            prompt_logprobs=logprobs if echo else None,
            echo=echo,
            structured=structured,
        )
    except ValueError as exc:
        raise BadRequestError(str(exc)) from exc


def _logit_bias(bias: dict[str, float] | None) -> tuple[tuple[int, float], ...]:
    """OpenAI's ``{"token id": bias}`` as (id, bias) pairs."""
    pairs = []
    for key, value in (bias or {}).items():
        if not key.isdigit():
            raise BadRequestError(f"logit_bias key {key!r} is not a token id", param="logit_bias")
        pairs.append((int(key), float(value)))
    return tuple(pairs)


def usage(prompt_tokens: int, completion_tokens: int) -> Usage:
    return Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
    )


def charge(request: Request, tokens: int) -> None:
    """Charge finished work to the caller's token budget (rate limits)."""
    limiter = request.app.state.limiter
    if limiter.enabled:
        limiter.charge(rate_key(request), tokens)


def rate_key(request: Request) -> str:
    """Rate limits are per API key, or per client address when keys are off."""
    key = getattr(request.state, "api_key", None)
    if key:
        return f"key:{key}"
    return f"ip:{request.client.host if request.client else '-'}"


def finish_reason(reason: str | None) -> str | None:
    # "abort" only reaches a client that is already gone; OpenAI has no such value.
    return "stop" if reason == "abort" else reason


async def execute_all(
    request: Request, model: str, requests: list[GenerationRequest], ctx: RequestContext, deadline: float
) -> list[Any]:
    """Run every request (one per prompt) concurrently; disconnect or deadline cancels them all."""
    dispatch: Dispatch = request.app.state.dispatch
    work = asyncio.gather(*(dispatch.execute(model, r, ctx) for r in requests))
    return list(await run_guarded(request, work, deadline))


@dataclass
class StreamState:
    """Per-stream bookkeeping for usage: prompt tokens per source, completion tokens per choice.

    ``prompt_total`` and ``completion_total`` are kept current as pieces are added. A route makes
    its state with :func:`stream_state`, which publishes it as ``request.state.stream_usage``: the
    observability middleware reads the totals as each chunk leaves (its tokens are the growth of
    ``completion_total``), so it never parses the events, and a merged event counts every token.
    """

    prompt_tokens: dict[int, int] = field(default_factory=dict)
    completion_tokens: dict[tuple[int, int], int] = field(default_factory=dict)
    prompt_total: int = 0
    completion_total: int = 0

    def add(self, source: int, piece: StreamDelta) -> None:
        """Count a piece (its token counts are cumulative for its source and choice)."""
        self.prompt_total += piece.prompt_tokens - self.prompt_tokens.get(source, 0)
        self.prompt_tokens[source] = piece.prompt_tokens
        choice = (source, piece.index)
        self.completion_total += piece.completion_tokens - self.completion_tokens.get(choice, 0)
        self.completion_tokens[choice] = piece.completion_tokens

    def usage(self) -> Usage:
        return usage(self.prompt_total, self.completion_total)


def stream_state(request: Request) -> StreamState:
    """A new stream's usage bookkeeping, published as ``request.state.stream_usage``."""
    state = StreamState()
    request.state.stream_usage = state
    return state


async def open_stream(
    request: Request, model: str, requests: list[GenerationRequest], ctx: RequestContext, deadline: float
) -> tuple[Pump, tuple[int, StreamDelta] | None]:
    """Start the streams and wait for the first piece, so admission errors get a real status."""
    dispatch: Dispatch = request.app.state.dispatch
    pump = Pump([dispatch.stream(model, r, ctx) for r in requests], deadline)
    try:
        first = await run_guarded(request, pump.next(), deadline)
    except BaseException:
        pump.close()
        raise
    return pump, first


async def pieces(
    pump: Pump, first: tuple[int, StreamDelta] | None
) -> AsyncIterator[list[tuple[int, StreamDelta]]]:
    """Every piece, in batches of what is ready at once (so they leave in one write), starting with
    the one already read; the pump is closed however this ends.

    A batch holds at most one piece per source and choice: when the client fell behind, the pieces
    that queued up for a choice are merged into one (:func:`~blaze_ai.engines.deltas.coalesce`).
    """
    try:
        item = first
        while item is not None:
            ready = pump.ready()
            yield coalesce([item, *ready]) if ready else [item]
            item = await pump.next()
    finally:
        pump.close()


def created() -> int:
    return int(time.time())

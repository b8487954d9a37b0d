"""A replica on another server that speaks the OpenAI HTTP API (another Blaze server, vLLM, ...).

Requests become OpenAI bodies: chat messages go to ``/v1/chat/completions``, prompts and token
ids to ``/v1/completions`` (streams as server-sent events), images to
``/v1/images/generations``, embeddings to ``/v1/embeddings``. httpx errors and HTTP statuses are
translated into :mod:`blaze_ai.errors` where they enter.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from blaze_ai.engines.requests import (
    Completion,
    DetokenizeRequest,
    DetokenizeResult,
    EmbeddingRequest,
    EmbeddingResult,
    FinishReason,
    GenerationRequest,
    GenerationResult,
    ImageRequest,
    ImageResult,
    StreamDelta,
    StructuredOutput,
    TokenizeRequest,
    TokenizeResult,
    TokenizerInfo,
    TokenizerInfoRequest,
    TokenLogprob,
)
from blaze_ai.errors import (
    AuthenticationError,
    BadRequestError,
    BlazeError,
    ContextLengthError,
    EngineFailureError,
    NotFoundError,
    OverloadedError,
    PayloadTooLargeError,
    PermissionDeniedError,
    TimedOutError,
    UnavailableError,
)

BLAZE_HEALTH_PATH = "/health/ready"
OPENAI_HEALTH_PATH = "/v1/models"
_STATUS_ERRORS: dict[int, type[BlazeError]] = {
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    408: TimedOutError,
    413: PayloadTooLargeError,
    504: TimedOutError,
}


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("retry-after", "1")))
    except ValueError:
        return 1.0


def error_for_response(response: httpx.Response) -> BlazeError:
    """The Blaze error for an HTTP error response (OpenAI-shaped body or not)."""
    status = response.status_code
    message, code = f"replica answered HTTP {status}", None
    try:
        body = response.json()
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict):
            message, code = str(err.get("message") or message), err.get("code")
        elif isinstance(body, dict) and "detail" in body:
            message = str(body["detail"])
    except ValueError:
        pass
    if status == 429:
        return OverloadedError(message, retry_after=_retry_after(response))
    if status == 503:
        return UnavailableError(message, retry_after=_retry_after(response))
    if status in _STATUS_ERRORS:
        return _STATUS_ERRORS[status](message)
    if status == 400 and code == "context_length_exceeded":
        return ContextLengthError(message)
    if 400 <= status < 500:
        return BadRequestError(message)
    return EngineFailureError(message)


def error_for_exception(exc: httpx.HTTPError, url: str) -> BlazeError:
    """The Blaze error for a transport failure (the caller raises it ``from exc``)."""
    if isinstance(exc, httpx.ConnectTimeout | httpx.ConnectError | httpx.RemoteProtocolError):
        return UnavailableError(f"replica {url} unreachable: {type(exc).__name__}")
    if isinstance(exc, httpx.TimeoutException):
        return TimedOutError(f"replica {url} timed out: {type(exc).__name__}")
    if isinstance(exc, httpx.TransportError):
        return UnavailableError(f"replica {url} connection failed: {type(exc).__name__}")
    return EngineFailureError(f"replica {url} request failed: {type(exc).__name__}")


def _finish(reason: object) -> FinishReason:
    return "length" if reason == "length" else "stop"


def generation_body(request: GenerationRequest, model: str, *, stream: bool) -> tuple[str, dict[str, Any]]:
    """The path and OpenAI body for a generation request (Blaze extras named as vLLM names them).

    Chat requests with ``tools`` send them with ``tool_choice: "none"``: the replica renders them
    into the prompt and returns the raw text (under the forwarded grammar), which the front parses.
    """
    p = request.params
    body: dict[str, Any] = {"model": model, "max_tokens": p.max_tokens, "temperature": p.temperature}
    body.update(top_p=p.top_p, n=p.n, stream=stream)
    optional: dict[str, Any] = {
        "stop": list(p.stop) or None,
        "seed": p.seed,
        "top_k": p.top_k or None,
        "min_p": p.min_p or None,
        "frequency_penalty": p.frequency_penalty or None,
        "presence_penalty": p.presence_penalty or None,
        "repetition_penalty": None if p.repetition_penalty == 1.0 else p.repetition_penalty,
        "logit_bias": {str(t): b for t, b in p.logit_bias} or None,
        "min_tokens": p.min_tokens or None,
        "ignore_eos": p.ignore_eos or None,
        "stop_token_ids": list(p.stop_token_ids) or None,
        "structured_outputs": _structured_body(p.structured),
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    if stream:
        body["stream_options"] = {"include_usage": True}
    if request.messages is not None:
        if p.logprobs is not None:
            body.update(logprobs=True, top_logprobs=p.logprobs)
        if request.tools:
            body.update(tools=request.tools, tool_choice="none")
        return "/v1/chat/completions", {**body, "messages": request.messages}
    if p.logprobs is not None:
        body["logprobs"] = p.logprobs
    if p.echo:
        body["echo"] = True
    prompt = request.prompt if request.prompt is not None else request.prompt_token_ids
    return "/v1/completions", {**body, "prompt": prompt}


def _structured_body(spec: StructuredOutput | None) -> dict[str, Any] | None:
    if spec is None:
        return None
    value: Any = json.loads(spec.spec) if spec.kind in ("json", "choice") else spec.spec
    return {spec.kind: value}


def parse_generation(data: dict[str, Any], request: GenerationRequest) -> GenerationResult:
    usage = data.get("usage") or {}
    prompt_tokens = int(usage.get("prompt_tokens", 0))
    choices = []
    for choice in data.get("choices", []):
        message = choice.get("message")
        text = (message or {}).get("content") if message is not None else choice.get("text")
        reason = _finish(choice.get("finish_reason"))
        completion = Completion(int(choice.get("index", 0)), text or "", [], reason)
        completion.logprobs = parse_logprobs(choice.get("logprobs"), request)
        if request.params.echo and message is None:
            _split_echo(completion, request, prompt_tokens)
        choices.append(completion)
    return GenerationResult(
        request_id=request.request_id,
        choices=sorted(choices, key=lambda c: c.index),
        prompt_tokens=prompt_tokens,
        completion_tokens=int(usage.get("completion_tokens", 0)),
    )


def parse_logprobs(data: Any, request: GenerationRequest) -> list[TokenLogprob] | None:
    """Token log probabilities from a chat (``content``) or completions (parallel lists) object."""
    if not isinstance(data, dict):
        return None if request.params.logprobs is None else []
    if "content" in data:
        return [_chat_token(t) for t in data.get("content") or []]
    tokens = data.get("tokens") or []
    return [
        TokenLogprob(-1, str(token), list(str(token).encode()), logprob, _alternatives(top))
        for token, logprob, top in zip(
            tokens,
            data.get("token_logprobs") or [],
            data.get("top_logprobs") or [None] * len(tokens),
            strict=False,
        )
    ]


def _split_echo(choice: Completion, request: GenerationRequest, prompt_tokens: int) -> None:
    """With echo, move the prompt's text and tokens (the first ``prompt_tokens``) to the prompt fields."""
    if choice.logprobs is not None and len(choice.logprobs) >= prompt_tokens:
        prompt, choice.logprobs = choice.logprobs[:prompt_tokens], choice.logprobs[prompt_tokens:]
        choice.prompt_logprobs = prompt if request.params.prompt_logprobs is not None else None
        prompt_text = bytes(b for t in prompt for b in t.bytes).decode("utf-8", errors="replace")
    else:
        prompt_text = request.prompt or ""
    if choice.text.startswith(prompt_text):
        choice.prompt_text, choice.text = prompt_text, choice.text[len(prompt_text) :]


def _chat_token(data: dict[str, Any]) -> TokenLogprob:
    top = [_chat_token({**t, "top_logprobs": []}) for t in data.get("top_logprobs") or []]
    raw = data.get("bytes")
    token = str(data.get("token", ""))
    return TokenLogprob(
        -1, token, list(raw) if raw is not None else list(token.encode()), data.get("logprob"), top
    )


def _alternatives(top: Any) -> list[TokenLogprob]:
    if not isinstance(top, dict):
        return []
    return [TokenLogprob(-1, str(t), list(str(t).encode()), float(lp)) for t, lp in top.items()]


class RemoteReplica:
    """A replica reached over HTTP; ``health_path`` is ``/health/ready`` for Blaze servers."""

    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        name: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        health_path: str = OPENAI_HEALTH_PATH,
        weight: float = 1.0,
        max_connections: int = 256,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("RemoteReplica timeout must be positive (seconds)")
        self.base_url = base_url.rstrip("/")
        self.name = name or self.base_url
        self.model = model
        self.weight = weight
        self.health_path = health_path
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def probe(self) -> bool:
        try:
            response = await self._client.get(self.health_path)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self._client.post(path, json=body)
        except httpx.HTTPError as exc:
            raise error_for_exception(exc, self.base_url) from exc
        if response.status_code >= 400:
            raise error_for_response(response)
        try:
            data = response.json()
        except ValueError as exc:
            raise EngineFailureError(f"replica {self.base_url} sent invalid JSON") from exc
        if not isinstance(data, dict):
            raise EngineFailureError(f"replica {self.base_url} sent an unexpected body")
        return data

    async def execute(self, request: Any) -> Any:
        if isinstance(request, GenerationRequest):
            path, body = generation_body(request, self.model, stream=False)
            return parse_generation(await self._post(path, body), request)
        if isinstance(request, ImageRequest):
            return await self._images(request)
        if isinstance(request, EmbeddingRequest):
            return await self._embeddings(request)
        if isinstance(request, TokenizeRequest):
            return await self._tokenize(request)
        if isinstance(request, DetokenizeRequest):
            data = await self._post("/detokenize", {"model": self.model, "tokens": request.token_ids})
            return DetokenizeResult(str(data.get("prompt", "")))
        if isinstance(request, TokenizerInfoRequest):
            return await self._tokenizer_info()
        raise BadRequestError(f"a remote replica cannot run {type(request).__name__}")

    async def _tokenizer_info(self) -> TokenizerInfo:
        """vLLM's ``GET /tokenizer_info`` (Blaze serves the same shape)."""
        try:
            response = await self._client.get("/tokenizer_info", params={"model": self.model})
        except httpx.HTTPError as exc:
            raise error_for_exception(exc, self.base_url) from exc
        if response.status_code >= 400:
            raise error_for_response(response)
        data = response.json()
        return TokenizerInfo(
            str(data.get("tokenizer_class", "")),
            data.get("eos_token"),
            data.get("bos_token"),
            data.get("pad_token"),
            data.get("chat_template"),
            int(data.get("model_max_length") or data.get("max_model_len") or 0),
        )

    async def _tokenize(self, request: TokenizeRequest) -> TokenizeResult:
        """vLLM's ``POST /tokenize`` (Blaze serves the same shape)."""
        body: dict[str, Any] = {"model": self.model, "return_token_strs": True}
        if request.messages is not None:
            body.update(messages=request.messages, add_generation_prompt=request.add_generation_prompt)
            if request.tools:
                body["tools"] = request.tools
        else:
            body.update(prompt=request.prompt, add_special_tokens=request.add_special_tokens)
        data = await self._post("/tokenize", body)
        ids = [int(t) for t in data.get("tokens", [])]
        strs = data.get("token_strs") or [""] * len(ids)
        return TokenizeResult(ids, [str(t) for t in strs], int(data.get("max_model_len", 0)))

    async def _images(self, request: ImageRequest) -> ImageResult:
        body: dict[str, Any] = {"model": self.model, "prompt": request.prompt, "n": request.n}
        body["response_format"] = "b64_json"
        if request.width and request.height:
            body["size"] = f"{request.width}x{request.height}"
        extras: dict[str, object] = {"negative_prompt": request.negative_prompt, "steps": request.steps}
        extras.update(guidance=request.guidance, scheduler=request.scheduler, seed=request.seed)
        body.update({k: v for k, v in extras.items() if v is not None})  # Blaze extensions
        data = await self._post("/v1/images/generations", body)
        images = [base64.b64decode(item["b64_json"]) for item in data.get("data", [])]
        width, height = _png_size(images[0]) if images else (request.width or 0, request.height or 0)
        seed = request.seed if request.seed is not None else 0
        seeds = [seed + i for i in range(len(images))]
        return ImageResult(request.request_id, images, seeds, width, height)

    async def _embeddings(self, request: EmbeddingRequest) -> EmbeddingResult:
        body: dict[str, Any] = {"model": self.model, "input": request.inputs, "encoding_format": "float"}
        if request.dimensions is not None:
            body["dimensions"] = request.dimensions
        data = await self._post("/v1/embeddings", body)
        rows = sorted(data.get("data", []), key=lambda row: int(row.get("index", 0)))
        usage = data.get("usage") or {}
        vectors = [[float(x) for x in row["embedding"]] for row in rows]
        return EmbeddingResult(request.request_id, vectors, int(usage.get("prompt_tokens", 0)))

    async def stream(self, request: Any) -> AsyncIterator[StreamDelta]:
        """Stream a generation; closing this generator closes the HTTP response (aborts remotely)."""
        if not isinstance(request, GenerationRequest):
            raise BadRequestError(f"only generations stream, not {type(request).__name__}")
        path, body = generation_body(request, self.model, stream=True)
        try:
            async with self._client.stream("POST", path, json=body) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise error_for_response(response)
                async for delta in _sse_deltas(response, self.base_url, request):
                    yield delta
        except httpx.HTTPError as exc:
            raise error_for_exception(exc, self.base_url) from exc


async def _sse_deltas(
    response: httpx.Response, url: str, request: GenerationRequest
) -> AsyncIterator[StreamDelta]:
    """Turn OpenAI SSE chunks into deltas; last deltas wait for the usage chunk to carry counts."""
    counts: dict[int, int] = {}
    finished: list[StreamDelta] = []
    usage: dict[str, Any] = {}
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            break
        try:
            chunk = json.loads(payload)
        except ValueError as exc:
            raise EngineFailureError(f"replica {url} sent a malformed stream event") from exc
        if chunk.get("error"):
            raise EngineFailureError(str(chunk["error"].get("message", "replica stream failed")))
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or []:
            index = int(choice.get("index", 0))
            delta = choice.get("delta")
            text = (delta.get("content") if delta is not None else choice.get("text")) or ""
            reason = choice.get("finish_reason")
            logprobs = parse_logprobs(choice.get("logprobs"), request) if choice.get("logprobs") else None
            if not text and reason is None and not logprobs:
                continue  # the role-only first chunk of a chat stream
            counts[index] = counts.get(index, 0) + (len(logprobs) if logprobs else 1 if text else 0)
            item = StreamDelta(
                index, text, [], _finish(reason) if reason else None, 0, counts[index], logprobs
            )
            if reason is None:
                yield item
            else:
                finished.append(item)
    if finished and "completion_tokens" in usage:
        # Counting chunks undercounts a chunk that carries several tokens (a replica merges what
        # queued up for a slow reader); the usage total is exact, so the last choice takes the rest.
        finished[-1].completion_tokens += int(usage["completion_tokens"]) - sum(
            item.completion_tokens for item in finished
        )
    for item in finished:
        item.prompt_tokens = int(usage.get("prompt_tokens", 0))
        yield item


def _png_size(png: bytes) -> tuple[int, int]:
    if png[:8] != b"\x89PNG\r\n\x1a\n" or len(png) < 24:
        return 0, 0
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")

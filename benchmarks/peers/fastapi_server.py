"""Plain FastAPI peer: ``model.generate`` once per request (batch 1), in a worker thread.

python benchmarks/peers/fastapi_server.py --model builtin:tiny-llama --port 8101
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

sys.path.insert(0, str(Path(__file__).parent))
from common import DONE, Generator, completion, sse


def build(gen: Generator) -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        body = await request.json()
        model, prompt, max_tokens = body["model"], body["prompt"], int(body.get("max_tokens") or 16)
        if body.get("stream"):
            return StreamingResponse(_events(gen, model, prompt, max_tokens), media_type="text/event-stream")
        [out] = await asyncio.to_thread(gen.generate, [prompt], max_tokens)
        return JSONResponse(completion(model, out))

    return app


async def _events(gen: Generator, model: str, prompt: str, max_tokens: int) -> AsyncIterator[bytes]:
    steps: Iterator[list[str | None]] = gen.stream([prompt], max_tokens)
    tokens = 0
    while (step := await asyncio.to_thread(next, steps, None)) is not None:
        if step[0] is None:
            break
        tokens += 1
        yield sse(model, step[0])
    yield sse(model, "", "stop" if tokens < max_tokens else "length")
    yield sse(model, tokens=tokens)
    yield DONE


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="builtin:tiny-llama")
    parser.add_argument("--port", type=int, default=8101)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--max-batch-size", type=int, default=1, help="ignored: one request per generate")
    args = parser.parse_args()
    uvicorn.run(
        build(Generator(args.model, args.dtype)), host="127.0.0.1", port=args.port, log_level="warning"
    )


if __name__ == "__main__":
    main()

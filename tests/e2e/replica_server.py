"""A tiny OpenAI-compatible replica for ``benchmarks/router_overhead.py`` (fault tests use ``blaze serve``).

Run: ``python tests/e2e/replica_server.py --port 9001 --name r1 [--fail half] [--delay 0.01]``.
It echoes the prompt prefixed with its name (so a test can see who answered), streams word by
word, and can be told to fail at start (``--fail``) or at run time (``POST /admin/fail
{"mode": "half"}``): ``none``, ``half`` (every second request answers 500) or ``all``.
Binds 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse


def create_app(name: str, fail: str = "none", delay_s: float = 0.0) -> FastAPI:
    app = FastAPI()
    state = {"mode": fail, "count": 0}

    def should_fail() -> bool:
        state["count"] = int(state["count"]) + 1
        return state["mode"] == "all" or (state["mode"] == "half" and int(state["count"]) % 2 == 0)

    def failure() -> JSONResponse:
        body = {"error": {"message": f"{name} failed on purpose", "type": "server_error", "code": "boom"}}
        return JSONResponse(body, status_code=500)

    @app.get("/health/ready")
    @app.get("/health/live")
    async def health() -> dict[str, str]:
        return {"status": "ready", "name": name}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "echo", "object": "model", "owned_by": name}]}

    @app.post("/admin/fail")
    async def set_fail(request: Request) -> dict[str, str]:
        state["mode"] = str((await request.json()).get("mode", "none"))
        return {"mode": str(state["mode"])}

    async def generate(request: Request, chat: bool) -> Response:
        body = await request.json()
        if should_fail():
            return failure()
        if delay_s:
            await asyncio.sleep(delay_s)
        prompt = body["messages"][-1]["content"] if chat else str(body.get("prompt", ""))
        words = [f"{name}:", *prompt.split()[: int(body.get("max_tokens", 16))]]
        if body.get("stream"):
            return StreamingResponse(sse(words, chat, len(prompt.split())), media_type="text/event-stream")
        usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(words)}
        text = " ".join(words)
        choice: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
        choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
        kind = "chat.completion" if chat else "text_completion"
        return JSONResponse({"id": "x", "object": kind, "created": int(time.time()), "model": "echo",
                             "choices": [choice], "usage": usage})  # fmt: skip

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        return await generate(request, chat=True)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await generate(request, chat=False)

    return app


async def sse(words: list[str], chat: bool, prompt_tokens: int) -> AsyncIterator[str]:
    for i, word in enumerate(words):
        text = word if i == 0 else " " + word
        last = i == len(words) - 1
        choice: dict[str, Any] = {"index": 0, "finish_reason": "stop" if last else None}
        choice.update({"delta": {"content": text}} if chat else {"text": text})
        yield f"data: {json.dumps({'choices': [choice]})}\n\n"
        await asyncio.sleep(0.001)
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(words)}
    yield f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n"
    yield "data: [DONE]\n\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="replica")
    parser.add_argument("--fail", choices=["none", "half", "all"], default="none")
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    app = create_app(args.name, args.fail, args.delay)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()

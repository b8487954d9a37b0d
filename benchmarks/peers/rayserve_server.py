"""Ray Serve peer: a FastAPI ingress whose requests are grouped by ``@serve.batch`` into one ``generate``.

    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 python benchmarks/peers/rayserve_server.py --port 8102

A streamed batch yields one list per generate step; a row that ended yields ``StopIteration``.
"""

# No `from __future__ import annotations`: Ray Serve's ingress needs real annotations on the routes.
import argparse
import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

sys.path.insert(0, str(Path(__file__).parent))
from common import DONE, Generator, Output, completion, sse

app = FastAPI()


def deployment(model: str, dtype: str, batch: int) -> Any:
    from ray import serve

    @serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=4 * batch)
    @serve.ingress(app)
    class Peer:
        def __init__(self) -> None:
            self.gen = Generator(model, dtype)

        @app.get("/health")
        async def health(self) -> dict[str, str]:
            return {"status": "ok"}

        @app.post("/v1/completions")
        async def completions(self, request: Request) -> Any:
            body = await request.json()
            name, prompt, tokens = body["model"], body["prompt"], int(body.get("max_tokens") or 16)
            if body.get("stream"):
                return StreamingResponse(self._events(name, prompt, tokens), media_type="text/event-stream")
            out: Output = await self.whole(prompt, tokens)
            return JSONResponse(completion(name, out))

        async def _events(self, name: str, prompt: str, max_tokens: int) -> AsyncIterator[bytes]:
            count = 0
            async for delta in self.streamed(prompt, max_tokens):
                count += 1
                yield sse(name, delta)
            yield sse(name, "", "stop" if count < max_tokens else "length")
            yield sse(name, tokens=count)
            yield DONE

        @serve.batch(max_batch_size=batch, batch_wait_timeout_s=0.01)
        async def whole(self, prompts: list[str], max_tokens: list[int]) -> list[Output]:
            return await asyncio.to_thread(self.gen.generate, prompts, max(max_tokens))

        @serve.batch(max_batch_size=batch, batch_wait_timeout_s=0.01)
        async def streamed(self, prompts: list[str], max_tokens: list[int]) -> AsyncIterator[list[Any]]:
            steps = self.gen.stream(prompts, max(max_tokens))
            while (step := await asyncio.to_thread(next, steps, None)) is not None:
                yield [StopIteration if d is None else d for d in step]

    return Peer.bind()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="builtin:tiny-llama")
    parser.add_argument("--port", type=int, default=8102)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--max-batch-size", type=int, default=64)
    args = parser.parse_args()
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray
    from ray import serve

    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1")
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    serve.run(deployment(args.model, args.dtype, args.max_batch_size), route_prefix="/", blocking=False)
    while True:  # the process group is killed by the benchmark
        time.sleep(3600)


if __name__ == "__main__":
    main()

"""LitServe peer: one streaming LitAPI with batching; each batch is one ``generate`` run step by step.

    python benchmarks/peers/litserve_server.py --model builtin:tiny-llama --port 8103

A LitAPI streams or not for all its requests, so this one always streams from the worker:
a streamed request gets SSE events per step, a whole one gets its JSON body at the end.
"""

# No `from __future__ import annotations`: LitServe reads decode_request's annotation at run time.

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import litserve as ls

sys.path.insert(0, str(Path(__file__).parent))
from common import DONE, Generator, Output, completion, sse

FINAL = object()  # marks the step after generation ended


@dataclass
class Job:
    model: str
    prompt: str
    max_tokens: int
    stream: bool
    text: list[str] = field(default_factory=list)
    tokens: int = 0
    ended: bool = False


class CompletionAPI(ls.LitAPI):
    def __init__(self, model: str, dtype: str, batch: int) -> None:
        super().__init__(max_batch_size=batch, batch_timeout=0.01, stream=True, api_path="/v1/completions")
        self.source, self.dtype = model, dtype

    def setup(self, device: str) -> None:
        self.gen = Generator(self.source, self.dtype)

    def decode_request(self, request: dict) -> "Job":  # type: ignore[type-arg]
        return Job(request["model"], request["prompt"], int(request.get("max_tokens") or 16),
                   bool(request.get("stream")))  # fmt: skip

    def batch(self, inputs: list[Job]) -> list[Job]:
        return inputs

    def predict(self, jobs: list[Job]) -> Iterator[list[tuple[Job, Any]]]:
        for step in self.gen.stream([j.prompt for j in jobs], max(j.max_tokens for j in jobs)):
            yield list(zip(jobs, step, strict=True))
        yield [(j, FINAL) for j in jobs]

    def unbatch(self, output: Any) -> Any:
        yield from output  # LitServe requires generators for streaming

    def encode_response(self, steps):  # type: ignore[no-untyped-def]  # LitServe reads return annotations
        for step in steps:
            yield [self._encode(job, delta) for job, delta in step]

    def _encode(self, job: Job, delta: Any) -> str:
        if delta is FINAL:
            if not job.stream:
                out = Output(
                    "".join(job.text), job.tokens, 0, "length" if job.tokens >= job.max_tokens else "stop"
                )
                return json.dumps(completion(job.model, out))
            finish = sse(job.model, "", "length" if job.tokens >= job.max_tokens else "stop")
            return (finish + sse(job.model, tokens=job.tokens) + DONE).decode()
        if delta is None or job.ended or job.tokens >= job.max_tokens:
            job.ended = True
            return ""
        job.tokens += 1
        job.text.append(delta)
        return sse(job.model, delta).decode() if job.stream else ""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="builtin:tiny-llama")
    parser.add_argument("--port", type=int, default=8103)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--max-batch-size", type=int, default=64)
    args = parser.parse_args()
    api = CompletionAPI(args.model, args.dtype, args.max_batch_size)
    server = ls.LitServer(api, accelerator="cpu", devices=1, timeout=900)
    server.run(host="127.0.0.1", port=args.port, log_level="warning", generate_client_file=False)


if __name__ == "__main__":
    main()

"""Streaming overhead: event-loop CPU per streamed token, from the engine thread to the socket.

Run: ``.venv/bin/python benchmarks/stream_overhead.py [--streams 64] [--tokens 512] [--rate 20000]``
(``--rate 0``: as fast as the engine thread can make steps). Targets 127.0.0.1 only.

1) The model is replaced by a synthetic ``EngineCore`` (this file's :class:`SyntheticCore`): each
   step gives every running choice one token (a word, its id, cumulative counts), paced so that all
   streams together get ``--rate`` tokens/s. Everything else is the real code: ``LLMEngine``'s step
   thread and its hand-over to the event loop, the ``EngineManager``, the router, the
   chat/completions routes and their SSE formatting, the middleware (observability included) and
   uvicorn (uvloop and httptools when installed, as ``blaze serve``), in this process.
2) A client process opens ``--streams`` concurrent streaming requests (``Connection: close``), reads
   raw bytes while they stream and only afterwards parses the events, checking that each choice's
   text is exactly the words made for it and that ``usage`` counts every token.
3) The event loop's CPU time (``clock_gettime`` on the loop thread's CPU clock) and the engine
   thread's are read around each round. Reported: loop µs per token over the whole round (request
   set-up included) and the number of SSE content events per token the client saw (1.0 means no
   coalescing).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

#: The synthetic model's vocabulary: token i of a choice is WORDS[i % len(WORDS)].
WORDS = [" the", " quick", " brown", " fox", " jumps", " over", " a", " lazy", " dog", ",", " and", " é"]


def expected_text(tokens: int) -> str:
    return "".join(WORDS[i % len(WORDS)] for i in range(tokens))


# -- the server side ---------------------------------------------------------------------------


class SyntheticLoaded:
    """What ``load_model`` returns, without weights; carries the pacing rate to the core."""

    name = "synthetic"
    max_context = 1 << 20

    def __init__(self, rate: float) -> None:
        self.rate = rate

    def memory_bytes(self) -> int:
        return 0

    def kv_cache_bytes(self, tokens: int) -> int:
        return 0


class SyntheticCore:
    """``EngineCore``'s surface for ``LLMEngine`` with no model: a step is one token per running choice."""

    def __init__(self, loaded: SyntheticLoaded, config: Any) -> None:
        from blaze_ai.engines.llm.sequence import CoreStats

        self.loaded = loaded
        self.config = config
        self.max_context = loaded.max_context
        self.stats = CoreStats()
        self.scheduler = SimpleNamespace(running=0, running_rows=0, waiting=0, tokens_in_flight=0)
        self.grammars = SimpleNamespace(is_compiled=lambda spec: True)
        self._lock = threading.Lock()
        self._new: list[Any] = []
        self._aborted: set[str] = set()
        self._running: dict[str, list[int]] = {}  # id -> [choices, max_tokens, generated, open choices]
        self._next_step = 0.0

    warm_up_report: dict[str, Any] = {}

    def warm_up(self) -> None:
        pass

    calibrate = warm_up  # the name before the engine's warm-up existed (for before/after runs)

    def has_work(self) -> bool:
        return bool(self._running or self._new or self._aborted)

    def add_request(self, request: Any) -> None:
        with self._lock:
            self._new.append(request)

    def abort(self, request_id: str) -> None:
        with self._lock:
            self._aborted.add(request_id)

    def fail_all(self, error: Exception) -> list[Any]:
        from blaze_ai.engines.llm.sequence import StepOutput

        with self._lock:
            ids = [*self._running, *(r.request_id for r in self._new)]
            self._running.clear()
            self._new.clear()
        return [StepOutput(i, error=error, finished=True) for i in ids]  # type: ignore[arg-type]

    def step(self) -> list[Any]:
        from blaze_ai.engines.llm.sequence import StepOutput
        from blaze_ai.engines.requests import FinishReason, StreamDelta

        # 1) admit and abort
        with self._lock:
            for request in self._new:
                n = request.params.n
                self._running[request.request_id] = [n, request.params.max_tokens, 0, n]
            self._new.clear()
            for request_id in self._aborted:
                self._running.pop(request_id, None)
            self._aborted.clear()
        # 2) "run the model": wait for this step's turn at the configured rate
        rows = sum(state[0] for state in self._running.values())
        if self.loaded.rate > 0:
            now = time.monotonic()
            self._next_step = max(self._next_step, now - 0.01) + rows / self.loaded.rate
            if self._next_step > now:
                time.sleep(self._next_step - now)
        # 3) one token per running choice
        outputs = []
        for request_id, state in list(self._running.items()):
            choices, max_tokens, generated, _ = state
            state[2] = generated = generated + 1
            finish: FinishReason | None = "length" if generated >= max_tokens else None
            text = WORDS[(generated - 1) % len(WORDS)]
            for index in range(choices):
                delta = StreamDelta(index, text, [generated], finish, 8, generated)
                done = finish is not None and index == choices - 1
                outputs.append(StepOutput(request_id, delta=delta, finished=done))
            if finish is not None:
                del self._running[request_id]
        self.stats.steps += 1
        self.stats.generated_tokens += rows
        self.scheduler.running = len(self._running)
        return outputs


def install_synthetic_model(rate: float) -> None:
    """Make ``LLMEngine.start`` build a :class:`SyntheticCore` instead of loading a model."""
    from blaze_ai.engines.llm import engine as llm_engine

    vars(llm_engine).update(
        load_model=lambda config, progress=None: SyntheticLoaded(rate), EngineCore=SyntheticCore
    )


def thread_cpu_s(ident: int) -> float:
    return time.clock_gettime(time.pthread_getcpuclockid(ident))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _engine_thread() -> threading.Thread:
    return next(t for t in threading.enumerate() if t.name.startswith("blaze-llm-"))


async def serve_and_measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    import uvicorn

    from blaze_ai.config import parse_config
    from blaze_ai.server import create_app

    install_synthetic_model(args.rate)
    config = parse_config(
        {
            "server": {"max_concurrency": 4096, "request_timeout_s": 600, "max_tokens_limit": 1 << 20},
            "cache": {"mode": "off"},
            "models": [
                {
                    "name": "bench",
                    "kind": "llm",
                    "llm": {"source": "builtin:tiny-llama", "max_batch_size": 1024},
                }
            ],
        }
    )
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(config), host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    serving = asyncio.create_task(server.serve())
    await _wait_ready(port)
    loop_ident, engine = threading.get_ident(), _engine_thread()
    rounds = []
    try:
        for _ in range(args.rounds):
            loop_cpu, engine_cpu, wall = (
                thread_cpu_s(loop_ident),
                thread_cpu_s(engine.ident or 0),
                time.monotonic(),
            )
            client = await _run_client(port, args)
            loop_cpu = thread_cpu_s(loop_ident) - loop_cpu
            engine_cpu = thread_cpu_s(engine.ident or 0) - engine_cpu
            wall = time.monotonic() - wall
            tokens = client["tokens"]
            rounds.append(
                {
                    "tokens": tokens,
                    "tokens_per_s": tokens / wall,
                    "loop_us_per_token": loop_cpu / tokens * 1e6,
                    "engine_us_per_token": engine_cpu / tokens * 1e6,
                    "events_per_token": client["events"] / tokens,
                    "loop_busy": loop_cpu / wall,
                }
            )
    finally:
        server.should_exit = True
        await serving
    return rounds


async def _wait_ready(port: int) -> None:
    for _ in range(200):
        await asyncio.sleep(0.05)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:  # not listening yet
            continue
        writer.write(b"GET /health/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status = await reader.readline()
        writer.close()
        if b" 200 " in status:
            return
    raise RuntimeError("the server never became ready")


async def _run_client(port: int, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, __file__, "--client", str(port), *sys.argv[1:]]
    process = await asyncio.create_subprocess_exec(*command, stdout=subprocess.PIPE)
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"the client failed ({process.returncode})")
    result: dict[str, Any] = json.loads(out)
    return result


# -- the client side (its own process) -------------------------------------------------------


def request_bytes(args: argparse.Namespace) -> bytes:
    common = {"model": "bench", "max_tokens": args.tokens, "n": args.n, "stream": True}
    common["stream_options"] = {"include_usage": True}
    if args.api == "chat":
        body = {**common, "messages": [{"role": "user", "content": "hi"}]}
        path = "/v1/chat/completions"
    else:
        body = {**common, "prompt": "hi"}
        path = "/v1/completions"
    data = json.dumps(body).encode()
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    head += f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    return head.encode() + data


async def one_stream(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    chunks = []
    while chunk := await reader.read(1 << 16):
        chunks.append(chunk)
    writer.close()
    return b"".join(chunks)


def check_stream(raw: bytes, args: argparse.Namespace) -> tuple[int, int]:
    """(tokens, content events) of one response; raises if its text or usage is wrong."""
    head, _, body = raw.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head.decode(errors="replace"))
    data = _dechunk(body)
    texts: dict[int, list[str]] = {}
    events = 0
    usage = None
    for line in data.split(b"\n\n"):
        if not line.startswith(b"data: {"):
            continue
        chunk = json.loads(line[6:])
        usage = chunk.get("usage") or usage
        for choice in chunk["choices"]:
            text = choice["delta"].get("content") if args.api == "chat" else choice["text"]
            if text:
                texts.setdefault(choice["index"], []).append(text)
                events += 1
    want = expected_text(args.tokens)
    if len(texts) != args.n or any("".join(t) != want for t in texts.values()):
        raise RuntimeError("a stream's text is not the words the engine made")
    if usage is None or usage["completion_tokens"] != args.tokens * args.n:
        raise RuntimeError(f"usage is wrong: {usage}")
    return usage["completion_tokens"], events


def _dechunk(body: bytes) -> bytes:
    out: list[bytes] = []
    at = 0
    while True:
        line_end = body.index(b"\r\n", at)
        size = int(body[at:line_end], 16)
        if size == 0:
            return b"".join(out)
        out.append(body[line_end + 2 : line_end + 2 + size])
        at = line_end + 2 + size + 2


async def client(port: int, args: argparse.Namespace) -> None:
    request = request_bytes(args)
    raws = await asyncio.gather(*(one_stream(port, request) for _ in range(args.streams)))
    counts = [check_stream(raw, args) for raw in raws]
    print(json.dumps({"tokens": sum(c[0] for c in counts), "events": sum(c[1] for c in counts)}))


# -- main ----------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=64, help="concurrent streams per round")
    parser.add_argument("--tokens", type=int, default=512, help="tokens per choice")
    parser.add_argument("--n", type=int, default=1, help="choices per request")
    parser.add_argument("--rate", type=float, default=20000, help="tokens/s over all streams; 0: unpaced")
    parser.add_argument("--api", choices=["chat", "completions"], default="chat")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="also write the rounds here")
    parser.add_argument("--client", type=int, help=argparse.SUPPRESS)  # the client process's port
    return parser.parse_args()


def _run(main: Callable[[], Any]) -> Any:
    """Run ``main()`` on uvloop when installed, as uvicorn (and so ``blaze serve``) would."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main())
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())


def main() -> None:
    args = parse_args()
    if args.client is not None:
        _run(lambda: client(args.client, args))
        return
    rounds = _run(lambda: serve_and_measure(args))
    print(
        f"{args.streams} streams x {args.tokens} tokens x n={args.n}, {args.api}, rate {args.rate:g} tokens/s"
    )
    print("round  tokens/s  loop us/token  engine us/token  events/token  loop busy")
    for i, r in enumerate(rounds, 1):
        print(
            f"{i:>5}  {r['tokens_per_s']:>8.0f}  {r['loop_us_per_token']:>13.2f}  "
            f"{r['engine_us_per_token']:>15.2f}  {r['events_per_token']:>12.3f}  {r['loop_busy']:>9.0%}"
        )
    median = statistics.median(r["loop_us_per_token"] for r in rounds)
    print(f"median loop CPU per token: {median:.2f} us   (load average {os.getloadavg()[0]:.2f})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rounds": rounds}, f, indent=1)


if __name__ == "__main__":
    main()

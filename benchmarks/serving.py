"""Serving benchmark: the same model behind Blaze, LitServe, Ray Serve, FastAPI and vLLM, one load each.

Each server runs as its own process group on 127.0.0.1; ``blaze_ai.loadgen`` (the code behind
``blaze bench``) sends the same seeded prompt mix to each, whole and streamed; the RSS of each
server's process tree is sampled. Blaze is also compared with the in-process raw batched
KV-cache loop of ``benchmarks/llm_throughput.py`` at the same batch size. Usage::

    python benchmarks/serving.py --model builtin:tiny-llama --json serving.json
    python benchmarks/serving.py --model builtin:smollm2-135m --servers blaze,litserve
    python benchmarks/serving.py --quick
    python benchmarks/serving.py --servers blaze-bf16,vllm-bf16,blaze-fp32,vllm-fp32

A server name may end in ``-bf16`` or ``-fp32`` to pick its dtype (otherwise ``--dtype``); each peer
is compared with the Blaze row of its own dtype where one ran. Peers run from separate venvs
(``--peers-python``, default ``.venv-peers/bin/python``; vLLM's CPU build from ``--vllm-python``,
default ``.venv-vllm/bin/python``; see docs/benchmarks.md) and are skipped when theirs is missing.
Goals at 64 clients: Blaze >= 2x the best peer's tokens/s with a p99 TTFT no worse than the best
peer's; Blaze >= 85 % of the raw batched loop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from blaze_ai.loadgen import LoadConfig, format_table, prompts, run_load

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SERVED = "bench"  # the model name every server answers to
PEERS = {"litserve": "litserve_server.py", "rayserve": "rayserve_server.py", "fastapi": "fastapi_server.py"}
VLLM = "vllm"
#: vLLM's CPU KV cache, GiB (vLLM reads it from the environment only).
VLLM_ENV = {"VLLM_CPU_KVCACHE_SPACE": "4", "VLLM_NO_USAGE_STATS": "1"}
#: Server-name suffixes that pick a dtype: ``vllm-bf16``, ``blaze-fp32``.
DTYPES = {"bf16": "bfloat16", "fp32": "float32"}
BLAZE_YAML = """
server: {{host: 127.0.0.1, max_concurrency: 1024, request_timeout_s: 900}}
cache: {{mode: "off"}}  # greedy requests are cacheable: a benchmark must measure the model, not the cache
models:
  - name: bench
    kind: llm
    llm: {{source: "{source}", device: cpu, dtype: {dtype}, max_batch_size: {batch},
          max_tokens_in_flight: 65536, max_queued_requests: 1024, {extra}}}
"""
#: Blaze's own rows and the LLM options they set: the defaults; the compiled decode step (minutes
#: of compiling at start, the same numbers); the CPU int8 option, which changes the numbers the model
#: computes and so is never one of the compared peers.
BLAZE_VARIANTS = {
    "blaze": "quantization: none",
    "blaze-compiled": "compile: true",
    "blaze-int8": "quantization: int8-dynamic",
}
KINDS = (*BLAZE_VARIANTS, *PEERS, VLLM)
#: The Blaze rows set against each peer (int8 computes other numbers, so it is no like-for-like row).
COMPARED = ("blaze", "blaze-compiled")


def split_name(name: str) -> tuple[str, str | None]:
    """(kind, dtype) of a server name: ``vllm-bf16`` -> ("vllm", "bfloat16"), ``vllm`` -> ("vllm", None)."""
    kind, _, suffix = name.rpartition("-")
    return (kind, DTYPES[suffix]) if kind and suffix in DTYPES else (name, None)


def dtype_of(name: str, default: str) -> str:
    """The dtype server ``name`` runs in: its suffix's, else ``default`` (``--dtype``)."""
    return split_name(name)[1] or default


def reference_blaze(names: list[str]) -> str | None:
    """The Blaze row other rows are compared with: the first plain (not int8) Blaze server."""
    return next((n for n in names if split_name(n)[0] == "blaze"), None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _descendants(root: int) -> set[int]:
    """``root`` and every process below it, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo.extend(children.get(pid, []))
    return found


def _rss_mb(pids: set[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return total * os.sysconf("SC_PAGE_SIZE") / 2**20


class Server:
    """One server process group: started, sampled for memory, stopped as a whole."""

    def __init__(self, name: str, command: list[str], port: int, ready_path: str, log: Path,
                 env: dict[str, str] | None = None) -> None:  # fmt: skip
        self.name, self.command, self.port, self.ready_path, self.log = name, command, port, ready_path, log
        self.env = env or {}
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.peak_mb = 0.0
        self._sampling = threading.Event()

    def start(self, timeout_s: float) -> None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
               "PYTHONPATH": str(ROOT / "src"), **self.env}  # fmt: skip
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                self.command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        threading.Thread(target=self._sample, daemon=True).start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log.read_text(errors='replace')[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + self.ready_path, timeout=2).status_code == 200:
                    return
            time.sleep(0.5)
        raise RuntimeError(f"{self.name} not ready in {timeout_s}s:\n{self.log.read_text()[-3000:]}")

    def _sample(self) -> None:
        assert self.process is not None
        while self.process.poll() is None and not self._sampling.is_set():
            self.peak_mb = max(self.peak_mb, _rss_mb(_descendants(self.process.pid)))
            time.sleep(0.25)

    def stop(self) -> None:
        """SIGTERM the group, SIGKILL it and any leftover descendant after a grace period."""
        self._sampling.set()
        if self.process is None or self.process.poll() is not None:
            return
        tree = _descendants(self.process.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        for pid in tree - {self.process.pid}:  # anything that left the group (e.g. Ray daemons)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def interpreter(name: str, args: argparse.Namespace) -> str:
    """The Python that runs server ``name``: Blaze's own, the peers' venv or vLLM's venv."""
    kind = split_name(name)[0]
    if kind in BLAZE_VARIANTS:
        return sys.executable
    return str(args.vllm_python if kind == VLLM else args.peers_python)


def make_server(name: str, args: argparse.Namespace, workdir: Path) -> Server:
    """The (not yet started) server of row ``name``, in that row's dtype, on a free port."""
    kind, dtype = split_name(name)[0], dtype_of(name, args.dtype)
    port = _free_port()
    log = workdir / f"{name}.log"
    python = interpreter(name, args)
    if kind in BLAZE_VARIANTS:
        config = workdir / f"{name}.yaml"
        config.write_text(BLAZE_YAML.format(source=args.model, dtype=dtype, batch=args.concurrency,
                                            extra=BLAZE_VARIANTS[kind]))  # fmt: skip
        command = [python, "-m", "blaze_ai.cli", "serve", "--config", str(config), "--port", str(port)]
        return Server(name, command, port, "/health/ready", log)
    if kind == VLLM:
        model = vllm_model(args.model, workdir)
        command = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", model,
                   "--served-model-name", SERVED, "--dtype", dtype, "--max-num-seqs", str(args.concurrency),
                   "--max-model-len", "2048", "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
        return Server(name, command, port, "/health", log, VLLM_ENV)
    script = str(HERE / "peers" / PEERS[kind])
    command = [python, script, "--model", args.model, "--port", str(port),
               "--max-batch-size", str(args.concurrency), "--dtype", dtype]  # fmt: skip
    return Server(name, command, port, "/health", log)


def vllm_model(source: str, workdir: Path) -> str:
    """The folder vLLM loads: Blaze's own for ``source``, or a copy without a GGUF ``quantization_config``.

    Blaze's SmolLM2 is converted from GGUF to plain safetensors, but its config.json still names the
    GGUF file, which would make vLLM look for GGUF weights. The copy links the same weight files, so
    vLLM serves the weights Blaze serves; only config.json is rewritten. A hub id is passed through.
    """
    from blaze_ai.engines.llm.builtins import is_builtin, materialize

    folder = materialize(source) if is_builtin(source) else Path(source).expanduser()
    if not (folder / "config.json").is_file():
        return source
    config = json.loads((folder / "config.json").read_text())
    if (config.get("quantization_config") or {}).get("quant_method") != "gguf":
        return str(folder)
    del config["quantization_config"]
    copy = workdir / "vllm-model"
    if not copy.is_dir():  # made once per run, shared by every vLLM row and round
        copy.mkdir()
        for item in folder.iterdir():
            if item.name != "config.json":
                (copy / item.name).symlink_to(item.resolve())
        (copy / "config.json").write_text(json.dumps(config, indent=2))
    return str(copy)


def bench_server(name: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Start one server, warm it up, run each mode's load, stop it; the rows for the table."""
    python = interpreter(name, args)
    if not Path(python).is_file():
        reason = f"no {python}; docs/benchmarks.md says how to create that venv"
        print(f"  {name}: skipped, {reason}", file=sys.stderr, flush=True)
        return {"skipped": reason}
    server = make_server(name, args, workdir)
    rows: dict[str, Any] = {}
    try:
        server.start(args.start_timeout)
        warm = LoadConfig(url=server.url, model=SERVED, requests=4, concurrency=4, max_tokens=4, seed=99)
        asyncio.run(run_load(warm))
        for mode in args.modes:
            load = LoadConfig(
                url=server.url, model=SERVED, requests=args.requests, concurrency=args.concurrency,
                max_tokens=args.max_tokens, stream=mode == "stream", seed=args.seed, timeout_s=args.timeout,
            )  # fmt: skip
            result = asyncio.run(run_load(load)).as_dict()
            result["peak_rss_mb"] = round(server.peak_mb, 1)
            result["loadavg_1m"] = round(os.getloadavg()[0], 2)  # the machine is shared: keep the context
            if split_name(name)[0] in BLAZE_VARIANTS:
                result["engine"] = _engine_stats(server.url)
            rows[mode] = result
            print(f"  {name}/{mode}: {result['tokens_per_s']:,.1f} tokens/s, {result['errors']} errors",
                  file=sys.stderr, flush=True)  # fmt: skip
    except RuntimeError as exc:
        print(f"  {name}: FAILED {exc}", file=sys.stderr, flush=True)
        rows["failed"] = str(exc)[:2000]
    finally:
        server.stop()
    return rows


def _engine_stats(url: str) -> dict[str, Any]:
    """Blaze's own counters (steps, tokens): generated tokens per step is the mean decode batch."""
    with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
        stats = httpx.get(f"{url}/admin/engines", timeout=10).json()["engines"][SERVED]["stats"]
        keys = ("steps", "prefill_passes", "generated_tokens", "prompt_tokens", "finished_requests",
                "ttft_avg_s")  # fmt: skip
        return {k: stats[k] for k in keys}
    return {}


def raw_batched(args: argparse.Namespace, dtype: str) -> float:
    """Tokens/s of llm_throughput's raw batched loop over the same prompts, ``concurrency`` rows."""
    sys.path.insert(0, str(HERE))
    import llm_throughput  # the raw loop is reused, not copied
    from blaze_ai.engines.llm import LLMConfig, load_model

    loaded = load_model(LLMConfig(source=args.model, device="cpu", dtype=dtype))
    tok = loaded.tokenizer
    batch = [list(tok(p)["input_ids"]) for p in prompts(args.concurrency, args.seed)]
    llm_throughput.in_thread(llm_throughput.raw_loop, loaded, batch[:4], 4)  # warm-up
    return llm_throughput.in_thread(llm_throughput.raw_loop, loaded, batch, args.max_tokens)


def keep_best(servers: dict[str, Any], name: str, rows: dict[str, Any]) -> None:
    """Keep, per mode, the run with the most tokens/s."""
    mine = servers.setdefault(name, {})
    for mode, row in rows.items():
        # "failed" and "skipped" hold a message, not a row
        if isinstance(row, str) or mode not in mine or row["tokens_per_s"] > mine[mode]["tokens_per_s"]:
            mine[mode] = row


def _ratio(blaze: dict[str, Any], peer: dict[str, Any], mode: str, key: str) -> float | None:
    """``blaze[mode][key] / peer[mode][key]``, rounded; None where either is missing."""
    b, p = blaze.get(mode, {}).get(key), peer.get(mode, {}).get(key)
    return round(b / p, 2) if b is not None and p else None


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    """The reference Blaze row / best peer (tokens/s, p99 TTFT) per mode, and / the raw loop."""
    out: dict[str, Any] = {}
    servers = results["servers"]
    blaze = servers.get(reference_blaze(list(servers)) or "", {})
    int8: dict[str, Any] = next((r for n, r in servers.items() if split_name(n)[0] == "blaze-int8"), {})
    for mode in ("whole", "stream"):
        if mode not in blaze:
            continue
        peers = {n: r for n, r in servers.items() if split_name(n)[0] not in BLAZE_VARIANTS and mode in r}
        if peers:
            best = max(peers, key=lambda n: peers[n][mode]["tokens_per_s"])
            out[f"{mode}_best_peer"] = best
            out[f"{mode}_blaze_over_best_peer"] = _ratio(blaze, peers[best], mode, "tokens_per_s")
            ttft = _ratio(blaze, peers[best], mode, "ttft_p99_s")
            if ttft is not None:
                out[f"{mode}_ttft_p99_blaze_over_best_peer"] = ttft
            if mode in int8:
                out[f"{mode}_blaze_int8_over_best_peer"] = _ratio(int8, peers[best], mode, "tokens_per_s")
        if results.get("raw_tokens_per_s"):
            out[f"{mode}_blaze_over_raw"] = round(
                blaze[mode]["tokens_per_s"] / results["raw_tokens_per_s"], 2
            )
    return out


def per_peer(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Blaze / each peer: tokens/s whole and streamed, streamed TTFT p99.

    Each peer is set against the Blaze rows of its own dtype (plain and compiled) where they ran,
    else the reference row.
    """
    servers, default = results["servers"], results["dtype"]
    out: list[dict[str, Any]] = []
    for name, peer in servers.items():
        if split_name(name)[0] in BLAZE_VARIANTS or not ("whole" in peer or "stream" in peer):
            continue
        dtype = dtype_of(name, default)
        own = [n for n in servers if split_name(n)[0] in COMPARED and dtype_of(n, default) == dtype]
        reference = reference_blaze(list(servers))
        for blaze in own or ([reference] if reference else []):
            rows = servers[blaze]
            out.append({
                "peer": name,
                "blaze": blaze,
                "whole_tokens_per_s": _ratio(rows, peer, "whole", "tokens_per_s"),
                "stream_tokens_per_s": _ratio(rows, peer, "stream", "tokens_per_s"),
                "stream_ttft_p99": _ratio(rows, peer, "stream", "ttft_p99_s"),
            })  # fmt: skip
    return out


def per_peer_table(table: list[dict[str, Any]]) -> list[str]:
    """The markdown lines of ``per_peer``'s ratios (empty when no peer ran)."""
    if not table:
        return []
    lines = ["### Blaze / each peer (tokens/s above 1 and TTFT below 1 favour Blaze)", "",
             "| peer | Blaze row | tokens/s whole | tokens/s streamed | TTFT p99 streamed |",
             "|---|---|---:|---:|---:|"]  # fmt: skip
    for r in table:
        keys = ("whole_tokens_per_s", "stream_tokens_per_s", "stream_ttft_p99")
        cells = ["-" if r[k] is None else f"{r[k]:.2f}x" for k in keys]
        lines.append(f"| {r['peer']} | {r['blaze']} | {' | '.join(cells)} |")
    return [*lines, ""]


def report(results: dict[str, Any]) -> str:
    lines = []
    for mode in results["modes"]:
        rows = [(n, r[mode]) for n, r in results["servers"].items() if mode in r]
        lines += [f"### {mode}", "", format_table(rows), ""]
    lines += per_peer_table(results["per_peer"])
    if results.get("raw_tokens_per_s"):
        raw = f"{results['raw_tokens_per_s']:,.1f} tokens/s"
        batch = f"{results['concurrency']} rows, {results['raw_dtype']}"
        lines.append(f"raw batched loop (in process, {batch}, no EOS): {raw}")
    lines += [f"- {k}: **{v}**" for k, v in results["ratios"].items()]
    failed = [n for n, r in results["servers"].items() if "failed" in r]
    lines += [f"- {n} FAILED: {results['servers'][n]['failed'][:300]}" for n in failed]
    skipped = [(n, r["skipped"]) for n, r in results["servers"].items() if "skipped" in r]
    lines += [f"- {n} skipped: {reason}" for n, reason in skipped]
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="builtin:smollm2-135m")
    parser.add_argument("--dtype", default="float32", help="dtype of servers without a -bf16/-fp32 suffix")
    parser.add_argument(
        "--servers",
        default="blaze,litserve,rayserve,fastapi",
        help="blaze, blaze-compiled (compile: true), blaze-int8 (int8-dynamic weights), litserve, rayserve, "
        "fastapi, vllm; each may end in -bf16 or -fp32 (e.g. blaze-bf16,vllm-bf16)",
    )
    parser.add_argument("--modes", default="whole,stream", help="whole, stream or both")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=300.0, help="bound on each load run, seconds")
    parser.add_argument(
        "--start-timeout",
        type=float,
        default=600.0,
        help="bound on each server start (vLLM-CPU: ~110 s on 2 cores)",
    )
    parser.add_argument("--peers-python", default=str(ROOT / ".venv-peers" / "bin" / "python"))
    parser.add_argument("--vllm-python", default=str(ROOT / ".venv-vllm" / "bin" / "python"))
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds, best of (%(default)s)")
    parser.add_argument("--no-raw", action="store_true", help="skip the in-process raw batched loop")
    parser.add_argument("--json", default=None, metavar="PATH")
    parser.add_argument("--quick", action="store_true", help="tiny model, 32 requests, 16 clients, 16 tokens")
    args = parser.parse_args()
    if args.quick:
        args.model, args.requests, args.concurrency = "builtin:tiny-llama", 32, 16
        args.max_tokens, args.timeout = 16, 120.0
    args.servers, args.modes = args.servers.split(","), args.modes.split(",")
    unknown = [n for n in args.servers if split_name(n)[0] not in KINDS]
    if unknown:
        parser.error(f"unknown server(s) {unknown}; use {', '.join(KINDS)}, optionally ending in -bf16/-fp32")
    return args


def main() -> None:
    args = parse_args()
    load = os.getloadavg()
    results: dict[str, Any] = {
        "model": args.model, "dtype": args.dtype, "requests": args.requests, "concurrency": args.concurrency,
        "max_tokens": args.max_tokens, "seed": args.seed, "modes": args.modes, "rounds": args.rounds,
        "loadavg_start": [round(x, 2) for x in load], "servers": {},
    }  # fmt: skip
    reference = reference_blaze(args.servers)
    with tempfile.TemporaryDirectory(prefix="blaze-serving-") as tmp:
        # Rounds interleave the servers so that a noisy neighbour hurts each alike; each keeps its best.
        for _ in range(args.rounds):
            for name in args.servers:
                keep_best(results["servers"], name, bench_server(name, args, Path(tmp)))
                if name == reference and not args.no_raw:  # right after Blaze, under the same machine load
                    results["raw_dtype"] = dtype_of(name, args.dtype)
                    raw = round(raw_batched(args, results["raw_dtype"]), 2)
                    results["raw_tokens_per_s"] = max(raw, results.get("raw_tokens_per_s", 0.0))
    results["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    results["ratios"] = ratios(results)
    results["per_peer"] = per_peer(results)
    end = results["loadavg_end"][0]
    print(f"# model {args.model} ({args.dtype}), {args.requests} requests, {args.concurrency} clients, "
          f"{args.max_tokens} tokens, load average {load[0]:.1f} -> {end:.1f}")  # fmt: skip
    print(report(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

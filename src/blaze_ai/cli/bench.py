"""``blaze bench``: load a running server's ``/v1/completions`` and print tokens/s, req/s, TTFT, latency."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any


def add_parser(subparsers: Any) -> None:
    """Register ``bench [--url U] [--model M] [--requests N] [--concurrency C] [--max-tokens T] ...``."""
    parser = subparsers.add_parser("bench", help="load a running server and print throughput and latency")
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="server base URL (%(default)s)")
    parser.add_argument("--model", default="smollm2-135m", help="served model name (%(default)s)")
    parser.add_argument("--requests", type=int, default=200, help="requests in all (%(default)s)")
    parser.add_argument("--concurrency", type=int, default=64, help="concurrent clients (%(default)s)")
    parser.add_argument("--max-tokens", type=int, default=64, help="new tokens per request (%(default)s)")
    parser.add_argument("--stream", action="store_true", help="stream (SSE) and measure time to first token")
    parser.add_argument("--api-key", default=None, help="bearer key, when the server requires one")
    parser.add_argument("--seed", type=int, default=0, help="seed of the prompt mix (%(default)s)")
    parser.add_argument("--timeout", type=float, default=600.0, help="bound on the whole run, seconds")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the load with a progress bar, print the table; 1 if any request failed."""
    from tqdm import tqdm

    from blaze_ai.loadgen import LoadConfig, format_table, run_load

    try:
        config = LoadConfig(
            url=args.url,
            model=args.model,
            requests=args.requests,
            concurrency=args.concurrency,
            max_tokens=args.max_tokens,
            stream=args.stream,
            api_key=args.api_key,
            seed=args.seed,
            timeout_s=args.timeout,
        )
    except ValueError as exc:
        print(f"blaze bench: error: {exc}")
        return 2
    with tqdm(total=config.requests, unit="req", desc="bench") as bar:
        report = asyncio.run(run_load(config, on_done=lambda ok: bar.update(1)))
    results = report.as_dict()
    mode = "streamed" if config.stream else "whole"
    print(
        f"{config.url} model {config.model}: {config.requests} requests, {config.concurrency} clients, "
        f"{config.max_tokens} tokens each, {mode}"
    )
    print(format_table([(config.model, results)]))
    if report.first_error:
        print(f"first error: {report.first_error}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            settings = {k: v for k, v in vars(config).items() if k != "api_key"}  # never write keys
            json.dump({"config": settings, "results": results}, out, indent=2)
    return 1 if report.errors else 0

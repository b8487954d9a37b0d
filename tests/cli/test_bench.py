"""``blaze bench`` against a real ``blaze serve`` process (tiny model) on a free loopback port."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from blaze_ai.cli import main

CONFIG = """
server: {host: 127.0.0.1}
models:
  - name: tiny
    kind: llm
    llm: {source: "builtin:tiny-llama", device: cpu, max_batch_size: 8}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, gateway: Any) -> Iterator[str]:
    """``blaze serve`` with the tiny model for this module."""
    with gateway(CONFIG, tmp_path_factory.mktemp("bench")) as process:
        yield process.base_url


def _bench(url: str, *extra: str) -> list[str]:
    return ["bench", "--url", url, "--model", "tiny", "--requests", "6", "--concurrency", "3", *extra]


@pytest.mark.e2e
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_bench_prints_a_table_of_a_real_run(
    server: str, stream: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    args = _bench(server, "--max-tokens", "8", "--json", str(out), *(["--stream"] if stream else []))
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| tiny |" in printed and "tokens/s" in printed and "TTFT p99" in printed
    results = json.loads(out.read_text())["results"]
    assert results["requests_ok"] == 6 and results["errors"] == 0
    assert 0 < results["completion_tokens"] <= 6 * 8
    assert (results["ttft_p50_s"] is not None) == stream
    assert results["e2e_p50_s"] <= results["e2e_p99_s"]


@pytest.mark.e2e
def test_bench_counts_errors_and_exits_1_for_an_unknown_model(
    server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["bench", "--url", server, "--model", "nope", "--requests", "2", "--concurrency", "2"]
    assert main(args) == 1
    printed = capsys.readouterr().out
    assert "| nope |" in printed and "first error: StatusError: HTTP 404" in printed

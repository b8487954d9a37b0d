"""End-to-end fixtures: the real ``blaze serve`` process on a free loopback port, always stopped by group.

(``--import-mode=importlib`` means test modules here cannot import a helper module, hence fixtures.)
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

TINY_LLM = """
server:
  host: 127.0.0.1
  api_keys: [{api_key}]
  admin_keys: [{admin_key}]
models:
  - name: tiny
    kind: llm
    llm: {{source: "builtin:tiny-llama", max_batch_size: 2, max_queued_requests: 2}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """``python -m blaze_ai.cli serve --config FILE --port P`` with its output in a log file."""

    def __init__(self, config_text: str, workdir: Path) -> None:
        self.config = workdir / "blaze.yaml"
        self.config.write_text(config_text)
        self.log_path = workdir / "server.log"
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, ready_timeout_s: float = 180.0) -> None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, "-m", "blaze_ai.cli", "serve", "--config", str(self.config)]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [*command, "--port", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own process group, killed as a whole
            )
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/health/ready", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"server not ready in {ready_timeout_s}s:\n{self.log()}")

    def terminate(self) -> None:
        """Send SIGTERM (the graceful drain)."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGTERM)

    def wait(self, timeout_s: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout_s)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL of the whole group if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""


@contextlib.contextmanager
def running(config_text: str, workdir: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(config_text, workdir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


Running = Callable[[str, Path], contextlib.AbstractContextManager[ServerProcess]]


@pytest.fixture(scope="session")
def gateway() -> Running:
    """``with gateway(config_yaml, workdir) as server:`` runs ``blaze serve`` for the block."""
    return running


@pytest.fixture(scope="session")
def tiny_llm_yaml() -> Callable[[str, str], str]:
    """A config serving ``builtin:tiny-llama`` as ``tiny`` with the given API and admin key."""
    return lambda api_key, admin_key: TINY_LLM.format(api_key=api_key, admin_key=admin_key)

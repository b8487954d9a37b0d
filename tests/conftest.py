"""Suite-wide settings (no model hub, ever) and the real ``blaze serve`` process fixtures.

``gateway`` and ``blaze_servers`` start ``python -m blaze_ai.cli serve`` on a free loopback port
in its own process group and always stop it by group. (``--import-mode=importlib`` means test
modules cannot import a helper module, hence fixtures.)
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
from typing import Any

import httpx

# Imported early on purpose: on Python 3.11.7 the hypothesis plugin's end-of-run
# summary crashes ("AST constructor recursion depth mismatch") when hypothesis is
# first imported late in a run with failures.
import hypothesis  # noqa: F401
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """``python -m blaze_ai.cli serve --config FILE --port P`` with its output in a log file."""

    def __init__(
        self, config_text: str, workdir: Path, *, port: int | None = None, ready_path: str = "/health/ready"
    ) -> None:
        """``ready_path`` is polled until it answers 200."""
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "blaze.yaml"
        self.config.write_text(config_text)
        self.log_path = workdir / "server.log"
        self.port = port if port is not None else free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.ready_path = ready_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, ready_timeout_s: float = 180.0) -> None:
        """Launch and wait until ready; a stopped or killed server starts again on the same port."""
        self.launch()
        self.wait_ready(ready_timeout_s)

    def launch(self) -> None:
        """Start the process without waiting (launch several, then ``wait_ready`` each)."""
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, "-m", "blaze_ai.cli", "serve", "--config", str(self.config)]
        with self.log_path.open("ab") as log:  # appends, so a restart keeps the earlier run's log
            self.process = subprocess.Popen(
                [*command, "--port", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own process group, killed as a whole
            )

    def wait_ready(self, ready_timeout_s: float = 180.0) -> None:
        assert self.process is not None
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}{self.ready_path}", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"server not ready in {ready_timeout_s}s:\n{self.log()}")

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the server's process group (SIGSTOP hangs it, SIGCONT resumes it)."""
        assert self.process is not None
        os.killpg(self.process.pid, sig)

    def kill(self) -> None:
        """SIGKILL the whole group at once (a crash; works on a stopped process too) and reap it."""
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

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
            os.killpg(self.process.pid, signal.SIGCONT)  # a stopped (SIGSTOP) server handles it too
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""


@contextlib.contextmanager
def running(config_text: str, workdir: Path, **options: Any) -> Iterator[ServerProcess]:
    """``blaze serve`` for the block; ``options`` go to :class:`ServerProcess` (``port``, ``ready_path``)."""
    server = ServerProcess(config_text, workdir, **options)
    try:
        server.start()
        yield server
    finally:
        server.stop()


Running = Callable[..., contextlib.AbstractContextManager[ServerProcess]]


@pytest.fixture(scope="session")
def gateway() -> Running:
    """``with gateway(config_yaml, workdir) as server:`` runs ``blaze serve`` for the block."""
    return running


MakeServer = Callable[..., ServerProcess]


@pytest.fixture
def blaze_servers(tmp_path: Path) -> Iterator[MakeServer]:
    """``blaze_servers(config_yaml, name, **options)`` launches ``blaze serve`` in ``tmp_path / name``.

    It returns the launched :class:`ServerProcess` (call ``wait_ready``); ``options`` are ``port``
    and ``ready_path``. Every server made is SIGKILLed by process group at teardown.
    """
    made: list[ServerProcess] = []

    def make(config_text: str, name: str, **options: Any) -> ServerProcess:
        server = ServerProcess(config_text, tmp_path / name, **options)
        made.append(server)
        server.launch()
        return server

    try:
        yield make
    finally:
        for server in made:
            server.kill()

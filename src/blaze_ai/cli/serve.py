"""``blaze serve``: run the OpenAI-compatible HTTP server on uvicorn.

SIGTERM or Ctrl-C drains: readiness turns 503, the listening socket closes,
in-flight requests finish (up to ``server.drain_grace_s``), engines stop, and
the process exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def add_parser(subparsers: Any) -> None:
    """Register ``serve [--config FILE] [--host H] [--port P] [--ray-address A]``."""
    parser = subparsers.add_parser("serve", help="run the OpenAI-compatible HTTP server")
    parser.add_argument("--config", type=Path, default=None, help="YAML config (default: the embedded one)")
    parser.add_argument("--host", default=None, help="listen address (overrides server.host)")
    parser.add_argument("--port", type=int, default=None, help="listen port (overrides server.port)")
    parser.add_argument(
        "--ray-address", default=None, help="Ray cluster for remote replicas (sets RAY_ADDRESS)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the config, build the app and serve until SIGTERM/SIGINT; 0 after a clean drain."""
    import uvicorn

    from blaze_ai.config import load_config
    from blaze_ai.server import create_app

    if args.ray_address:
        os.environ["RAY_ADDRESS"] = args.ray_address
    config = load_config(args.config)
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if overrides:
        config = dataclasses.replace(config, server=dataclasses.replace(config.server, **overrides))
    server_config = config.server
    _configure_logging(server_config.log_level, server_config.log_json)
    app = create_app(config)
    uvicorn_config = uvicorn.Config(
        app,
        host=server_config.host,
        port=server_config.port,
        timeout_graceful_shutdown=max(1, round(server_config.drain_grace_s)),
        log_config=None,  # keep our logging setup (and JSON logs)
        log_level=server_config.log_level,
        server_header=False,
    )
    server = DrainingServer(uvicorn_config, app.state)
    server.run()
    return 0 if server.started else 1


class DrainingServer:
    """uvicorn's Server, marking the app as draining on a signal, and not re-raising it on exit.

    uvicorn re-raises the captured signal after a graceful shutdown, which would
    end the process "killed by SIGTERM"; a completed drain exits 0 instead.
    """

    def __new__(cls, config: Any, app_state: Any) -> Any:
        import uvicorn

        class _Server(uvicorn.Server):
            def handle_exit(self, sig: int, frame: Any) -> None:
                app_state.draining = True
                super().handle_exit(sig, frame)

            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                if threading.current_thread() is not threading.main_thread():
                    yield
                    return
                original = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED_SIGNALS}
                try:
                    yield
                finally:
                    for sig, handler in original.items():
                        signal.signal(sig, handler)

        return _Server(config)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (never request bodies or keys)."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data)


def _configure_logging(level: str, as_json: bool) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root.setLevel(level.upper())
    if as_json:
        for handler in root.handlers:
            handler.setFormatter(JsonFormatter())

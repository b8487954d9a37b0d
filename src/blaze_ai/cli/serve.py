"""``blaze serve``: run the OpenAI-compatible HTTP server on uvicorn.

SIGTERM or Ctrl-C drains: readiness turns 503, the listening socket closes,
in-flight requests finish (up to ``server.drain_grace_s``), engines stop, and
the process exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn

log = logging.getLogger(__name__)

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def add_parser(subparsers: Any) -> None:
    """Register ``serve [--config FILE] [--host H] [--port P] [--ray-address A]``."""
    parser = subparsers.add_parser("serve", help="run the OpenAI-compatible HTTP server")
    parser.add_argument("--config", type=Path, default=None, help="YAML config (default: the embedded one)")
    parser.add_argument("--host", default=None, help="listen address (overrides server.host)")
    parser.add_argument("--port", type=int, default=None, help="listen port (overrides server.port)")
    parser.add_argument(
        "--ray-address",
        default=None,
        help="join this Ray cluster for models with ray: replicas (default: RAY_ADDRESS)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the config, build the app and serve until SIGTERM/SIGINT; 0 after a clean drain."""
    from blaze_ai.config import load_config
    from blaze_ai.observability import configure_logging
    from blaze_ai.server import create_app

    config = load_config(args.config)
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if overrides:
        config = dataclasses.replace(config, server=dataclasses.replace(config.server, **overrides))
    server_config = config.server
    log_level = args.log_level or server_config.log_level
    configure_logging(log_level, server_config.log_json)
    uses_ray = any(m.ray is not None for m in config.models)
    if uses_ray:
        from blaze_ai.distributed import connect

        connect(args.ray_address)  # None: RAY_ADDRESS, else a one-machine local cluster
    elif args.ray_address:
        log.warning("--ray-address given, but no model in the config has ray: replicas; ignoring it")
    try:
        app = create_app(config)
        uvicorn_config = uvicorn.Config(
            app,
            host=server_config.host,
            port=server_config.port,
            timeout_graceful_shutdown=max(1, round(server_config.drain_grace_s)),
            log_config=None,  # keep our logging setup (and JSON logs)
            log_level=log_level,
            access_log=False,  # blaze_ai.access lines carry the request id instead
            server_header=False,
        )
        server = DrainingServer(uvicorn_config, app.state)
        server.run()
    finally:
        if uses_ray:
            from blaze_ai.distributed import disconnect

            disconnect()
    return 0 if server.started else 1


class DrainingServer(uvicorn.Server):
    """uvicorn's Server, marking the app as draining on a signal, and not re-raising it on exit.

    uvicorn re-raises the captured signal after a graceful shutdown, which would
    end the process "killed by SIGTERM"; a completed drain exits 0 instead.
    """

    def __init__(self, config: uvicorn.Config, app_state: Any) -> None:
        super().__init__(config)
        self.app_state = app_state

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.app_state.draining = True
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

"""Structured logs: the request id on every line, JSON when ``server.log_json`` is set.

The observability middleware puts the request id in :data:`request_id_var`
for the life of each request; :class:`RequestIdFilter` copies it onto every
record (``-`` outside a request). Prompts and keys stay out of the logs: the
formatters drop ``extra`` fields named in :data:`SENSITIVE_FIELDS` unless
debug logging is on (``server.log_level: debug``), and Blaze AI code only
passes prompt text as such fields.

Usage (``blaze serve`` does this)::

    configure_logging(level="info", as_json=True)
"""

from __future__ import annotations

import contextvars
import datetime
import json
import logging
from typing import Any

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("blaze_request_id", default="-")

SENSITIVE_FIELDS = frozenset(
    {"prompt", "messages", "input", "body", "api_key", "authorization", "key", "text", "completion"}
)
# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message", "asctime", "request_id", "taskName",
}  # fmt: skip
_HANDLER_MARK = "_blaze_handler"


class RequestIdFilter(logging.Filter):
    """Stamps ``record.request_id`` from the current request's context."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


def _extras(record: logging.LogRecord, debug: bool) -> dict[str, Any]:
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in _STANDARD and (debug or key.lower() not in SENSITIVE_FIELDS)
    }


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, extras, exception."""

    def __init__(self, *, debug: bool = False) -> None:
        super().__init__()
        self.debug = debug

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", request_id_var.get()),
        }
        entry.update(_extras(record, self.debug))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time level logger [request id] message key=value...`` for people reading a terminal."""

    def __init__(self, *, debug: bool = False) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        self.debug = debug

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        line = super().format(record)
        extras = _extras(record, self.debug)
        return line + "".join(f" {k}={v}" for k, v in extras.items())


def configure_logging(level: str = "info", as_json: bool = False) -> logging.Handler:
    """Send every log line to stderr in the chosen format; idempotent (replaces its own handler)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            root.removeHandler(handler)
    debug = level.lower() == "debug"
    handler = logging.StreamHandler()
    setattr(handler, _HANDLER_MARK, True)
    handler.setFormatter(JsonFormatter(debug=debug) if as_json else TextFormatter(debug=debug))
    handler.addFilter(RequestIdFilter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler

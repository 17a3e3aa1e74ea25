"""Log output of the gateway: text for people, or one JSON object per line for a log stack.

JSON lines have stable keys: `ts` (UTC, ISO 8601 with milliseconds), `level`, `logger`,
`msg` (the formatted message), `exc` when an exception is logged, and every field a
caller passes with `extra=` (e.g. `extra={"event": "alert_rejected", "reason": "mac"}`).
A field whose name says it holds a credential is replaced by `[redacted]`: structured
fields are easy to pass whole, and a secret must never reach a log.
"""
from __future__ import annotations

import json
import logging
import re
import sys
import threading
from datetime import UTC, datetime
from typing import IO, Any

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REDACTED = "[redacted]"
_SECRET_KEY = re.compile(r"secret|password|passwd|token|authorization|cookie|api_?key", re.IGNORECASE)
# Attributes every LogRecord has; anything else on a record came in through `extra=`.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
_KEYS = ("ts", "level", "logger", "msg", "exc")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace(
                "+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        for key, value in record.__dict__.items():
            if key in _STANDARD or key.startswith("_") or key in _KEYS:
                continue
            out[key] = REDACTED if _SECRET_KEY.search(key) else value
        # default=str: a field that is not JSON (a Path, an exception) still logs, as text.
        return json.dumps(out, default=str, ensure_ascii=False)


def formatter(fmt: str) -> logging.Formatter:
    if fmt == "json":
        return JsonFormatter()
    if fmt == "text":
        return logging.Formatter(TEXT_FORMAT)
    raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")


def setup(fmt: str = "text", *, level: int = logging.INFO, stream: IO[str] | None = None) -> None:
    """One handler on the root logger, writing `fmt` lines to stderr (or `stream`).

    Python warnings and exceptions that end a thread go through it too, so a JSON log holds
    nothing but JSON lines. Called again (the config is read after the command line), it
    replaces the handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(fmt))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    threading.excepthook = log_thread_exception


def log_thread_exception(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger("panic.thread").error(
        "thread %s died", name, exc_info=args.exc_value,
        extra={"event": "thread_died", "thread_name": name})

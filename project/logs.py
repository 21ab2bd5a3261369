"""Log formats (readable text or one JSON object per line) and the context every line carries.

The context (a request id on the web, a job id in a worker child) lives in a ContextVar, so each
gunicorn thread and each job sees only its own. No Django imports: settings.py builds LOGGING
from here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any

LOG_FORMATS = ("text", "json")
# Keys a log call may pass in `extra=` that the formatters print (in this order in text).
CONTEXT_KEYS = ("request_id", "job_id")
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_context: ContextVar[dict[str, str]] = ContextVar("warden_log_context", default={})  # noqa: B039


def log_context() -> dict[str, str]:
    """Return the fields (request_id, job_id) bound to the current thread or task."""
    return _context.get()


def bind_context(**fields: str | None) -> Token[dict[str, str]]:
    """Add `fields` (None values skipped) to the current context; return the token that
    `unbind_context` takes to restore the previous one."""
    return _context.set({**_context.get(), **{k: str(v) for k, v in fields.items() if v}})


def unbind_context(token: Token[dict[str, str]]) -> None:
    """Restore the context as it was before the `bind_context` call that returned `token`."""
    _context.reset(token)


@contextmanager
def bound(**fields: str | None) -> Iterator[None]:
    """Bind `fields` to every log line emitted inside the block (None values are skipped)."""
    token = bind_context(**fields)
    try:
        yield
    finally:
        unbind_context(token)


class ContextFilter(logging.Filter):
    """Copy the bound context onto each record (explicit `extra=` values win)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {
        k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")
    }


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, every `extra` field, exc_info."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_extras(record))
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message`, then `[request_id=… job_id=…]` when a context is bound."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        context = " ".join(
            f"{key}={getattr(record, key)}" for key in CONTEXT_KEYS if getattr(record, key, None)
        )
        if not context:
            return text
        head, newline, rest = text.partition("\n")  # keep a traceback below the first line
        return f"{head} [{context}]{newline}{rest}"


def logging_config(*, fmt: str, level: str) -> dict[str, Any]:
    """Return the LOGGING dict for `fmt` ('text' or 'json'); raise ValueError for anything else."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"WARDEN_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {fmt!r}")
    formatter = "project.logs.JsonFormatter" if fmt == "json" else "project.logs.TextFormatter"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": "project.logs.ContextFilter"}},
        "formatters": {"warden": {"()": formatter}},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "warden",
                "filters": ["context"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
    }

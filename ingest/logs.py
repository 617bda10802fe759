"""Log lines as text or as JSON (SOHOA_LOG_FORMAT=json), each with the batch, page and dossier
it is about when there is one.

The pipeline says what it works on with `context(batch_id=…, page=…, dossier=…)`; every log
record made inside (by sohoa, Celery or a library) carries those as attributes, which the JSON
format writes as fields, so a log store can show everything that happened to one batch or one
dossier. Context variables follow threads and asyncio tasks without being passed along.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

FIELDS = ("batch_id", "page", "dossier")
_context: ContextVar[dict[str, Any]] = ContextVar("sohoa_log_context", default={})  # noqa: B039
TEXT_FORMAT = "[%(asctime)s: %(levelname)s/%(name)s] %(message)s"


@contextmanager
def context(**about: Any) -> Iterator[None]:
    """Log records made inside carry `about` (on top of the enclosing context's)."""
    token = _context.set({**_context.get(), **about})
    try:
        yield
    finally:
        _context.reset(token)


def current() -> dict[str, Any]:
    return dict(_context.get())


class ContextFilter(logging.Filter):
    """Puts the current context on each record (as `batch_id`, `page`, `dossier`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _context.get().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the context's
    fields when set, and the exception's text when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name,
            "message": record.getMessage()}
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def formatter(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)


def apply(handler: logging.Handler, fmt: str) -> None:
    """`handler` writes `fmt` lines ("text" or "json") with the context of each record."""
    handler.setFormatter(formatter(fmt))
    if not any(isinstance(f, ContextFilter) for f in handler.filters):
        handler.addFilter(ContextFilter())


def configure(fmt: str, level: int = logging.INFO) -> None:
    """The root logger writes `fmt` lines to stderr (sohoa serve, worker, ingest). Handlers
    set up before (Celery's) get the same format."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    for handler in root.handlers:
        apply(handler, fmt)
    root.setLevel(level)

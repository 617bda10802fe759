"""The one database of sohoa: one declarative `Base` (so one metadata) for every table, and one
engine per database URL in a process.

The tables themselves are in storage/tables.py; the stores on them (storage/catalog.py,
storage/audit.py, storage/leases.py, api/keys.py, api/web/users.py) each open the database with
`engine_for(url)` and so share one connection pool. storage/migrate.py brings a database to the
schema of this metadata.
"""

from __future__ import annotations

import os
import threading
import weakref
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import DeclarativeBase

# SQLite: every process of one machine writes into the same file; a writer waits this long for
# another's lock instead of failing (an audit append takes the lock for its whole transaction).
SQLITE_BUSY_SECONDS = 60
# Connections one process may open to a server database at once: kept open when idle, and more
# while busy (the API's request threads, a worker's page threads).
POOL_SIZE, POOL_OVERFLOW = 5, 40


class Base(DeclarativeBase):
    pass


_engines: weakref.WeakValueDictionary[tuple[str, tuple[int, int] | None], Engine] = \
    weakref.WeakValueDictionary()
_lock = threading.Lock()


def engine_for(url: str) -> Engine:
    """The engine of this database URL, shared by every store of this process that opens it (it
    lives as long as one of them holds it). Opening does not migrate: the stores call
    `storage.migrate.upgrade(url)` first.

    A SQLite file that was replaced meanwhile (deleted and made again, restored from a copy) gets
    an engine of its own: the pooled connections of the old one still write into the old file."""
    parsed = make_url(url)
    key = (url, _file_identity(parsed.database) if _is_sqlite_file(parsed) else None)
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = create_engine(url, future=True, **_options(parsed))
        return engine


def _is_sqlite_file(parsed: URL) -> bool:
    return (parsed.get_backend_name() == "sqlite" and bool(parsed.database)
            and parsed.database != ":memory:")


def _file_identity(path: str | None) -> tuple[int, int] | None:
    try:
        found = os.stat(path or "")
    except OSError:
        return None
    return found.st_dev, found.st_ino


def _options(parsed: URL) -> dict[str, Any]:
    if parsed.get_backend_name() != "sqlite":
        return {"pool_size": POOL_SIZE, "max_overflow": POOL_OVERFLOW}
    if not _is_sqlite_file(parsed):
        return {}  # one connection per thread (SQLAlchemy's default for an in-memory database)
    return {"connect_args": {"timeout": SQLITE_BUSY_SECONDS}, "pool_size": POOL_SIZE,
            "max_overflow": POOL_OVERFLOW}


def aware(at: datetime) -> datetime:
    """A stored time with its zone: SQLite gives back naive datetimes, and everything stored is
    UTC."""
    return at if at.tzinfo else at.replace(tzinfo=UTC)

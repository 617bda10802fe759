"""Schema migrations (Alembic): every database sohoa opens is brought to the current schema.

The index tables (storage/catalog.py) could be rebuilt from object storage, but API keys and the
audit log live only in the database, so their schema changes must migrate data, not drop it.
Every table is in storage/tables.py, on one metadata. New migration:
`SOHOA_DATABASE_URL=... .venv/bin/alembic -c storage/migrations/alembic.ini revision --autogenerate
-m ...`, the URL naming a database at the current head (storage/migrations/env.py reads it).
"""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Connection, make_url

from storage.tables import METADATA

if TYPE_CHECKING:
    from alembic.config import Config

# The newest revision under migrations/versions (tests/test_migrate.py checks it against Alembic):
# a database already there is opened without loading Alembic (a quarter of a second per process).
HEAD = "0010"

_PG_LOCK_KEY = 0x50_48_4F_41  # "SOHOA"-ish; any constant all sohoa processes share

HERE = Path(__file__).resolve().parent / "migrations"
_done: set[str] = set()
_lock = threading.Lock()


def config(url: str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str) -> None:
    """Once per process and database: bring it to the head revision (see _upgrade)."""
    with _lock:
        if url in _done:
            return
        with _across_processes(url):
            _upgrade(url)
        _done.add(url)


@contextmanager
def _across_processes(url: str) -> Iterator[None]:
    """Serve one migrator at a time: a worker and the CLI starting together on a fresh database
    would otherwise both create the tables and one would fail with "table already exists"."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            yield
            return
        lock_path = Path(parsed.database + ".migrate-lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with lock_path.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    elif parsed.get_backend_name() == "postgresql":
        engine = create_engine(url)
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _PG_LOCK_KEY})
                try:
                    yield
                finally:
                    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _PG_LOCK_KEY})
        finally:
            engine.dispose()
    else:
        yield


def _upgrade(url: str) -> None:
    engine = create_engine(url)
    try:
        tables = set(inspect(engine).get_table_names())
        if "alembic_version" in tables:
            with engine.connect() as connection:
                current = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
            if current == HEAD:
                return
        elif not tables:
            # A new database: the current schema at once, stamped at HEAD (Alembic's own advice
            # for building a database from scratch; tests/test_migrate.py checks that it equals
            # the migrations' schema).
            with engine.begin() as connection:
                _ddl_in_transaction(connection)
                _create_current_tables(connection)
                connection.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) "
                                        "NOT NULL, CONSTRAINT alembic_version_pkc PRIMARY KEY "
                                        "(version_num))"))
                connection.execute(text("INSERT INTO alembic_version VALUES (:v)"), {"v": HEAD})
            return
        elif "dossiers" in tables:
            # Made before migrations existed: the tables it lacks, then stamped as the head
            # revision, whose schema it then has.
            with engine.begin() as connection:
                _ddl_in_transaction(connection)
                _create_current_tables(connection)
            _alembic("stamp", url)
            return
    finally:
        engine.dispose()
    _alembic("upgrade", url)


def _ddl_in_transaction(connection: Connection) -> None:
    """SQLite's driver starts no transaction for a CREATE: each of a new catalog's ~30 statements
    was a transaction of its own, the file synced after each (0.05 s of every command on a new
    data directory). One transaction instead, so the schema is also made whole or not at all.
    PostgreSQL's DDL is in the transaction already."""
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN")


def _create_current_tables(connection: Connection) -> None:
    METADATA.create_all(connection)  # only the missing ones


def _alembic(verb: str, url: str) -> None:
    from alembic import command

    getattr(command, verb)(config(url), "head")


def head() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(config("sqlite://")).get_current_head() or ""

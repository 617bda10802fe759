"""A fresh PostgreSQL database per use on the machine's server (127.0.0.1:5432, trust auth),
dropped afterwards even while connections remain: the catalog tests run on it for real."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


@contextmanager
def fresh_postgres() -> Iterator[str]:
    """The SQLAlchemy URL of a new, empty database, dropped on exit."""
    name = f"sohoa_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')

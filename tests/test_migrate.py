"""Schema migrations on the embedded SQLite catalog."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, text

from storage import migrate


def test_the_known_head_is_alembics_newest_revision() -> None:
    """Given the migration scripts, then migrate.HEAD names the newest (update it with each new
    migration: a database at HEAD is opened without running Alembic)."""
    assert migrate.head() == migrate.HEAD


def test_a_new_database_is_migrated_to_the_head(tmp_path: Path) -> None:
    """Given no database, when sohoa opens it, then it is created at the head revision."""
    url = f"sqlite:///{tmp_path / 'catalog.sqlite3'}"
    migrate.upgrade(url)
    with create_engine(url).connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == migrate.HEAD
        assert conn.execute(text("SELECT count(*) FROM dossiers")).scalar() == 0

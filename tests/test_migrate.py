"""Schema migrations on the embedded SQLite catalog."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

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


def test_a_new_database_is_made_whole_or_not_at_all(tmp_path: Path, monkeypatch) -> None:
    """Given a new SQLite catalog whose creation fails once some of its tables are made, then the
    file holds no table, and the next opening makes them all."""
    url = f"sqlite:///{tmp_path / 'catalog.sqlite3'}"
    made = migrate._create_current_tables

    def half_then_fail(connection) -> None:
        for table in list(migrate.METADATA.sorted_tables)[:5]:
            table.create(connection)
        raise OSError("disk full")

    monkeypatch.setattr(migrate, "_create_current_tables", half_then_fail)
    with pytest.raises(OSError):
        migrate._upgrade(url)
    assert inspect(create_engine(url)).get_table_names() == []
    monkeypatch.setattr(migrate, "_create_current_tables", made)
    migrate.upgrade(url)
    assert "dossiers" in inspect(create_engine(url)).get_table_names()


def _schema(url: str) -> dict[str, object]:
    engine = create_engine(url)
    found = inspect(engine)
    schema = {table: ({(c["name"], str(c["type"]).split("(")[0], c["nullable"])
                       for c in found.get_columns(table)},
                      {(tuple(i["column_names"]), bool(i["unique"])) for i in found.get_indexes(table)},
                      tuple(found.get_pk_constraint(table)["constrained_columns"]))
              for table in found.get_table_names()}
    engine.dispose()
    return schema


def test_a_new_database_gets_the_same_schema_as_one_migrated_step_by_step(tmp_path: Path) -> None:
    """Given a new database built at once from the models and one built by running every
    migration, then both have the same tables, columns, keys and indexes (the models and the
    migrations have not drifted apart)."""
    from alembic import command

    direct, stepwise = (f"sqlite:///{tmp_path / name}" for name in ("direct.db", "stepwise.db"))
    migrate.upgrade(direct)
    command.upgrade(migrate.config(stepwise), "head")
    assert _schema(direct) == _schema(stepwise)


def test_the_migrations_leave_nothing_for_alembic_to_generate(tmp_path: Path) -> None:
    """Given a database built by running every migration, when Alembic compares it with the one
    metadata of storage/tables.py (as `alembic revision --autogenerate` does), then it finds no
    difference: every table sohoa defines has its migration, and nothing else is there."""
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from storage.tables import METADATA, alembic_include_name

    url = f"sqlite:///{tmp_path / 'stepwise.db'}"
    command.upgrade(migrate.config(url), "head")
    engine = create_engine(url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={
            "render_as_batch": True, "include_name": alembic_include_name})
        assert compare_metadata(context, METADATA) == []
    engine.dispose()


def test_the_stores_of_one_database_share_one_engine(tmp_path: Path) -> None:
    """Given the catalog, audit log, leases, API keys and web users on one database, then they
    share one engine (one connection pool); when the SQLite file is replaced, a store opened
    afterwards gets an engine of its own (the old one's connections hold the old file)."""
    from api.keys import KeyStore
    from api.web.users import UserStore
    from storage.audit import AuditLog
    from storage.catalog import Catalog
    from storage.leases import Leases
    from storage.objects import LocalObjectStore

    url = f"sqlite:///{tmp_path / 'catalog.sqlite3'}"
    stores = [Catalog(url), AuditLog(url, LocalObjectStore(tmp_path / "objects")), Leases(url),
              KeyStore(url), UserStore(url)]
    assert len({id(store.engine) for store in stores}) == 1
    (tmp_path / "catalog.sqlite3").rename(tmp_path / "old.sqlite3")
    (tmp_path / "catalog.sqlite3").write_bytes((tmp_path / "old.sqlite3").read_bytes())
    assert KeyStore(url).engine is not stores[0].engine


def test_changes_stored_before_the_feed_clock_keep_their_order_after_the_upgrade(
        tmp_path: Path) -> None:
    """Given a catalog at revision 0009 with a dossier version in it, when it is upgraded, then
    the version keeps its place in the change feed (its own time) and a change indexed after it
    comes after it."""
    from alembic import command

    from storage.catalog import Catalog
    from tests.test_feed_order import EARLY, LATE, manifest

    url = f"sqlite:///{tmp_path / 'catalog.sqlite3'}"
    command.upgrade(migrate.config(url), "0009")
    with create_engine(url).begin() as conn:
        conn.execute(text("INSERT INTO dossiers (code, agency, latest_version, updated_at) "
                          "VALUES (:c, '000.00.04.H40', 1, '2026-12-01 10:05:00.000000')"),
                     {"c": LATE})
        conn.execute(text("INSERT INTO dossier_versions (code, version, batch_id, pdf_key, "
                          "manifest_key, manifest, created_at) VALUES (:c, 1, 'b', '', '', :m, "
                          "'2026-12-01 10:05:00.000000')"),
                     {"c": LATE, "m": json.dumps(manifest(LATE, 5).as_dict())})
    catalog = Catalog(url)
    [before] = catalog.events(None)
    assert before["position"][0].startswith("2026-12-01T10:05:00")
    catalog.index_version(manifest(EARLY, 1), {})
    assert [e["dossier_id"] for e in catalog.events(None)] == [LATE, EARLY]
    assert [e["dossier_id"] for e in catalog.events(None, tuple(before["position"]))] == [EARLY]

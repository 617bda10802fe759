"""Schema migrations on the embedded SQLite catalog."""

from __future__ import annotations

from pathlib import Path

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

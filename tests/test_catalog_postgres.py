"""The catalog on the machine's PostgreSQL (a fresh database per test module), rebuilt from storage."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import psycopg
import pytest

from ingest.page_stages import DetectBlank, ReadBarcodes
from ingest.pipeline import Pipeline
from ingest.runner import run_file
from ingest.settings import Settings
from tests.databases import fresh_postgres
from tests.synth import ASN_BATCH


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    with fresh_postgres() as url:
        yield url


@pytest.fixture(scope="module")
def ingested(database_url: str, tmp_path_factory) -> tuple[Pipeline, dict]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("pg") / "data", workers=2,
                        database_url=database_url,
                        dossier_code_grammar=r"^(?P<agency>ASN)(?P<date>)(?P<seq>\d{5})$")
    pipeline = Pipeline.from_settings(settings)
    pipeline.page_stages = [ReadBarcodes(), DetectBlank()]
    return pipeline, run_file(pipeline, ASN_BATCH)


def test_dossiers_are_indexed_in_postgresql(ingested, database_url: str) -> None:
    pipeline, _ = ingested
    assert pipeline.catalog.engine.dialect.name == "postgresql"
    found = pipeline.catalog.dossier("ASN00125")
    assert (found["pages"], found["version"], found["agency"]) == ([3], 1, "ASN")
    with psycopg.connect(database_url.replace("+psycopg", "")) as conn:
        count = conn.execute("SELECT count(*) FROM dossiers").fetchone()[0]
    assert count == 5


def test_dropped_catalog_is_rebuilt_from_object_storage(ingested) -> None:
    pipeline, record = ingested
    before = [pipeline.catalog.dossier(f"ASN0012{i}") for i in range(3, 8)]
    assert pipeline.catalog.rebuild(pipeline.store) == (1, 5)
    assert [pipeline.catalog.dossier(f"ASN0012{i}") for i in range(3, 8)] == before
    assert pipeline.catalog.batch(record.batch_id).status == "done"


def test_migrations_bring_a_database_to_the_current_schema(database_url: str) -> None:
    from storage.catalog import Catalog

    Catalog(database_url)  # opening it migrates it, as sohoa does (whether or not `ingested` ran)
    with psycopg.connect(database_url.replace("+psycopg", "")) as conn:
        version = conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]
        tables = {r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    from storage.migrate import head

    assert version == head() != "0001"
    assert {"batches", "pages", "dossiers", "dossier_versions", "fields", "api_keys",
            "audit_log", "corrections"} <= tables


def test_a_database_made_before_migrations_is_adopted(tmp_path: Path) -> None:
    from sqlalchemy import create_engine

    from storage import migrate
    from storage.catalog import INDEX_TABLES, Base, Catalog

    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    # The catalog's tables only, as the first builds of sohoa made them
    Base.metadata.create_all(create_engine(url),
                             tables=[Base.metadata.tables[name] for name in INDEX_TABLES])
    Catalog(url)
    with create_engine(url).connect() as conn:
        from sqlalchemy import text

        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == migrate.head()
    assert url in migrate._done
    from api.keys import KeyStore

    assert KeyStore(url).create("admin", ["*"]).startswith("sohoa_")  # tables it lacked exist


def _migrate_in_a_new_process(url: str) -> None:
    from storage import migrate

    migrate.upgrade(url)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_processes_starting_together_on_a_fresh_database_all_migrate_it(tmp_path: Path,
                                                                        backend: str) -> None:
    """Given four processes that open one fresh database at the same moment (a worker and the CLI
    starting together), when each migrates it, then none fails with "table already exists"."""
    with ExitStack() as stack:
        url = (f"sqlite:///{tmp_path / 'fresh.sqlite3'}" if backend == "sqlite"
               else stack.enter_context(fresh_postgres()))
        _migrate_together(url)


def _migrate_together(url: str) -> None:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_migrate_in_a_new_process, args=(url,)) for _ in range(4)]
    try:
        for process in processes:
            process.start()
        for process in processes:
            process.join(120)
    finally:
        for process in processes:  # one that hangs is not left running
            if process.is_alive():
                process.kill()
                process.join(10)
    assert [p.exitcode for p in processes] == [0, 0, 0, 0]


def test_corrections_survive_a_rebuild_from_object_storage(ingested) -> None:
    """Given a corrected field, when the catalog is rebuilt from storage, then the correction and
    its feed event are back."""
    pipeline, _ = ingested
    pipeline.dossiers.correct("ASN00126", "procedure", "1.000948", "key-1", "đọc nhầm")
    pipeline.catalog.rebuild(pipeline.store)
    found = pipeline.catalog.dossier("ASN00126")
    assert found["fields"]["procedure"]["value"] == "1.000948" and found["procedure"] == "1.000948"
    kinds = [e["kind"] for e in pipeline.catalog.events(None, limit=500) if e["dossier_id"] == "ASN00126"]
    assert kinds == ["created", "field_corrected"]


def test_a_rebuilt_catalog_is_searched_ranked_in_postgresql(ingested) -> None:
    """Given the catalog rebuilt from storage (its search table and index dropped and made again),
    when a code is searched, then its dossier is found, ranked (a dossier read by barcodes only
    has no text for a snippet)."""
    pipeline, _ = ingested
    pipeline.catalog.rebuild(pipeline.store)
    from storage.search import Filters

    found = pipeline.catalog.search_dossiers(Filters(("ASN",)), "asn00125")
    assert [h.code for h in found.hits] == ["ASN00125"] and found.about == 1
    assert (found.hits[0].position.mode, found.hits[0].snippet) == ("rank", "")

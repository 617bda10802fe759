"""The catalog when two workers index versions of the same dossier at the same moment."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, insert
from sqlalchemy.orm import Session

from storage.catalog import Catalog, Dossier
from storage.records import Manifest
from tests.databases import fresh_postgres

CODE = "000.00.04.H40-230414-0002"


@pytest.fixture
def catalog() -> Iterator[Catalog]:
    """PostgreSQL only. Writers that index versions now take turns on the feed's clock
    (storage/catalog.py `_feed_time`), so this race needs a writer outside it (below: a bare
    insert, as an older worker still running during an upgrade would make); the retry stays for
    it. On SQLite the indexing transaction holds the database's write lock from its first
    statement, so no other write can come between its read and its write."""
    with fresh_postgres() as url:
        found = Catalog(url)
        yield found
        found.engine.dispose()


def manifest(version: int) -> Manifest:
    stored = {"key": f"dossiers/{CODE}/v000{version}/dossier.pdf", "sha256": "0" * 64, "size": 1}
    return Manifest.load({
        "dossier_id": CODE, "agency": "000.00.04.H40", "version": version,
        "batch_id": f"b{version}", "code_source": "barcode", "pages": [0],
        "created_at": f"2026-12-01T10:0{version}:00+00:00",
        "original": {"key": f"batches/b{version}/original.pdf", "sha256": "0" * 64, "size": 1},
        "objects": {"dossier.pdf": stored}})


def test_a_version_indexed_while_another_worker_creates_the_dossier_is_kept(catalog: Catalog) -> None:
    """Given a worker indexing version 2 of a new dossier, when another worker's version 1 creates
    the dossier's row between this one's read and its write (the insert conflicts), then both
    versions are indexed and the dossier points at version 2."""
    other = {"code": CODE, "agency": "000.00.04.H40", "procedure": None, "latest_version": 1,
             "updated_at": datetime(2026, 12, 1, 10, 1, tzinfo=UTC)}
    hits = []

    def other_worker_commits_first(session: Session, *_: Any) -> None:
        if not hits:
            hits.append(1)
            with catalog.engine.begin() as conn:  # its own connection and transaction
                conn.execute(insert(Dossier).values(**other))

    event.listen(Session, "before_flush", other_worker_commits_first)
    try:
        catalog.index_version(manifest(2), {"procedure": {"value": "Cấp phép", "page": 0,
                                                          "confidence": 0.9, "source": "ocr"}})
    finally:
        event.remove(Session, "before_flush", other_worker_commits_first)
    catalog.index_version(manifest(1), {})
    found = catalog.dossier(CODE)
    assert hits == [1]
    assert found is not None and (found["version"], found["procedure"]) == (2, "Cấp phép")
    assert [v["version"] for v in found["versions"]] == [1, 2]

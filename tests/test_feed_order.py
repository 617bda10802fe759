"""The change feed in the order changes reach the catalog (storage/catalog.py `events`), on both
catalogs: a consumer resuming from its cursor never misses a change.

A batch's dossiers are indexed once all of them are written, so a dossier made at 10:01 can
reach the catalog after another batch's dossier made at 10:05 has been handed out."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from storage.catalog import Catalog
from storage.records import Correction, Manifest
from storage.tables import Correction as CorrectionRow
from tests.databases import fresh_postgres

AGENCY = "000.00.04.H40"
EARLY, LATE = f"{AGENCY}-230414-0001", f"{AGENCY}-230414-0002"


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Catalog]:
    if request.param == "sqlite":
        yield Catalog(f"sqlite:///{tmp_path / 'catalog.sqlite3'}")
        return
    with fresh_postgres() as url:
        found = Catalog(url)
        yield found
        found.engine.dispose()


def manifest(code: str, minute: int, version: int = 1) -> Manifest:
    """A version of `code` made at 10:`minute` (its own time, before it is indexed)."""
    stored = {"key": f"dossiers/{code}/v{version:04d}/dossier.pdf", "sha256": "0" * 64, "size": 1}
    return Manifest.load({
        "dossier_id": code, "agency": AGENCY, "version": version, "batch_id": f"b-{code}",
        "code_source": "barcode", "pages": [0],
        "created_at": datetime(2026, 12, 1, 10, minute, tzinfo=UTC).isoformat(),
        "original": {"key": f"batches/b-{code}/original.pdf", "sha256": "0" * 64, "size": 1},
        "objects": {"dossier.pdf": stored}})


def told(catalog: Catalog, after: list[Any] | None = None) -> list[tuple[str, str, int]]:
    return [(e["kind"], e["dossier_id"], e["version"])
            for e in catalog.events(None, tuple(after) if after else None)]


def cursor(catalog: Catalog) -> list[Any]:
    return catalog.events(None)[-1]["position"]


@contextmanager
def first_writer_inside(catalog: Catalog, version: Manifest) -> Iterator[Callable[[], None]]:
    """A worker indexing `version` in a thread, held inside its transaction (the feed's clock
    taken, nothing committed) until the block calls what it is given, or ends; then it commits."""
    inside, release = threading.Event(), threading.Event()

    def hold(session: Session, *_: Any) -> None:
        if threading.current_thread() is writer and not inside.is_set():
            inside.set()
            release.wait(30)

    writer = threading.Thread(target=catalog.index_version, args=(version, {}))
    event.listen(Session, "before_flush", hold)
    try:
        writer.start()
        assert inside.wait(30)
        yield release.set
    finally:
        release.set()
        writer.join(30)
        event.remove(Session, "before_flush", hold)  # after the join: not while it is called


def test_a_change_indexed_after_a_later_one_was_handed_out_is_still_told(catalog: Catalog) -> None:
    """Given a consumer that has read a dossier made at 10:05, when a dossier made at 10:01 (its
    batch still being assembled then) reaches the catalog, then the consumer resuming from its
    cursor is told of it."""
    catalog.index_version(manifest(LATE, 5), {})
    position = cursor(catalog)
    catalog.index_version(manifest(EARLY, 1), {})
    assert told(catalog, position) == [("created", EARLY, 1)]


def test_a_late_correction_and_result_are_told_after_the_cursor_too(catalog: Catalog) -> None:
    """Given a consumer past a version, when a correction made before that version reaches the
    catalog, then resuming tells of it."""
    catalog.index_version(manifest(EARLY, 1), {"procedure": {
        "value": "Cấp phép", "page": 0, "confidence": 0.5, "source": "ocr"}})
    catalog.index_version(manifest(LATE, 5), {})
    position = cursor(catalog)
    catalog.index_correction(correction_of(EARLY, 2))
    assert told(catalog, position) == [("field_corrected", EARLY, 1)]


def test_the_same_version_indexed_again_keeps_its_place(catalog: Catalog) -> None:
    """Given a version handed out, when it is indexed again (a task run twice), then the feed is
    unchanged: a consumer is not told of it twice."""
    catalog.index_version(manifest(EARLY, 1), {})
    feed = catalog.events(None)
    catalog.index_version(manifest(EARLY, 1), {})
    assert catalog.events(None) == feed
    assert told(catalog, feed[-1]["position"]) == []


def test_writers_of_the_feed_take_turns_and_are_placed_in_commit_order(catalog: Catalog) -> None:
    """Given one worker inside the transaction that indexes its batch's dossier (made at 10:05),
    when another indexes one made at 10:01, then the second waits for the first to commit, a
    reader meanwhile sees neither, and the second is placed after the first."""
    with first_writer_inside(catalog, manifest(LATE, 5)) as release:
        second = threading.Thread(target=catalog.index_version, args=(manifest(EARLY, 1), {}))
        second.start()
        second.join(0.5)
        waited, seen = second.is_alive(), told(catalog)
        release()
        second.join(30)
    assert (waited, seen) == (True, [])
    assert told(catalog) == [("created", LATE, 1), ("created", EARLY, 1)]


def correction_of(code: str, minute: int) -> Correction:
    return Correction.load({
        "dossier_id": code, "version": 1, "seq": 1, "name": "procedure", "previous": "Cấp phép",
        "value": "Cấp giấy phép", "actor": "staff", "reason": "", "confirmed": False,
        "at": datetime(2026, 12, 1, 10, minute, tzinfo=UTC).isoformat()})


def test_changes_committed_while_the_feed_is_read_wait_for_the_next_reading(
        catalog: Catalog) -> None:
    """Given a reader that has read the versions table, when a version and then a correction
    (placed after it) are committed before it reads the corrections, then this reading tells of
    neither, and the next one, from its cursor, of both."""
    catalog.index_version(manifest(EARLY, 1), {"procedure": {
        "value": "Cấp phép", "page": 0, "confidence": 0.5, "source": "ocr"}})
    start = cursor(catalog)

    def others_commit_before_the_corrections_are_read(state: Any) -> None:
        entity = (state.statement.column_descriptions or [{}])[0].get("entity") \
            if state.is_select else None
        if entity is CorrectionRow and not written:
            written.append(1)
            writer = threading.Thread(target=lambda: (
                catalog.index_version(manifest(LATE, 5), {}),
                catalog.index_correction(correction_of(EARLY, 6))))
            writer.start()
            writer.join(30)

    written: list[int] = []
    event.listen(Session, "do_orm_execute", others_commit_before_the_corrections_are_read)
    try:
        reading = catalog.events(None, tuple(start))
    finally:
        event.remove(Session, "do_orm_execute", others_commit_before_the_corrections_are_read)
    assert written == [1]
    assert reading == []
    assert told(catalog, start) == [("created", LATE, 1), ("field_corrected", EARLY, 1)]


def test_a_writer_behind_one_that_hangs_gives_up_instead_of_waiting_for_ever(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Given one indexing transaction that hangs holding the feed's clock (PostgreSQL), when
    another writer comes, then it fails after the lock timeout (its task is tried again later),
    and once the first commits the next write goes through."""
    from sqlalchemy.exc import OperationalError

    from storage import catalog as module

    monkeypatch.setattr(module, "FEED_LOCK_SECONDS", 1)
    with fresh_postgres() as url:
        catalog = Catalog(url)
        with first_writer_inside(catalog, manifest(LATE, 5)), \
                pytest.raises(OperationalError, match="lock timeout"):
            catalog.index_version(manifest(EARLY, 1), {})
        catalog.index_version(manifest(EARLY, 1), {})
        assert told(catalog) == [("created", LATE, 1), ("created", EARLY, 1)]
        catalog.engine.dispose()

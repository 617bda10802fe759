"""The audit log: hash-chained, anchored in object storage; edits and removals are detected."""

import multiprocessing
from pathlib import Path

import pytest
from sqlalchemy import text

from storage.audit import AuditLog
from storage.objects import LocalObjectStore


@pytest.fixture
def log(tmp_path: Path) -> AuditLog:
    audit = AuditLog(f"sqlite:///{tmp_path / 'a.sqlite3'}", LocalObjectStore(tmp_path / "objects"))
    for i in range(5):
        audit.append("key1", "dossier.read", f"000.00.04.H40-230414-000{i}", "000.00.04.H40",
                     "10.0.0.7", {"version": 1})
    return audit


def sql(log: AuditLog, statement: str) -> None:
    with log.engine.begin() as conn:
        conn.execute(text(statement))


def test_an_untouched_log_verifies(log: AuditLog) -> None:
    assert log.verify() == []
    assert [e["seq"] for e in log.entries()] == [1, 2, 3, 4, 5]


def test_an_edited_entry_is_detected(log: AuditLog) -> None:
    sql(log, "UPDATE audit_log SET actor = 'someone else' WHERE seq = 3")
    assert [(b.seq, b.problem) for b in log.verify()] == [
        (3, "was changed after it was written"), (3, "differs from its copy in object storage")]


def test_a_removed_entry_is_detected(log: AuditLog) -> None:
    sql(log, "DELETE FROM audit_log WHERE seq = 2")
    problems = [(b.seq, b.problem) for b in log.verify()]
    assert (2, "entries 2..2 are missing") in problems
    assert (3, "does not follow the entry before it") in problems


def test_removing_the_newest_entries_is_detected_by_the_anchor(log: AuditLog) -> None:
    sql(log, "DELETE FROM audit_log WHERE seq >= 4")
    assert [b.seq for b in log.verify()] == [4, 5, 5]  # missing against the copies, and the anchor


def test_entries_are_scoped_by_agency(log: AuditLog) -> None:
    log.append("key2", "dossier.read", "38.98.H29-210519-0013", "38.98.H29")
    assert [e["target"] for e in log.entries(("38.98.H29",))] == ["38.98.H29-210519-0013"]


def test_a_chain_rewritten_with_fresh_hashes_is_caught_by_the_stored_copies(log: AuditLog) -> None:
    """Given an attacker with database access who edits entry 3 and recomputes every hash after it
    (and the anchor), when verified, then entries 3..5 differ from their copies in object storage."""
    import json

    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from storage.audit import HEAD_KEY, Entry, entry_hash

    with Session(log.engine) as s, s.begin():
        entries = list(s.scalars(select(Entry).order_by(Entry.seq)))
        entries[2].actor = "someone else"
        prev = entries[1].hash
        for e in entries[2:]:
            e.prev_hash = prev
            e.hash = prev = entry_hash(e.content())
    log.store.put(HEAD_KEY, json.dumps({"seq": 5, "hash": prev}).encode(), overwrite=True)
    assert [(b.seq, b.problem) for b in log.verify()] == [
        (seq, "differs from its copy in object storage") for seq in (3, 4, 5)]


def test_a_lost_audit_table_is_restored_from_object_storage(log: AuditLog) -> None:
    before = log.entries()
    sql(log, "DELETE FROM audit_log")
    assert log.restore() == 5
    assert log.entries() == before and log.verify() == []


def _append_from_another_process(root: str, actor: str, count: int) -> None:
    log = AuditLog(f"sqlite:///{root}/catalog.sqlite3", LocalObjectStore(Path(root) / "objects"))
    for i in range(count):
        log.append(actor, "dossier.read", f"000.00.04.H40-230414-{i:04d}", "000.00.04.H40")


@pytest.mark.parametrize("appenders", [2])
def test_processes_appending_at_once_make_one_unbroken_chain(tmp_path: Path, appenders: int) -> None:
    """Given the embedded SQLite audit log, when an API process and a worker process append at
    the same moment, then every entry is kept, in one chain that verifies."""
    AuditLog(f"sqlite:///{tmp_path}/catalog.sqlite3", LocalObjectStore(tmp_path / "objects"))
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_from_another_process, args=(str(tmp_path), f"p{n}", 60))
               for n in range(appenders)]
    try:
        for w in workers:
            w.start()
        for w in workers:
            w.join(120)
    finally:
        for w in workers:  # one that hangs is not left running
            if w.is_alive():
                w.kill()
                w.join(10)
    log = AuditLog(f"sqlite:///{tmp_path}/catalog.sqlite3", LocalObjectStore(tmp_path / "objects"))
    assert [w.exitcode for w in workers] == [0] * appenders
    assert len(log.entries(None, 0, 1000)) == 60 * appenders
    assert log.verify() == []

"""The audit log: append-only and hash-chained, so a changed or removed entry is detectable.

Each entry's hash covers its content and the previous entry's hash. Removing or editing an entry
breaks the chain after it; removing entries at the end is caught by the head anchor, the last
sequence number and hash, which every append also writes to object storage (`audit/head.json`).
Every appended run of entries is also copied to object storage (`audit/entries/FIRST-LAST.jsonl`,
never overwritten), the source of truth: `verify` compares the table with it, so even a chain
rewritten end to end with fresh hashes is caught, and `restore` rebuilds a lost table from it.
The table lives beside the catalog but is not part of it: `reindex` only refills it when empty.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from storage import migrate
from storage.db import engine_for
from storage.objects import ObjectMissing, ObjectStore
from storage.tables import Entry

log = logging.getLogger(__name__)
HEAD_KEY = "audit/head.json"
ENTRIES_PREFIX = "audit/entries/"
GENESIS = "0" * 64
_APPENDING = threading.Lock()  # appends of this process, one at a time


def _one_appender(session: Session) -> None:
    """Begins an appending transaction: one appender at a time, across processes. An appender
    reads the last entry and writes the next one, and another process (the API beside a worker)
    must not read the same last entry meanwhile. PostgreSQL: a transaction-scoped advisory lock.
    SQLite: the database's write lock, taken at once (BEGIN IMMEDIATE; pysqlite would otherwise
    begin only at the first write), waited for up to storage/db.py's SQLITE_BUSY_SECONDS."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(7319)"))
    elif dialect == "sqlite":
        session.execute(text("BEGIN IMMEDIATE"))


def entry_hash(content: dict[str, Any]) -> str:
    canonical = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Event:
    """An entry to append: when it happened is taken when it is created, not when written."""

    actor: str
    action: str
    target: str
    agency: str = ""
    remote: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="microseconds"))


class AuditWriter:
    """Appends from many request threads through one writer thread, in batches.

    `record(..., wait=True)` returns once the entry is stored (uploads and other writes);
    reads use wait=False and are stored within `interval` seconds. `close()` flushes.
    """

    def __init__(self, log: AuditLog, interval: float = 0.02, batch: int = 500) -> None:
        self.log, self.interval, self.batch = log, interval, batch
        self._queue: queue.Queue[tuple[Event, threading.Event | None] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def record(self, event: Event, wait: bool = False) -> None:
        done = threading.Event() if wait else None
        self._queue.put((event, done))
        if done is not None and not done.wait(timeout=30):
            raise TimeoutError("the audit log did not record the entry in time")

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            items, stop = [item], item is None
            deadline = time.monotonic() + self.interval
            while not stop and len(items) < self.batch:
                try:
                    nxt = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                stop = nxt is None
                items.append(nxt)
            pending = [i for i in items if i is not None]
            if pending:
                try:
                    self.log.append_many([ev for ev, _ in pending])
                except Exception:
                    log.exception("audit entries could not be written; retrying")
                    time.sleep(1)
                    for i in pending:
                        self._queue.put(i)
                    continue
                for _, done in pending:
                    if done is not None:
                        done.set()
            if stop:
                return


@dataclass(frozen=True)
class Break:
    seq: int
    problem: str


class AuditLog:
    def __init__(self, url: str, store: ObjectStore) -> None:
        migrate.upgrade(url)
        self.engine = engine_for(url)
        self.store = store

    def append(self, actor: str, action: str, target: str, agency: str = "",
               remote: str = "", detail: dict[str, Any] | None = None) -> Entry:
        return self.append_many([Event(actor, action, target, agency, remote, detail or {})])[-1]

    def append_many(self, events: list[Event]) -> list[Entry]:
        """Appends in one transaction: the chain needs one appender at a time, so a busy API
        batches its entries (AuditWriter) instead of queueing on the lock one by one."""
        with _APPENDING:  # SQLite has no advisory lock: the writer thread and a request's
            return self._append_many(events)  # own append would both take the next seq

    def _append_many(self, events: list[Event]) -> list[Entry]:
        entries = []
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            _one_appender(s)
            last = s.scalars(select(Entry).order_by(Entry.seq.desc()).limit(1)).first()
            seq, prev = (last.seq, last.hash) if last else (0, GENESIS)
            for ev in events:
                seq += 1
                entry = Entry(seq=seq, at=ev.at, actor=ev.actor, action=ev.action,
                              target=ev.target, agency=ev.agency, remote=ev.remote,
                              detail=ev.detail, prev_hash=prev)
                entry.hash = prev = entry_hash(entry.content())
                s.add(entry)
                entries.append(entry)
        if entries:
            lines = "".join(json.dumps(e.to_dict(), ensure_ascii=False, sort_keys=True) + "\n"
                            for e in entries)
            self.store.put(f"{ENTRIES_PREFIX}{entries[0].seq:012d}-{entries[-1].seq:012d}.jsonl",
                           lines.encode())
        head = {"seq": seq, "hash": prev}
        self.store.put(HEAD_KEY, json.dumps(head).encode(), overwrite=True)
        return entries

    def stored_entries(self) -> dict[int, dict[str, Any]]:
        """The copies in object storage, by sequence number."""
        found: dict[int, dict[str, Any]] = {}
        for key in sorted(self.store.list(ENTRIES_PREFIX)):
            for line in self.store.get(key).decode().splitlines():
                if line.strip():
                    entry = json.loads(line)
                    found[entry["seq"]] = entry
        return found

    def restore(self) -> int:
        """Refills an empty table from object storage (after the database was lost)."""
        with Session(self.engine) as s, s.begin():
            _one_appender(s)
            if s.scalars(select(Entry).limit(1)).first() is not None:
                raise RuntimeError("the audit table is not empty: nothing restored")
            stored = self.stored_entries()
            for entry in stored.values():
                s.add(Entry(**entry))
        return len(stored)

    def entries(self, agencies: tuple[str, ...] | None = None, after: int = 0,
                limit: int = 100) -> list[dict[str, Any]]:
        stmt = select(Entry).where(Entry.seq > after).order_by(Entry.seq).limit(limit)
        if agencies is not None:
            stmt = stmt.where(Entry.agency.in_(agencies))
        with Session(self.engine) as s:
            return [e.to_dict() for e in s.scalars(stmt)]

    def for_target(self, target: str | None, actions: tuple[str, ...]) -> list[dict[str, Any]]:
        """Entries of these actions, of one target (a dossier code) or of all, oldest first."""
        stmt = select(Entry).where(Entry.action.in_(actions)).order_by(Entry.seq)
        if target is not None:
            stmt = stmt.where(Entry.target == target)
        with Session(self.engine) as s:
            return [e.to_dict() for e in s.scalars(stmt)]

    def verify(self) -> list[Break]:
        """Every place where the chain or the head anchor disagrees with the log."""
        breaks: list[Break] = []
        prev, expected_seq = GENESIS, 1
        last_hash_by_seq: dict[int, str] = {}
        with Session(self.engine) as s:
            for e in s.scalars(select(Entry).order_by(Entry.seq)):
                if e.seq != expected_seq:
                    breaks.append(Break(expected_seq, f"entries {expected_seq}..{e.seq - 1} "
                                                      "are missing"))
                if e.prev_hash != prev:
                    breaks.append(Break(e.seq, "does not follow the entry before it"))
                if entry_hash(e.content()) != e.hash:
                    breaks.append(Break(e.seq, "was changed after it was written"))
                prev, expected_seq = e.hash, e.seq + 1
                last_hash_by_seq[e.seq] = e.hash
        stored = self.stored_entries()
        with Session(self.engine) as s:
            in_table = {e.seq: e.to_dict() for e in s.scalars(select(Entry))}
        for seq in sorted(set(stored) | set(in_table)):
            if seq not in in_table:
                breaks.append(Break(seq, "is in object storage but not in the database"))
            elif seq not in stored:
                breaks.append(Break(seq, "is in the database but was never copied to object storage"))
            elif stored[seq] != in_table[seq]:
                breaks.append(Break(seq, "differs from its copy in object storage"))
        try:
            head = json.loads(self.store.get(HEAD_KEY))
        except ObjectMissing:
            head = None
        if head and last_hash_by_seq.get(head["seq"]) != head["hash"]:
            breaks.append(Break(head["seq"], "entries up to the anchored head were removed "
                                             "or changed"))
        return breaks

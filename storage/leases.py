"""Leases: who is working on what right now, so work whose worker died is found and done again.

A lease is a row `(key, holder, expires_at)` in the catalog's database, shared by every machine.
The process doing the work holds it and renews it while it works (a thread, every third of the
lease); a process that dies (kill -9, OOM, power loss) stops renewing, and its lease expires. So
"no live lease and no result" means nobody is doing that work, whatever killed whom.

    page:{batch_id}:{n}   a page being processed (ingest/tasks.py)
    finish:{batch_id}     a batch being split and assembled
    batch:{batch_id}      a whole batch run by `sohoa ingest` on its own machine (ingest/runner.py)
    watchdog              the one watchdog that scans for stranded work (ingest/watchdog.py)
    worker:{node}         a `sohoa worker` that is up (ingest/worker.py; the status page)

Leases are coordination, not data: losing the table loses nothing (every lease is then free), and
`reindex` leaves it alone.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from storage import migrate
from storage.db import aware, engine_for
from storage.tables import LeaseRow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Lease:
    key: str
    holder: str
    expires_at: datetime


WORKER_PREFIX = "worker:"


def worker_key(node: str) -> str:
    return f"{WORKER_PREFIX}{node}"


def page_key(batch_id: str, index: int) -> str:
    return f"page:{batch_id}:{index}"


def finish_key(batch_id: str) -> str:
    return f"finish:{batch_id}"


def batch_key(batch_id: str) -> str:
    return f"batch:{batch_id}"


def this_process() -> str:
    """A holder name that tells people where the work runs: host, pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _now() -> datetime:
    return datetime.now(UTC)


class Leases:
    def __init__(self, url: str) -> None:
        migrate.upgrade(url)
        # SQLite: every worker process writes here; its engine waits for another's write instead
        # of failing (storage/db.py).
        self.engine = engine_for(url)
        self._session = sessionmaker(self.engine, expire_on_commit=False)

    def take(self, key: str, holder: str, seconds: float, batch_id: str | None = None) -> bool:
        """Takes the lease if it is free, expired, or already this holder's; False if another
        holder's lease is live."""
        expires = _now() + timedelta(seconds=seconds)
        try:
            with self._session.begin() as s:
                s.add(LeaseRow(key=key, batch_id=batch_id, holder=holder, expires_at=expires))
            return True
        except IntegrityError:
            pass
        with self._session.begin() as s:
            taken = s.execute(
                update(LeaseRow)
                .where(LeaseRow.key == key,
                       (LeaseRow.holder == holder) | (LeaseRow.expires_at < _now()))
                .values(holder=holder, expires_at=expires, batch_id=batch_id))
            return bool(taken.rowcount)  # type: ignore[attr-defined]

    def renew(self, key: str, holder: str, seconds: float) -> bool:
        """False if the lease is no longer this holder's (it expired and someone took it)."""
        with self._session.begin() as s:
            done = s.execute(update(LeaseRow).where(LeaseRow.key == key, LeaseRow.holder == holder)
                             .values(expires_at=_now() + timedelta(seconds=seconds)))
            return bool(done.rowcount)  # type: ignore[attr-defined]

    def release(self, key: str, holder: str) -> None:
        with self._session.begin() as s:
            s.execute(delete(LeaseRow).where(LeaseRow.key == key, LeaseRow.holder == holder))

    def live(self, batch_id: str) -> dict[str, Lease]:
        """The live leases on a batch's work, by key."""
        with self._session.begin() as s:
            rows = s.scalars(select(LeaseRow).where(LeaseRow.batch_id == batch_id)).all()
        now = _now()
        return {r.key: Lease(r.key, r.holder, aware(r.expires_at)) for r in rows
                if aware(r.expires_at) >= now}

    def live_with_prefix(self, prefix: str) -> list[Lease]:
        """The live leases whose key starts with `prefix` (e.g. `worker:`), by key."""
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        with self._session.begin() as s:
            rows = s.scalars(select(LeaseRow).where(LeaseRow.key.like(f"{escaped}%", escape="\\"))
                             .order_by(LeaseRow.key)).all()
        now = _now()
        return [Lease(r.key, r.holder, aware(r.expires_at)) for r in rows
                if aware(r.expires_at) >= now]

    def is_live(self, key: str) -> bool:
        with self._session.begin() as s:
            row = s.get(LeaseRow, key)
            return row is not None and aware(row.expires_at) >= _now()

    def forget_batch(self, batch_id: str) -> None:
        """Expired leases of a finished batch (live ones are left to their holders)."""
        with self._session.begin() as s:
            s.execute(delete(LeaseRow).where(LeaseRow.batch_id == batch_id,
                                             LeaseRow.expires_at < _now()))

    @contextmanager
    def holding(self, key: str, seconds: float, holder: str | None = None,
                batch_id: str | None = None) -> Iterator[bool]:
        """Holds the lease while the block runs, renewed by a thread; yields False (and holds
        nothing) if another live holder has it. Released at the end, even on error."""
        holder = holder or this_process()
        if not self.take(key, holder, seconds, batch_id):
            yield False
            return
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(seconds / 3):
                try:
                    if not self.renew(key, holder, seconds):
                        log.warning("lease %s was taken over while %s worked on it", key, holder)
                        return
                except Exception:  # the database blinked: try again at the next beat
                    log.warning("could not renew lease %s", key, exc_info=True)

        beat = threading.Thread(target=renew, name=f"lease-{key}", daemon=True)
        beat.start()
        try:
            yield True
        finally:
            stop.set()
            beat.join()
            try:
                self.release(key, holder)
            except Exception:  # it expires by itself
                log.warning("could not release lease %s", key, exc_info=True)

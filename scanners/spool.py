"""A crash-safe staging area for what scanners send, until its original is stored.

    spool/incoming/<id>/   being received: meta.json, and the file or pages/0001.jpg, 0002.jpg...
    spool/ready/<id>/      fully received (moved there in one rename), waiting to be stored

A receiver writes into incoming/ and calls `complete()`, which renames the item into ready/.
`drain()` hands each ready item to the intake, which stores the original before anything else,
and only then deletes the item. After a crash `recover()` moves what was left in incoming/ to
ready/ marked incomplete, so a partial upload becomes a batch that says so instead of vanishing.
Storing an item twice (a crash between storing and deleting) gives the same bytes, hence the same
batch id: what was fully received is ingested exactly once.

Every item has a `.lock` file, flocked by the process working on it (the lock is on its inode, so
it follows the item from incoming/ to ready/, and dies with the process). A process that completes
an item and stores it itself (`sohoa scan`) keeps the lock until the item is stored and deleted;
`drain()` (a server, perhaps beside that CLI on the same data directory) skips items whose lock
another process holds and takes the lock before storing one, so no item is stored by two processes
at once or deleted under the feet of the one storing it. A stored item is first renamed out of
ready/ (into .trash/) and only then deleted, so a lock is never taken on a half-deleted item.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocr.pdf import scan_pdf

log = logging.getLogger(__name__)

# accept(path, source=, device=, file_name=, dossier=, agency=, incomplete=) -> batch record;
# ingest.tasks.submit queues it for the workers.
Accept = Callable[..., dict[str, Any]]

META = "meta.json"
PAGES = "pages"
LOCK = ".lock"
TRASH = ".trash"  # stored items on their way out (renamed here, then deleted)


class ItemBusy(Exception):
    """Another process (or thread) holds the item: it is storing it."""


class ItemGone(Exception):
    """The item is no longer in the spool: another process stored and removed it."""


def _write_durably(path: Path, data: bytes) -> None:
    """Write to a temporary name, fsync, rename: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.part")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class SpoolItem:
    """One scan job or one pushed file on its way in."""

    path: Path

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def meta(self) -> dict[str, Any]:
        return json.loads((self.path / META).read_text())

    def update(self, **changes: Any) -> None:
        _write_durably(self.path / META, json.dumps({**self.meta, **changes}).encode())

    def add_page(self, data: bytes) -> int:
        """Stores one page of a scan job the moment it arrives; returns its number (1-based)."""
        pages = self.path / PAGES
        pages.mkdir(exist_ok=True)
        number = len(self.pages) + 1
        _write_durably(pages / f"{number:04d}.img", data)
        return number

    @property
    def pages(self) -> list[Path]:
        folder = self.path / PAGES
        return sorted(folder.glob("*.img")) if folder.is_dir() else []

    def file(self, name: str) -> Path:
        """Where a pushed file is written (its name kept for the record)."""
        return self.path / "file" / Path(name).name

    def payload(self) -> Path | None:
        """The single file this item carries, pages assembled into one PDF if it is a scan job."""
        if self.pages:
            target = self.path / "scan.pdf"
            if not target.exists():
                dpi = int(self.meta.get("dpi") or 300)
                _write_durably(target, scan_pdf([p.read_bytes() for p in self.pages], dpi))
            return target
        files = sorted((self.path / "file").glob("*")) if (self.path / "file").is_dir() else []
        files = [f for f in files if not f.name.startswith(".")]
        return files[0] if files else None


class Spool:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.incoming = root / "incoming"
        self.ready = root / "ready"
        self.incoming.mkdir(parents=True, exist_ok=True)
        self.ready.mkdir(parents=True, exist_ok=True)
        self.trash = root / TRASH
        self._drain_lock = threading.Lock()
        self._receiving: dict[str, int] = {}  # item id -> fd holding its lock (received or stored)

    def _hold(self, path: Path) -> bool:
        """Locks an incoming item for this process; the lock dies with the process, so recovery
        can tell an item still being received (locked) from one left by a crash (free)."""
        fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._receiving[path.name] = fd
        return True

    def _take(self, path: Path) -> bool:
        """Locks a ready item for storing, without waiting: False if another process (or another
        thread of this one) holds it, or if it is gone (stored and removed meanwhile)."""
        if path.name in self._receiving:
            return False
        try:
            fd = os.open(path / LOCK, os.O_RDWR)
        except FileNotFoundError:
            if not (path / META).exists():
                return False  # gone
            # An item without a lock file (spooled by an older sohoa): items in ready/ are only
            # ever removed by a rename, so creating the lock here cannot resurrect a removed one.
            try:
                fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
            except FileNotFoundError:
                return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        if not (path / META).exists():  # stored and moved out between the listing and the lock
            os.close(fd)
            return False
        self._receiving[path.name] = fd
        return True

    def _release(self, item_id: str) -> None:
        fd = self._receiving.pop(item_id, None)
        if fd is not None:
            os.close(fd)

    def open(self, channel: str, device: str, **meta: Any) -> SpoolItem:
        """A new item in incoming/. `channel` is escl, folder, ftp or email; `device` the scanner."""
        item_id = f"{time.time_ns():x}-{uuid.uuid4().hex[:8]}"
        path = self.incoming / item_id
        path.mkdir()
        (path / "file").mkdir()
        item = SpoolItem(path)
        self._hold(path)
        _write_durably(path / META, json.dumps(
            {"channel": channel, "device": device, "opened_at": time.time(), **meta}).encode())
        return item

    def complete(self, item: SpoolItem, incomplete: str | None = None,
                 hold: bool = False) -> SpoolItem:
        """All of it arrived (or all that will: `incomplete` says why not): ready to be stored.
        With `hold` the caller keeps the item's lock and must `store()` it next (which releases
        it, stored or not): no drain, in this process or another, takes it meanwhile."""
        if incomplete:
            item.update(incomplete=incomplete)
        target = self.ready / item.id
        os.replace(item.path, target)
        _sync_dir(self.ready)
        if not hold:
            self._release(item.id)
        return SpoolItem(target)

    def discard(self, item: SpoolItem) -> None:
        """Only for an item that received nothing at all (a job refused before its first page)."""
        if item.pages or item.payload():
            raise ValueError("refusing to discard an item that holds received data")
        shutil.rmtree(item.path)
        self._release(item.id)

    def recover(self) -> list[SpoolItem]:
        """After a restart: what was still being received is moved to ready/, marked incomplete.
        Items another live process is still receiving (locked) are left alone."""
        recovered = []
        for path in sorted(self.incoming.iterdir()):
            if path.name in self._receiving:
                continue
            if not self._hold(path):
                log.info("spool item %s is still being received by another process", path.name)
                continue
            item = SpoolItem(path)
            if not (path / META).exists() or (not item.pages and item.payload() is None):
                shutil.rmtree(path)  # nothing was received
                self._release(path.name)
                continue
            received = (f"{len(item.pages)} page(s)" if item.pages
                        else f"{item.payload().stat().st_size} bytes")  # type: ignore[union-attr]
            recovered.append(self.complete(
                item, incomplete=f"sohoa stopped while receiving; {received} kept"))
            log.warning("spool item %s was interrupted: %s kept", path.name, received)
        return recovered

    def drain(self, accept: Accept) -> list[dict[str, Any]]:
        """Stores every ready item through `accept`, then removes it. An item whose storing fails
        stays for the next drain; one another process is storing (it holds the lock: `sohoa
        scan` beside a server) is left to it."""
        records = []
        with self._drain_lock:
            self._empty_trash()
            for path in sorted(self.ready.iterdir()):
                if path.name.startswith(".") or not self._take(path):
                    continue
                item = SpoolItem(path)
                try:
                    records.append(self.store(item, accept))
                except ItemGone:
                    log.info("spool item %s was stored by another process", path.name)
                except Exception:
                    log.exception("could not store spooled item %s; kept for a retry", path.name)
        return records

    def store(self, item: SpoolItem, accept: Accept) -> dict[str, Any]:
        """Stores one ready item through `accept` and removes it, holding its lock throughout
        (taken here unless this spool holds it already, e.g. from `complete(hold=True)`; released
        at the end, stored or not). Raises ItemBusy if another process holds it, ItemGone if it
        was stored and removed by another."""
        if item.id not in self._receiving and not self._take(item.path):
            if not (item.path / META).exists():
                raise ItemGone(item.id)
            raise ItemBusy(item.id)
        try:
            try:
                meta = item.meta
                payload = item.payload()
            except FileNotFoundError:
                raise ItemGone(item.id) from None
            if payload is None:
                raise ValueError(f"spool item {item.id} carries nothing")
            with payload.open("rb") as held:  # the bytes stay readable should the item vanish
                def hand_over(path: Path) -> dict[str, Any]:
                    return accept(path, source=meta["channel"], device=meta["device"],
                                  file_name=meta.get("file_name") or payload.name,
                                  dossier=meta.get("dossier"), agency=meta.get("agency"),
                                  incomplete=meta.get("incomplete"))
                try:
                    record = hand_over(payload)
                except FileNotFoundError:
                    if item.path.exists():
                        raise
                    # Removed under us (a lock that did not hold): whoever removed it stored it
                    # first. The same bytes give the same batch: ask for it by the bytes we hold.
                    log.warning("spool item %s was removed while being stored", item.id)
                    record = hand_over(Path(f"/proc/self/fd/{held.fileno()}"))
            self._remove(item)
            return record
        finally:
            self._release(item.id)

    def _remove(self, item: SpoolItem) -> None:
        """Out of ready/ in one rename (still locked), then deleted."""
        self.trash.mkdir(exist_ok=True)
        target = self.trash / item.id
        try:
            os.replace(item.path, target)
        except FileNotFoundError:
            return  # already removed by whoever stored it too
        shutil.rmtree(target, ignore_errors=True)

    def _empty_trash(self) -> None:
        """Deletes what a process stopped between storing an item and deleting it left behind."""
        if not self.trash.is_dir():
            return
        for path in self.trash.iterdir():
            try:
                fd = os.open(path / LOCK, os.O_RDWR)
            except OSError:
                shutil.rmtree(path, ignore_errors=True)
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its process is deleting it right now
            finally:
                os.close(fd)
            shutil.rmtree(path, ignore_errors=True)

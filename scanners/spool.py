"""A crash-safe staging area for what scanners send, until its original is stored.

    spool/incoming/<id>/   being received: meta.json, and the file or pages/0001.jpg, 0002.jpg...
    spool/ready/<id>/      fully received (moved there in one rename), waiting to be stored

A receiver writes into incoming/ and calls `complete()`, which renames the item into ready/.
`drain()` hands each ready item to the intake, which stores the original before anything else,
and only then deletes the item. After a crash `recover()` moves what was left in incoming/ to
ready/ marked incomplete, so a partial upload becomes a batch that says so instead of vanishing.
Storing an item twice (a crash between storing and deleting) gives the same bytes, hence the same
batch id: what was fully received is ingested exactly once.
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
        self._drain_lock = threading.Lock()
        self._receiving: dict[str, int] = {}  # item id -> fd holding its lock

    def _hold(self, path: Path) -> bool:
        """Locks an incoming item for this process; the lock dies with the process, so recovery
        can tell an item still being received (locked) from one left by a crash (free)."""
        fd = os.open(path / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
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

    def complete(self, item: SpoolItem, incomplete: str | None = None) -> SpoolItem:
        """All of it arrived (or all that will: `incomplete` says why not): ready to be stored."""
        if incomplete:
            item.update(incomplete=incomplete)
        target = self.ready / item.id
        os.replace(item.path, target)
        _sync_dir(self.ready)
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
        stays for the next drain."""
        records = []
        with self._drain_lock:
            for path in sorted(self.ready.iterdir()):
                item = SpoolItem(path)
                try:
                    records.append(self.store(item, accept))
                except Exception:
                    log.exception("could not store spooled item %s; kept for a retry", path.name)
        return records

    def store(self, item: SpoolItem, accept: Accept) -> dict[str, Any]:
        meta = item.meta
        payload = item.payload()
        if payload is None:
            raise ValueError(f"spool item {item.id} carries nothing")
        record = accept(payload, source=meta["channel"], device=meta["device"],
                        file_name=meta.get("file_name") or payload.name,
                        dossier=meta.get("dossier"), agency=meta.get("agency"),
                        incomplete=meta.get("incomplete"))
        shutil.rmtree(item.path)
        return record

"""Watched folders ("scan to SMB folder"): one folder per scanner, each finished file stored once.

A scanner writes slowly, sometimes under a temporary name first, and a network mount gives no
inotify events. So inotify (watchdog) only wakes us early; a polling pass every `poll_seconds` finds
what events miss. A file is taken when it was closed after writing (IN_CLOSE_WRITE) or when its size
and mtime have not changed for `settle_seconds`; temporary names are never taken.

Neither moment proves the writer is done: a writer may pause longer than the settle time, or append
in several open/write/close rounds (each one a close event). So a scan is also read by its own
structure (`ocr.decode.cut_short`: a PDF without %%EOF, a JPEG without EOI, a PNG without IEND, a
TIFF whose strips reach past the end): one that is cut short waits. If it stays cut short and
unchanged for `unfinished_seconds`, the writer is taken to have given up: the file is stored all
the same, marked incomplete with the reason, so that it goes to review instead of passing for a
whole scan (and is never lost).

Taking a file: copy it into a spool item (fsynced, under a hidden name until complete, so that a
crash mid-copy leaves nothing that looks received), complete the item, store it through `accept`,
and only then move the source to `<folder>/.sohoa-done/` (or delete it). A crash anywhere before
that move leaves the file in the folder: it is simply taken again, and the same bytes give the same
batch. Files of other types go to `<folder>/.sohoa-rejected/` with the reason beside them.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import (
    FileClosedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from ocr.decode import cut_short
from scanners.config import FolderConfig
from scanners.receiving import SCAN_EXTENSIONS, fsync_dir, is_temporary_name
from scanners.spool import Accept, Spool, SpoolItem

log = logging.getLogger(__name__)

DONE = ".sohoa-done"
REJECTED = ".sohoa-rejected"

Key = tuple[int, int]  # (size, mtime_ns): a file that keeps this key has stopped changing


# How each scan format begins. A PDF may have a little junk before its header.
_MAGIC = (b"%PDF", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"II*\x00", b"MM\x00*")
_PDF_HEADER_WITHIN = 1024


@dataclass
class _Seen:
    key: Key
    since: float  # monotonic time the file was first seen with this key
    read_at: float | None = None  # monotonic time `unfinished` was read (None: not yet)
    unfinished: str | None = None  # why the file is not whole yet (cut_short), None if whole


def why_unfinished(path: Path) -> str | None:
    """Why a scan is not whole yet by its own structure, or None when it ends as its format says.

    Only content that begins like a scan format (or like the first bytes of one) is judged: other
    content cannot be finished by waiting, so it is taken at once and the pipeline says what it
    is. Raises OSError if the file cannot be read (e.g. gone meanwhile)."""
    with path.open("rb") as f:
        head = f.read(_PDF_HEADER_WITHIN)
    if not any(head.startswith(m) or m.startswith(head) for m in _MAGIC) and b"%PDF" not in head:
        return None
    return cut_short(path)


def _unique(target: Path) -> Path:
    """A name in `target`'s folder not yet taken (scanners reuse names like scan0001.pdf)."""
    if not target.exists():
        return target
    return target.with_name(f"{target.stem}.{time.time_ns():x}{target.suffix}")


class _Events(FileSystemEventHandler):
    """Runs on watchdog's thread: notes closed-after-writing files and wakes the receiver."""

    def __init__(self, receiver: FolderReceiver) -> None:
        self.receiver = receiver

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        if isinstance(event, FileClosedEvent):
            self.receiver.note_closed(Path(os.fsdecode(event.src_path)))
        elif (isinstance(event, FileMovedEvent)
              and is_temporary_name(Path(os.fsdecode(event.src_path)).name)):
            # A temporary name renamed to its final one: the writer is done with it.
            self.receiver.note_closed(Path(os.fsdecode(event.dest_path)))
        self.receiver.wake()


class FolderReceiver:
    """Watches every configured folder from one thread; see the module docstring."""

    def __init__(self, config: FolderConfig, spool: Spool, accept: Accept) -> None:
        self.config = config
        self.spool = spool
        self.accept = accept
        self._folders = {device: Path(folder) for device, folder in config.devices.items()}
        self._seen: dict[Path, _Seen] = {}
        self._closed: dict[Path, Key] = {}  # path -> its key when closed after writing
        self._spooled: dict[Path, tuple[SpoolItem, Key]] = {}  # copied, not stored yet
        self._missing: set[Path] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="sohoa-folder", daemon=True)
        self._observer: BaseObserver | None = None

    def start(self) -> FolderReceiver:
        if self.config.inotify:
            self._observer = Observer()
            handler = _Events(self)
            for folder in self._folders.values():
                if folder.is_dir():
                    self._observer.schedule(handler, str(folder), recursive=False)
                else:
                    log.warning("watched folder %s does not exist (yet): polling only", folder)
            self._observer.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join()
        if self._thread.is_alive():
            self._thread.join()

    def wake(self) -> None:
        self._wake.set()

    def note_closed(self, path: Path) -> None:
        if is_temporary_name(path.name):
            return
        try:
            st = path.stat()
        except OSError:
            return
        with self._lock:
            self._closed[path] = (st.st_size, st.st_mtime_ns)

    def _run(self) -> None:
        while not self._stopping:
            try:
                delay = self.scan_once()
            except Exception:
                log.exception("watched folder pass failed")
                delay = self.config.poll_seconds
            self._wake.wait(delay)
            self._wake.clear()

    def scan_once(self) -> float:
        """One pass over every folder: takes what is ready. Returns how long to sleep before the
        next pass (sooner than `poll_seconds` when a file will have settled by then)."""
        now = time.monotonic()
        present: set[Path] = set()
        next_pass = self.config.poll_seconds
        for device, folder in self._folders.items():
            try:
                entries = list(os.scandir(folder))
            except OSError as e:
                if folder not in self._missing:
                    log.warning("cannot read watched folder %s of %s: %s", folder, device, e)
                    self._missing.add(folder)
                continue
            self._missing.discard(folder)
            for entry in entries:
                if self._stopping:
                    return 0
                try:
                    if is_temporary_name(entry.name) or not entry.is_file(follow_symlinks=False):
                        continue
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue  # gone meanwhile
                path = Path(entry.path)
                present.add(path)
                key = (st.st_size, st.st_mtime_ns)
                try:
                    wait = self._wait_before_taking(path, key, now)
                except OSError:
                    continue  # gone or unreadable meanwhile: seen again on the next pass
                if wait is None:
                    self._take(device, folder, path, key, self._incomplete(path))
                else:
                    next_pass = min(next_pass, wait)
        with self._lock:  # forget files that left the folder
            for table in (self._seen, self._spooled):
                for gone in set(table) - present:
                    del table[gone]
            for gone in set(self._closed) - present:
                if not gone.exists():  # (not one closed since this pass listed the folder)
                    del self._closed[gone]
        return max(0.05, next_pass)

    def _wait_before_taking(self, path: Path, key: Key, now: float) -> float | None:
        """None when the file is to be taken now (whole, or unfinished for too long: see
        `_incomplete`); otherwise seconds until it may be (inf: not by waiting)."""
        seen = self._seen.get(path)
        if seen is None or seen.key != key:
            seen = self._seen[path] = _Seen(key, now)
        if key[0] == 0:
            return float("inf")  # created, nothing written yet: the writer still holds it
        with self._lock:
            closed = self._closed.get(path) == key
        stable = now - seen.since
        if not closed and stable < self.config.settle_seconds:
            return self.config.settle_seconds - stable
        if path.suffix.lower() not in SCAN_EXTENSIONS:
            return None  # set aside at once: waiting would not make it a scan
        if self._unfinished(path, seen, now, stable) is None:
            return None
        wait = self.config.unfinished_seconds
        if stable < wait:
            return wait - stable
        return None

    def _unfinished(self, path: Path, seen: _Seen, now: float, stable: float) -> str | None:
        """`why_unfinished`, read again only when its last answer may be stale, so that a pass
        stays cheap: read once for each (size, mtime); while it says unfinished, again every
        `settle_seconds` and once more before the wait runs out (a network mount with coarse
        times may keep the same key while a preallocated file fills in)."""
        if seen.read_at is None or (
                seen.unfinished is not None and seen.read_at < now
                and (now - seen.read_at >= self.config.settle_seconds
                     or stable >= self.config.unfinished_seconds)):
            seen.unfinished = why_unfinished(path)
            seen.read_at = now
        return seen.unfinished

    def _incomplete(self, path: Path) -> str | None:
        """Why a file about to be taken is stored as incomplete: it is still cut short after
        `unfinished_seconds` without a change (the writer gave up, or died). None if whole."""
        seen = self._seen.get(path)
        if seen is None or seen.unfinished is None:
            return None
        return f"the file was not whole after {self.config.unfinished_seconds:g} s: {seen.unfinished}"

    def _take(self, device: str, folder: Path, path: Path, key: Key,
              incomplete: str | None = None) -> None:
        if path.suffix.lower() not in SCAN_EXTENSIONS:
            self._set_aside(folder, path, f"unsupported file type {path.suffix or '(no extension)'}"
                            f"; sohoa takes {', '.join(sorted(SCAN_EXTENSIONS))}")
            return
        pending = self._spooled.get(path)
        if pending is not None and pending[1] == key and pending[0].path.exists():
            item = pending[0]  # copied on an earlier pass, its store failed: only retry storing
        else:
            copied = self._copy_to_spool(device, path, key, incomplete)
            if copied is None:
                return
            item = copied
            self._spooled[path] = (item, key)
        self.spool.drain(self.accept)
        if item.path.exists():
            log.warning("%s is spooled but not stored yet; retrying on the next pass", path)
            return
        self._spooled.pop(path, None)
        self._seen.pop(path, None)
        self._let_go(folder, path)

    def _copy_to_spool(self, device: str, path: Path, key: Key,
                       incomplete: str | None) -> SpoolItem | None:
        item = self.spool.open("folder", device, file_name=path.name, source_path=str(path))
        target = item.file(path.name)
        hidden = target.with_name(f".{target.name}.part")  # invisible to the spool until complete
        try:
            with path.open("rb") as src, hidden.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
                dst.flush()
                os.fsync(dst.fileno())
            after = path.stat()
        except OSError as e:
            log.warning("could not copy %s (%s); trying again later", path, e)
            self._drop_copy(item, hidden)
            return None
        if (after.st_size, after.st_mtime_ns) != key:
            log.info("%s changed while being copied: waiting for it to settle", path)
            self._drop_copy(item, hidden)
            self._seen.pop(path, None)
            return None
        os.replace(hidden, target)
        fsync_dir(target.parent)
        if incomplete:
            log.warning("%s taken all the same, marked incomplete: %s", path, incomplete)
        return self.spool.complete(item, incomplete=incomplete)

    def _drop_copy(self, item: SpoolItem, hidden: Path) -> None:
        """Abandons a copy that is not the whole file: the source still holds every byte."""
        try:
            hidden.unlink(missing_ok=True)
            self.spool.discard(item)
        except OSError as e:
            log.warning("could not remove spool item %s: %s", item.id, e)

    def _let_go(self, folder: Path, path: Path) -> None:
        """The original is stored: the folder copy can go."""
        try:
            if self.config.delete_after:
                path.unlink()
                log.info("%s stored and deleted", path)
                return
            done = folder / DONE
            done.mkdir(exist_ok=True)
            os.replace(path, _unique(done / path.name))
            log.info("%s stored and moved to %s", path, DONE)
        except FileNotFoundError:
            pass  # removed by someone else meanwhile: it is stored all the same
        except OSError as e:
            # Left in place it is taken again next pass, which stores nothing new.
            log.error("%s is stored but could not be moved away: %s", path, e)

    def _set_aside(self, folder: Path, path: Path, reason: str) -> None:
        rejected = folder / REJECTED
        try:
            rejected.mkdir(exist_ok=True)
            target = _unique(rejected / path.name)
            os.replace(path, target)
            target.with_name(target.name + ".reason.txt").write_text(reason + "\n")
        except OSError as e:
            log.error("could not set %s aside (%s): %s", path, reason, e)
            return
        self._seen.pop(path, None)
        log.warning("%s set aside in %s: %s", path, REJECTED, reason)

"""What every push receiver (scanners/folder.py, ftp.py, email.py) shares: which files are scans,
names made safe, durable renames, and the thread that stores what the spool holds.

The order every receiver follows, so that a crash at any moment loses nothing, is told in
scanners/receivers.py, which starts them.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path
from typing import Protocol

from scanners.spool import Accept, Spool

log = logging.getLogger(__name__)

# What the pipeline digitizes; anything else pushed to us is set aside, never deleted.
SCAN_EXTENSIONS = frozenset({".pdf", ".tif", ".tiff", ".jpg", ".jpeg", ".png"})

# Names that writers (scanners, SMB clients, browsers, editors, upload tools) give a file while it
# is still being written, before renaming it to its final name.
_TEMP_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".crdownload", ".filepart", ".!ut",
                  ".download", ".swp", ".lck", ".lock", ".inprogress", ".uploading", "~")


def is_temporary_name(name: str) -> bool:
    """A name that says "still being written": dotfiles, `~` prefix or suffix, `.tmp`, `.part`..."""
    lower = name.lower()
    return lower.startswith((".", "~")) or lower.endswith(_TEMP_SUFFIXES)


def safe_name(name: str, default: str = "scan") -> str:
    """A file name a client sent, made harmless: no directories, no leading dots (the spool hides
    dotfiles), no control characters."""
    name = re.split(r"[/\\]", name)[-1]
    name = re.sub(r"[\x00-\x1f\x7f]", "", name).strip().lstrip(".").strip()
    return name[:200] or default


def fsync_dir(path: Path) -> None:
    """A rename is durable only once its directory is synced."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Receiver(Protocol):
    def stop(self) -> None: ...


class Drainer:
    """Stores completed spool items off the thread that talks to the scanner (an FTP or SMTP loop
    must not wait for storage), when kicked and every `retry_seconds` (a store that failed, say
    with object storage down, is retried without anyone having to push again)."""

    def __init__(self, spool: Spool, accept: Accept, retry_seconds: float = 60.0,
                 name: str = "sohoa-drain") -> None:
        self.spool = spool
        self.accept = accept
        self.retry_seconds = retry_seconds
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Drainer:
        self._thread.start()
        return self

    def kick(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Returns once the store in progress (if any) is over; what is still ready waits in the
        spool for the next start."""
        self._stopping = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.retry_seconds)
            self._wake.clear()
            if self._stopping:
                return
            try:
                self.spool.drain(self.accept)
            except Exception:  # drain logs per item; this is the spool itself failing
                log.exception("draining the spool failed; retrying in %.0f s", self.retry_seconds)

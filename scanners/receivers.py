"""Starts the push receivers (watched folder, FTP, e-mail) over one spool, and what they share.

Every receiver follows the same order, so that a crash at any moment loses nothing: what arrives is
written into a spool item, the item is completed only when fully received, it is stored through
`accept` (which keeps the original before anything else), and only then is the source let go (a
folder file moved away, an SMTP 250 answered after the spool write). Storing the same bytes twice
gives the same batch, so redoing a step after a crash is harmless.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from scanners.spool import Accept, Spool

if TYPE_CHECKING:
    from scanners.email import EmailConfig
    from scanners.folder import FolderConfig
    from scanners.ftp import FtpConfig

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


def start_receivers(spool: Spool, accept: Accept, folder: FolderConfig | None = None,
                    ftp: FtpConfig | None = None, email: EmailConfig | None = None,
                    retry_seconds: float = 60.0) -> list[Receiver]:
    """Recovers what a previous run left in the spool (e-mails not yet split, receptions cut by a
    crash: kept as incomplete batches), stores it, then starts each configured receiver. Call it
    once at start; items that a live receiver is still writing are locked and left alone."""
    from scanners.email import EmailReceiver
    from scanners.folder import FolderReceiver
    from scanners.ftp import FtpReceiver

    if email is not None:
        EmailReceiver.recover_inbox(spool)  # messages accepted but not yet split into items
    recovered = spool.recover()
    if recovered:
        log.warning("%d interrupted reception(s) kept as incomplete batches", len(recovered))
    spool.drain(accept)
    started: list[Receiver] = []
    try:
        if folder is not None:
            started.append(FolderReceiver(folder, spool, accept).start())
        if ftp is not None:
            started.append(FtpReceiver(ftp, spool, accept, retry_seconds=retry_seconds).start())
        if email is not None:
            started.append(EmailReceiver(email, spool, accept, retry_seconds=retry_seconds).start())
    except Exception:
        for receiver in started:
            receiver.stop()
        raise
    return started

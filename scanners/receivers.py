"""Starts the push receivers (watched folder, FTP, e-mail) over one spool (what they share is in
scanners/receiving.py).

Every receiver follows the same order, so that a crash at any moment loses nothing: what arrives is
written into a spool item, the item is completed only when fully received, it is stored through
`accept` (which keeps the original before anything else), and only then is the source let go (a
folder file moved away, an SMTP 250 answered after the spool write). Storing the same bytes twice
gives the same batch, so redoing a step after a crash is harmless.
"""

from __future__ import annotations

import logging

from scanners.config import EmailConfig, FolderConfig, FtpConfig
from scanners.email import EmailReceiver
from scanners.folder import FolderReceiver
from scanners.ftp import FtpReceiver
from scanners.receiving import Receiver
from scanners.spool import Accept, Spool

log = logging.getLogger(__name__)


def start_receivers(spool: Spool, accept: Accept, folder: FolderConfig | None = None,
                    ftp: FtpConfig | None = None, email: EmailConfig | None = None,
                    retry_seconds: float = 60.0) -> list[Receiver]:
    """Recovers what a previous run left in the spool (e-mails not yet split, receptions cut by a
    crash: kept as incomplete batches), stores it, then starts each configured receiver. Call it
    once at start; items that a live receiver is still writing are locked and left alone."""
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

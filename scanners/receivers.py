"""Starts the push receivers (watched folder, FTP, e-mail) over one spool (what they share is in
scanners/receiving.py), each registered by its section of the settings.

`RECEIVERS` maps a settings section (the `ScannersConfig` field and its SOHOA_<SECTION> variable, a
pydantic model of scanners/config.py, None when the receiver is off) to how a receiver of that
kind is started. Adding a receiver: its module (a class with `start()` and `stop()`), its config
model beside the others in scanners/config.py, the `ScannersConfig` field of that type and its flat
name in ingest/settings.py's FLAT (tests/test_push_receivers.py checks both against this table),
and one `register(...)` line here.

Every receiver follows the same order, so that a crash at any moment loses nothing: what arrives is
written into a spool item, the item is completed only when fully received, it is stored through
`accept` (which keeps the original before anything else), and only then is the source let go (a
folder file moved away, an SMTP 250 answered after the spool write). Storing the same bytes twice
gives the same batch, so redoing a step after a crash is harmless.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from scanners.config import EmailConfig, FolderConfig, FtpConfig
from scanners.receiving import Receiver
from scanners.spool import Accept, Spool

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReceiverKind:
    section: str  # the Settings field, SOHOA_<SECTION> in the environment
    config: type[BaseModel]  # that section's model
    # (config, spool, accept, retry_seconds) -> the receiver, started; its module is imported
    # only then, so that a process without that receiver does not load its server library.
    start: Callable[[Any, Spool, Accept, float], Receiver]
    # Called with the spool before the spool's own recovery, when the section is configured:
    # what the receiver accepted but had not yet turned into spool items.
    recover: Callable[[Spool], object] | None = None


RECEIVERS: dict[str, ReceiverKind] = {}  # by section, in the order they start


def register(kind: ReceiverKind) -> ReceiverKind:
    if kind.section in RECEIVERS:
        raise ValueError(f"a receiver is already registered for the section {kind.section!r}")
    RECEIVERS[kind.section] = kind
    return kind


def _folder(config: FolderConfig, spool: Spool, accept: Accept, retry_seconds: float) -> Receiver:
    from scanners.folder import FolderReceiver

    return FolderReceiver(config, spool, accept).start()


def _ftp(config: FtpConfig, spool: Spool, accept: Accept, retry_seconds: float) -> Receiver:
    from scanners.ftp import FtpReceiver

    return FtpReceiver(config, spool, accept, retry_seconds=retry_seconds).start()


def _email(config: EmailConfig, spool: Spool, accept: Accept, retry_seconds: float) -> Receiver:
    from scanners.email import EmailReceiver

    return EmailReceiver(config, spool, accept, retry_seconds=retry_seconds).start()


def _email_inbox(spool: Spool) -> int:
    from scanners.email import EmailReceiver

    return EmailReceiver.recover_inbox(spool)  # messages accepted but not yet split into items


register(ReceiverKind("folder", FolderConfig, _folder))
register(ReceiverKind("ftp", FtpConfig, _ftp))
register(ReceiverKind("smtp", EmailConfig, _email, recover=_email_inbox))


def configured(settings: object | None = None, **sections: BaseModel | None) -> dict[str, Any]:
    """The configured sections, by name: each registered section of `settings` (an object with
    those attributes, e.g. the settings' ScannersConfig) unless given by keyword; sections set to None are
    off. A keyword that is no registered section is a TypeError."""
    unknown = set(sections) - set(RECEIVERS)
    if unknown:
        raise TypeError(f"no receiver is registered for {sorted(unknown)}; "
                        f"registered: {', '.join(RECEIVERS)}")
    found = {}
    for section, kind in RECEIVERS.items():
        config = sections[section] if section in sections else getattr(settings, section, None)
        if config is None:
            continue
        if not isinstance(config, kind.config):
            raise TypeError(f"the {section} section is a {kind.config.__name__}, "
                            f"not {type(config).__name__}")
        found[section] = config
    return found


def start_receivers(spool: Spool, accept: Accept, settings: object | None = None,
                    retry_seconds: float = 60.0, **sections: BaseModel | None) -> list[Receiver]:
    """Recovers what a previous run left in the spool (e-mails not yet split, receptions cut by a
    crash: kept as incomplete batches), stores it, then starts a receiver for each configured
    section (`configured`: of `settings`, or by keyword: `ftp=FtpConfig(...)`). Call it once at
    start; items that a live receiver is still writing are locked and left alone."""
    configs = configured(settings, **sections)
    for section in configs:
        recover = RECEIVERS[section].recover
        if recover is not None:
            recover(spool)
    recovered = spool.recover()
    if recovered:
        log.warning("%d interrupted reception(s) kept as incomplete batches", len(recovered))
    spool.drain(accept)
    started: list[Receiver] = []
    try:
        for section, config in configs.items():
            started.append(RECEIVERS[section].start(config, spool, accept, retry_seconds))
    except Exception:
        for receiver in started:
            receiver.stop()
        raise
    return started

"""Scan-to-e-mail: an SMTP server (aiosmtpd) that turns each scan attached to a message into a batch.

The envelope sender identifies the scanner: only configured addresses are accepted (550 at MAIL
FROM otherwise, before anything is stored). An accepted message is first written whole, fsynced,
to spool/email-inbox/; each PDF/TIFF/JPEG/PNG attachment then becomes its own spool item (hence its
own batch, with the sender's device), and the inbox copy is removed. A message with no usable
attachment is kept raw in spool/rejected/ with the reason. 250 is answered only after those spool
writes succeeded: on any failure the scanner gets a 451 and sends again. A crash after the inbox
write and before the split is finished at the next start (`EmailReceiver.recover_inbox`); an
attachment split twice gives the same bytes, hence the same batch.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import time
import uuid
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from scanners.config import EmailConfig
from scanners.receivers import SCAN_EXTENSIONS, Drainer, fsync_dir, safe_name
from scanners.spool import Accept, Spool

log = logging.getLogger(__name__)

INBOX = "email-inbox"
REJECTED = "rejected"
MESSAGE = "message.eml"
META = "meta.json"

# Content types of scans, and the extension a nameless attachment of that type gets.
SCAN_TYPES = {
    "application/pdf": ".pdf", "application/x-pdf": ".pdf", "image/tiff": ".tiff",
    "image/tif": ".tiff", "image/jpeg": ".jpg", "image/jpg": ".jpg", "image/pjpeg": ".jpg",
    "image/png": ".png",
}


def scan_attachments(message: EmailMessage) -> list[tuple[str, bytes]]:
    """(file name, bytes) of each part that is a scan: by content type or by file extension (an
    application/octet-stream named .pdf counts). A nameless inline picture is the body's logo."""
    found: list[tuple[str, bytes]] = []
    for part in message.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        filename = part.get_filename()
        ext = Path(filename).suffix.lower() if filename else ""
        if ctype not in SCAN_TYPES and ext not in SCAN_EXTENSIONS:
            continue
        if (not filename and part.get_content_disposition() != "attachment"
                and not ctype.endswith("pdf")):
            continue
        data = part.get_payload(decode=True)
        if not isinstance(data, bytes) or not data:
            continue
        name = safe_name(filename or "", default=f"scan-{len(found) + 1}")
        if Path(name).suffix.lower() not in SCAN_EXTENSIONS:
            name += SCAN_TYPES.get(ctype, "")
        found.append((name, data))
    return found


def _write_synced(path: Path, data: bytes) -> None:
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


class _Smtp:
    """aiosmtpd handler hooks; they run on the SMTP thread's event loop."""

    def __init__(self, receiver: EmailReceiver) -> None:
        self.receiver = receiver

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str,
                          mail_options: list[str]) -> str:
        if address.lower() not in self.receiver.config.senders:
            log.warning("mail from %r (%s) refused: not a configured scanner", address,
                        session.peer)
            return "550 5.7.1 Sender not allowed"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if not envelope.mail_from or envelope.mail_from.lower() not in self.receiver.config.senders:
            return "550 5.7.1 Sender not allowed"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        sender = envelope.mail_from
        device = self.receiver.config.senders[sender.lower()]
        try:
            await asyncio.get_running_loop().run_in_executor(
                None, self.receiver.receive, raw, sender, device)
        except Exception:
            log.exception("could not spool the message from %s", sender)
            return "451 4.3.0 Could not store the message; try again later"
        self.receiver.drainer.kick()
        return "250 2.0.0 Message stored"


class _Controller(Controller):
    """aiosmtpd's threaded controller, able to listen on port 0 (it connects to its own port once
    started, so it must learn the port the system chose first)."""

    def _trigger_server(self) -> None:
        if self.server is not None and self.port == 0:
            self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class EmailReceiver:
    """The SMTP server in a background thread: `EmailReceiver(config, spool, accept).start()`,
    `.port` (known after start), `.stop()`."""

    def __init__(self, config: EmailConfig, spool: Spool, accept: Accept,
                 retry_seconds: float = 60.0) -> None:
        self.config = config
        self.spool = spool
        self.drainer = Drainer(spool, accept, retry_seconds, name="sohoa-email-drain")
        self._controller = _Controller(_Smtp(self), hostname=config.host, port=config.port,
                                       server_hostname=config.hostname,
                                       data_size_limit=config.max_message_bytes)
        self.port: int = config.port

    def start(self) -> EmailReceiver:
        self.drainer.start()
        self._controller.start()
        self.port = self._controller.port
        log.info("scan-to-e-mail listening on %s:%d", self.config.host, self.port)
        return self

    def stop(self) -> None:
        self._controller.stop(no_assert=True)
        self.drainer.stop()

    def receive(self, raw: bytes, sender: str, device: str) -> None:
        """Writes the message to the inbox (durably: a crash before 250 leaves only a hidden
        directory, and the scanner sends again), then splits it into spool items."""
        inbox = self.spool.root / INBOX
        inbox.mkdir(exist_ok=True)
        entry_id = f"{time.time_ns():x}-{uuid.uuid4().hex[:8]}"
        hidden = inbox / f".{entry_id}"
        hidden.mkdir()
        _write_synced(hidden / MESSAGE, raw)
        _write_synced(hidden / META, json.dumps(
            {"channel": "email", "device": device, "mail_from": sender,
             "received_at": time.time()}).encode())
        entry = inbox / entry_id
        os.replace(hidden, entry)
        fsync_dir(inbox)
        self.split(self.spool, entry)

    @staticmethod
    def split(spool: Spool, entry: Path) -> int:
        """One spool item per scan attached to the message in `entry`; a message without any is
        moved to spool/rejected/. Returns the number of items made."""
        meta = json.loads((entry / META).read_text())
        raw = (entry / MESSAGE).read_bytes()
        try:
            message = BytesParser(policy=policy.default).parsebytes(raw)
            attachments = scan_attachments(message)  # type: ignore[arg-type]
            message_id = str(message.get("Message-ID") or "")[:200]
            subject = str(message.get("Subject") or "")[:200]
        except Exception as e:  # a message the parser chokes on: keep it for a human
            log.exception("message %s from %s cannot be parsed", entry.name, meta["mail_from"])
            attachments, message_id, subject = [], "", ""
            reason = f"unparseable message: {type(e).__name__}: {e}"
        else:
            reason = "no PDF, TIFF, JPEG or PNG attachment"
        if not attachments:
            rejected = spool.root / REJECTED
            rejected.mkdir(exist_ok=True)
            _write_synced(entry / META, json.dumps({**meta, "reason": reason,
                                                    "subject": subject}).encode())
            os.replace(entry, rejected / entry.name)
            fsync_dir(rejected)
            log.warning("message from %s (%s) kept in %s/%s: %s", meta["mail_from"],
                        meta["device"], REJECTED, entry.name, reason)
            return 0
        for name, data in attachments:
            item = spool.open("email", meta["device"], file_name=name, mail_from=meta["mail_from"],
                              message_id=message_id, subject=subject)
            target = item.file(name)
            hidden = target.with_name(f".{target.name}.part")  # a crash here leaves no payload
            try:
                _write_synced(hidden, data)
                os.replace(hidden, target)
                fsync_dir(target.parent)
            except OSError:
                hidden.unlink(missing_ok=True)  # the message is still in the inbox
                spool.discard(item)
                raise
            spool.complete(item)
        shutil.rmtree(entry)
        log.info("message from %s (%s): %d scan(s) spooled", meta["mail_from"], meta["device"],
                 len(attachments))
        return len(attachments)

    @classmethod
    def recover_inbox(cls, spool: Spool) -> int:
        """At start: splits messages accepted before a crash; drops hidden entries (written before
        the 250 that the scanner never got, so it sends them again)."""
        inbox = spool.root / INBOX
        if not inbox.is_dir():
            return 0
        made = 0
        for entry in sorted(inbox.iterdir()):
            if entry.name.startswith("."):
                shutil.rmtree(entry, ignore_errors=True)
            elif (entry / MESSAGE).exists() and (entry / META).exists():
                made += cls.split(spool, entry)
        return made

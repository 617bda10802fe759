"""Scan-to-e-mail: an SMTP server (aiosmtpd) that turns each scan attached to a message into a batch.

Who may send: with `accounts` configured, each scanner logs in with its own SMTP AUTH account
(PLAIN or LOGIN; passwords compared in constant time, a failure answered 535 after a delay and
logged without the password); MAIL FROM before AUTH gets 530, and the account names the device.
AUTH is offered only over TLS (STARTTLS with the configured certificate) unless `allow_plain_auth`
is set for LAN scanners that cannot do TLS. The envelope sender is then a second check: an account
may be limited to its own sender addresses (550 otherwise). Without accounts the envelope sender is
the only check, as it was: only configured addresses are accepted and name the device (550 at MAIL
FROM otherwise, before anything is stored); a warning at start says so.

An accepted message is first written whole, fsynced, to spool/email-inbox/; each PDF/TIFF/JPEG/PNG
attachment then becomes its own spool item (hence its own batch, with the sending device), and the
inbox copy is removed. A message with no usable attachment is kept raw in spool/rejected/ with the
reason. 250 is answered only after those spool writes succeeded: on any failure the scanner gets a
451 and sends again. A crash after the inbox write and before the split is finished at the next
start (`EmailReceiver.recover_inbox`); an attachment split twice gives the same bytes, hence the
same batch.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import shutil
import ssl
import time
import uuid
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, LoginPassword, Session

from scanners.config import EmailAccount, EmailConfig
from scanners.receiving import SCAN_EXTENSIONS, Drainer, fsync_dir, safe_name
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


def _digest(secret: bytes) -> bytes:
    return hashlib.sha256(secret).digest()


class _Accounts:
    """The SMTP AUTH accounts, with passwords checked in constant time (digests of equal length,
    and a dummy one for unknown users so that a wrong name takes as long as a wrong password), and
    the envelope senders each may use (an empty set: any)."""

    _UNKNOWN = _digest(b"\0no such user\0")

    def __init__(self, config: EmailConfig) -> None:
        self.by_name: dict[str, EmailAccount] = {a.username: a for a in config.accounts}
        self._secrets = {
            a.username: _digest(a.password.get_secret_value().encode("utf-8", "surrogateescape"))
            for a in config.accounts}
        self.senders: dict[str, frozenset[str]] = {
            a.username: frozenset(a.senders) | {address for address, device
                                                in config.senders.items() if device == a.device}
            for a in config.accounts}

    def __bool__(self) -> bool:
        return bool(self.by_name)

    def check(self, login: bytes, password: bytes) -> EmailAccount | None:
        username = login.decode("utf-8", "surrogateescape")
        expected = self._secrets.get(username, self._UNKNOWN)
        matches = hmac.compare_digest(_digest(password), expected)
        return self.by_name[username] if matches and username in self._secrets else None


class _Session(Session):
    """aiosmtpd's session without the deprecation warning it logs on every successful AUTH
    (its smtp_AUTH still sets the legacy `login_data`)."""

    @property
    def login_data(self) -> Any:
        return self._login_data

    @login_data.setter
    def login_data(self, value: Any) -> None:
        self._login_data = value


class _Server(SMTP):
    """One SMTP connection: AUTH required when accounts are configured (checked here rather than
    with aiosmtpd's `auth_required`, which warns on every connection when AUTH may go without TLS);
    a failed AUTH answered only after `auth_failed_delay_seconds`, and the connection closed after
    MAX_AUTH_FAILURES of them (as pyftpdlib does for FTP logins)."""

    MAX_AUTH_FAILURES = 3

    def __init__(self, handler: _Smtp, **kwargs: Any) -> None:
        super().__init__(handler, authenticator=handler.authenticate, **kwargs)
        self.receiver = handler.receiver
        self.auth_failures = 0

    def _create_session(self) -> Session:
        return _Session(self.loop)

    async def check_auth_needed(self, caller_method: str) -> bool:
        assert self.session is not None
        if self.receiver.accounts and not self.session.authenticated:
            log.warning("smtp %s from %s refused: AUTH first", caller_method, self.session.peer)
            await self.push("530 5.7.0 Authentication required")
            return True
        return False

    async def _slowed(self, result: AuthResult) -> AuthResult:
        if result.success or result.handled:  # not a wrong password (a syntax error, say)
            return result
        await asyncio.sleep(self.receiver.config.auth_failed_delay_seconds)
        self.auth_failures += 1
        if self.auth_failures < self.MAX_AUTH_FAILURES:
            return result  # answered 535
        assert self.session is not None and self.transport is not None
        log.warning("smtp connection from %s closed after %d failed AUTH attempts",
                    self.session.peer, self.auth_failures)
        await self.push("421 4.7.0 Too many failed authentication attempts; closing")
        if self._handler_coroutine is not None:
            self._handler_coroutine.cancel()
        self.transport.close()
        return AuthResult(success=False, handled=True)

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._slowed(await super().auth_PLAIN(_, args))

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._slowed(await super().auth_LOGIN(_, args))


class _Smtp:
    """aiosmtpd handler hooks; they run on the SMTP thread's event loop."""

    def __init__(self, receiver: EmailReceiver) -> None:
        self.receiver = receiver

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                     auth_data: Any) -> AuthResult:
        accounts = self.receiver.accounts
        if accounts and isinstance(auth_data, LoginPassword):
            account = accounts.check(auth_data.login, auth_data.password)
            if account is not None:
                log.info("smtp AUTH %s: %r (%s) from %s", mechanism, account.username,
                         account.device, session.peer)
                return AuthResult(success=True, auth_data=account.username)
            login = auth_data.login.decode("utf-8", "replace")[:100]
            log.warning("smtp AUTH %s as %r from %s refused: wrong username or password",
                        mechanism, login, session.peer)
        return AuthResult(success=False, handled=False)

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        if not self.receiver.accounts:  # nothing to log in to
            responses = [r for r in responses if not r.startswith("250-AUTH")]
        return responses

    async def handle_AUTH(self, server: Any, session: Any, envelope: Any, args: list[str]) -> Any:
        if not self.receiver.accounts:
            return "502 5.5.1 AUTH not available: no SMTP accounts are configured"
        return MISSING  # aiosmtpd's PLAIN and LOGIN, checked by `authenticate`

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str,
                          mail_options: list[str]) -> str:
        device = self.receiver.device_for(session, address)
        if device is None:
            return "550 5.7.1 Sender not allowed"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        envelope.sohoa_device = device
        envelope.sohoa_user = session.auth_data if session.authenticated else None
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if not envelope.mail_from or getattr(envelope, "sohoa_device", None) is None:
            return "550 5.7.1 Sender not allowed"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        sender = envelope.mail_from
        try:
            await asyncio.get_running_loop().run_in_executor(
                None, self.receiver.receive, raw, sender, envelope.sohoa_device,
                envelope.sohoa_user)
        except Exception:
            log.exception("could not spool the message from %s", sender)
            return "451 4.3.0 Could not store the message; try again later"
        self.receiver.drainer.kick()
        return "250 2.0.0 Message stored"


class _Controller(Controller):
    """aiosmtpd's threaded controller, able to listen on port 0 (it connects to its own port once
    started, so it must learn the port the system chose first), making our `_Server` sessions."""

    def factory(self) -> SMTP:
        return _Server(self.handler, **self.SMTP_kwargs)

    def _trigger_server(self) -> None:
        if self.server is not None and self.port == 0:
            self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


def _tls_context(config: EmailConfig) -> ssl.SSLContext | None:
    """The server side of STARTTLS, from the configured PEM certificate and key (TLS 1.2 at
    least; scanners present no client certificate)."""
    if config.certificate is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(config.certificate, config.private_key)
    return context


class EmailReceiver:
    """The SMTP server in a background thread: `EmailReceiver(config, spool, accept).start()`,
    `.port` (known after start), `.stop()`."""

    def __init__(self, config: EmailConfig, spool: Spool, accept: Accept,
                 retry_seconds: float = 60.0) -> None:
        self.config = config
        self.spool = spool
        self.accounts = _Accounts(config)
        self.drainer = Drainer(spool, accept, retry_seconds, name="sohoa-email-drain")
        self.tls = _tls_context(config)  # a bad certificate or key fails here, at start
        self._controller = _Controller(
            _Smtp(self), hostname=config.host, port=config.port,
            server_hostname=config.hostname, data_size_limit=config.max_message_bytes,
            tls_context=self.tls, auth_require_tls=not config.allow_plain_auth)
        self.port: int = config.port

    def device_for(self, session: Any, address: str) -> str | None:
        """The device a message from `address` in this session comes from, or None (logged) when
        the sender is not allowed: the authenticated account's device when there are accounts
        (the address must be among its senders, if it has any), else the device that the sender
        allow-list gives the address."""
        sender = address.lower()
        if not self.accounts:
            device = self.config.senders.get(sender)
            if device is None:
                log.warning("mail from %r (%s) refused: not a configured scanner", address,
                            session.peer)
            return device
        username = session.auth_data if session.authenticated else None
        account = self.accounts.by_name.get(username)
        if account is None:  # check_auth_needed has answered 530 already; never trust a default
            log.warning("mail from %r (%s) refused: not authenticated", address, session.peer)
            return None
        allowed = self.accounts.senders[account.username]
        if allowed and sender not in allowed:
            log.warning("mail from %r by %r (%s) from %s refused: not one of its senders",
                        address, username, account.device, session.peer)
            return None
        return account.device

    def start(self) -> EmailReceiver:
        self.drainer.start()
        self._controller.start()
        self.port = self._controller.port
        log.info("scan-to-e-mail listening on %s:%d (%s)", self.config.host, self.port,
                 "STARTTLS" if self.tls else "no TLS")
        if not self.accounts:
            log.warning("scan-to-e-mail is unauthenticated: the envelope sender, which anyone "
                        "can forge, is the only check; configure SMTP accounts (SOHOA_SMTP "
                        "accounts) so that each scanner logs in")
        elif self.config.allow_plain_auth and not self.tls:
            log.warning("scan-to-e-mail accepts AUTH without TLS (allow_plain_auth): scanner "
                        "passwords cross the network in clear text")
        return self

    def stop(self) -> None:
        self._controller.stop(no_assert=True)
        self.drainer.stop()

    def receive(self, raw: bytes, sender: str, device: str, smtp_user: str | None = None) -> None:
        """Writes the message to the inbox (durably: a crash before 250 leaves only a hidden
        directory, and the scanner sends again), then splits it into spool items."""
        inbox = self.spool.root / INBOX
        inbox.mkdir(exist_ok=True)
        entry_id = f"{time.time_ns():x}-{uuid.uuid4().hex[:8]}"
        hidden = inbox / f".{entry_id}"
        hidden.mkdir()
        _write_synced(hidden / MESSAGE, raw)
        _write_synced(hidden / META, json.dumps(
            {"channel": "email", "device": device, "mail_from": sender, "smtp_user": smtp_user,
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
                              smtp_user=meta.get("smtp_user"), message_id=message_id,
                              subject=subject)
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

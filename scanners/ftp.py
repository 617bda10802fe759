"""Scan-to-FTP: an FTP server (pyftpdlib) where each scanner logs in with its own account.

An upload is written straight into a fresh spool item (unbuffered, so that what a crash interrupts
is on disk up to the last chunk received). The file is complete when the STOR command finishes
(pyftpdlib's "file received" moment): the item is then completed and stored by a drain thread, so
the FTP loop never waits for storage. An upload that ends early (client gone, ABOR, idle timeout,
size limit) is completed all the same, marked incomplete ("upload interrupted after N bytes"): the
bytes become a batch that says so, never silently deleted. If sohoa itself dies mid-upload, the
item is still in spool/incoming/ and `Spool.recover()` does the same at the next start.

Accounts are per device (the device is recorded on every batch), passwords are compared in constant
time, and anonymous login is refused. A scanner may CWD, LIST and MKD in its (always empty) home,
and STOR; resuming (REST, APPE), STOU, downloads, renames and deletes are refused.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import logging
import os
import re
import threading
from pathlib import Path
from typing import Any, ClassVar

from pyftpdlib.authorizers import AuthenticationFailed, DummyAuthorizer
from pyftpdlib.handlers import DTPHandler, FTPHandler
from pyftpdlib.ioloop import IOLoop
from pyftpdlib.servers import FTPServer

from scanners.config import FtpAccount, FtpConfig
from scanners.receiving import Drainer, fsync_dir, safe_name
from scanners.spool import Accept, Spool, SpoolItem

log = logging.getLogger(__name__)


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).digest()


class _Accounts(DummyAuthorizer):
    """pyftpdlib's virtual users, with passwords checked in constant time (digests of equal length,
    and a dummy one for unknown users so that a wrong name takes as long as a wrong password)."""

    _UNKNOWN = _digest("\0no such user\0")

    def __init__(self, accounts: list[FtpAccount], homes: Path) -> None:
        super().__init__()
        self.devices: dict[str, str] = {}
        self._secrets: dict[str, bytes] = {}
        for account in accounts:
            home = homes / re.sub(r"[^A-Za-z0-9._-]", "_", account.username)
            home.mkdir(parents=True, exist_ok=True)
            self.add_user(account.username, "", str(home), perm="elmw")
            self.devices[account.username] = account.device
            self._secrets[account.username] = _digest(account.password.get_secret_value())

    def validate_authentication(self, username: str, password: str, handler: Any) -> None:
        expected = self._secrets.get(username, self._UNKNOWN)
        matches = hmac.compare_digest(_digest(password), expected)
        if not (matches and username in self._secrets):
            raise AuthenticationFailed("Authentication failed.")


class _Upload:
    """The file an upload is written to: unbuffered, capped at the size limit (the bytes up to it
    are kept), fsynced on close. Quacks like the file object pyftpdlib's data channel expects."""

    def __init__(self, path: Path, limit: int) -> None:
        self._file = open(path, "wb", buffering=0)  # noqa: SIM115 - closed by the data channel
        self.name = str(path)
        self.limit = limit
        self.written = 0
        self.too_large = False

    @property
    def closed(self) -> bool:
        return self._file.closed

    def write(self, data: bytes) -> int:
        room = self.limit - self.written
        view = memoryview(data)[:max(0, room)]
        while view:
            n = self._file.write(view) or 0
            self.written += n
            view = view[n:]
        if len(data) > room:
            self.too_large = True
            raise OSError(errno.EFBIG, f"File larger than {self.limit} bytes")
        return len(data)

    def close(self) -> None:
        if self._file.closed:
            return
        try:
            os.fsync(self._file.fileno())
        finally:
            self._file.close()


class _Handler(FTPHandler):
    """One scanner session. `receiver` is set on the subclass each FtpReceiver makes."""

    receiver: ClassVar[FtpReceiver]

    def __init__(self, conn: Any, server: Any, ioloop: Any = None) -> None:
        self._uploads: dict[str, tuple[SpoolItem, _Upload]] = {}
        super().__init__(conn, server, ioloop=ioloop)

    def ftp_STOR(self, file: str, mode: str = "w") -> str | None:
        if "a" in mode or self._restart_position:
            self._restart_position = 0
            self.respond("550 Resuming an upload is not supported: send the whole file again.")
            return None
        receiver = self.receiver
        name = safe_name(os.path.basename(file), default="upload")
        item = receiver.spool.open("ftp", receiver.devices[self.username], file_name=name,
                                   ftp_user=self.username, peer=self.remote_ip)
        try:
            upload = _Upload(item.file(name), receiver.config.max_file_bytes)
        except OSError as e:
            self.receiver.spool.discard(item)  # nothing received yet
            log.error("cannot open a spool file for %s: %s", name, e)
            self.respond("451 Cannot store the file now; try again later.")
            return None
        self._uploads[upload.name] = (item, upload)
        if self.data_channel is not None:
            self.respond("125 Data connection already open. Transfer starting.")
            self.data_channel.file_obj = upload
            self.data_channel.enable_receiving(self._current_type, "STOR")
        else:
            self.respond("150 File status okay. About to open data connection.")
            self._in_dtp_queue = (upload, "STOR")
        return file

    def ftp_STOU(self, line: str) -> None:
        self.respond("502 STOU is not supported: use STOR with a file name.")

    def on_file_received(self, file: str) -> None:
        item, upload = self._uploads.pop(file)
        self.receiver.received(item, upload, None)

    def on_incomplete_file_received(self, file: str) -> None:
        item, upload = self._uploads.pop(file)
        if upload.too_large:
            why = f"upload stopped at the size limit of {upload.limit} bytes"
        else:
            why = f"upload interrupted after {upload.written} bytes"
        self.receiver.received(item, upload, why)

    def close(self) -> None:
        super().close()
        # A STOR whose data connection never opened (or a session reset by USER/REIN).
        for item, upload in list(self._uploads.values()):
            upload.close()
            self.receiver.received(item, upload, f"upload interrupted after {upload.written} bytes")
        self._uploads.clear()


class FtpReceiver:
    """The FTP server in a background thread: `FtpReceiver(config, spool, accept).start()`,
    `.port` (bound at construction), `.stop()`."""

    def __init__(self, config: FtpConfig, spool: Spool, accept: Accept,
                 retry_seconds: float = 60.0) -> None:
        self.config = config
        self.spool = spool
        self.drainer = Drainer(spool, accept, retry_seconds, name="sohoa-ftp-drain")
        authorizer = _Accounts(config.accounts, spool.root / "ftp-homes")
        self.devices = authorizer.devices
        passive = (list(range(config.passive_ports[0], config.passive_ports[1] + 1))
                   if config.passive_ports else None)
        dtp = type("SohoaDTPHandler", (DTPHandler,), {"timeout": config.idle_timeout_seconds})
        handler = type("SohoaFTPHandler", (_Handler,), {
            "receiver": self, "authorizer": authorizer, "dtp_handler": dtp,
            "passive_ports": passive, "masquerade_address": config.masquerade_address,
            "timeout": config.idle_timeout_seconds,
            "auth_failed_timeout": config.auth_failed_delay_seconds,
            "permit_foreign_addresses": False, "banner": "sohoa scan-to-FTP ready.",
        })
        self._server = FTPServer((config.host, config.port), handler, ioloop=IOLoop())
        # Each session uses a control and a data connection; the listening socket counts too.
        self._server.max_cons = 2 * config.max_connections + 1
        self._server.max_cons_per_ip = 2 * config.max_connections_per_ip
        self.port: int = self._server.address[1]
        self._stopping = False
        self._thread = threading.Thread(target=self._serve, name="sohoa-ftp", daemon=True)

    def start(self) -> FtpReceiver:
        self.drainer.start()
        self._thread.start()
        log.info("scan-to-FTP listening on %s:%d", self.config.host, self.port)
        return self

    def stop(self) -> None:
        """Closes every session (an upload in progress is kept, marked incomplete), then stops."""
        self._stopping = True
        if self._thread.is_alive():
            self._thread.join()
        else:
            self._server.close_all()
        self.drainer.stop()

    def _serve(self) -> None:
        loop = self._server.ioloop
        try:
            while not self._stopping:
                loop.loop(timeout=0.2, blocking=False)
        finally:
            self._server.close_all()

    def received(self, item: SpoolItem, upload: _Upload, incomplete: str | None) -> None:
        """Runs on the FTP loop when an upload ends: complete the item, let the drainer store it.
        Should this fail, the item stays in incoming/ and the next start recovers it."""
        name, device = Path(upload.name).name, item.meta.get("device")
        try:
            if upload.written == 0:
                log.warning("ftp upload %s from %s carried no bytes: nothing to store", name, device)
                Path(upload.name).unlink(missing_ok=True)
                self.spool.discard(item)
                return
            fsync_dir(Path(upload.name).parent)
            self.spool.complete(item, incomplete=incomplete)
        except OSError:
            log.exception("ftp upload %s from %s could not be completed", name, device)
            return
        if incomplete:
            log.warning("ftp upload %s from %s: %s", name, device, incomplete)
        self.drainer.kick()

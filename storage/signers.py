"""Signers: which key signs each agency's electronic copies (`sohoa signer add/list/remove`).

The `signers` table says where an agency's key is, never the key: a PKCS#12 file is copied into
the secrets directory (`SOHOA_SECRETS_DIR`, default `<data_dir>/secrets`, mode 0700, files 0600),
outside object storage; a PKCS#11 token (the USB tokens of Vietnam's CAs) stays where it is, named
by its module, token label and key label. A PKCS#12 password or a token PIN is its own secret: a
0600 file in that directory, read as a `SecretStr` (so it prints as `**********`), never in the
database, never in a log or an exception message.

Only the owner of the secrets directory (the service account) may add or remove a signer: that
owner alone can read the keys.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import SecretStr
from sqlalchemy import delete, select
from sqlalchemy.orm import sessionmaker

from storage import migrate
from storage.db import aware, engine_for
from storage.tables import SignerRow

Kind = Literal["pkcs12", "pkcs11"]


class SignerConfigError(ValueError):
    """A signer cannot be added or read as asked (no rights, bad agency, missing file)."""


@dataclass(frozen=True)
class SignerEntry:
    agency: str
    kind: Kind
    name: str  # the agency's name as printed in the digitization note
    fingerprint: str  # SHA-256 of the certificate, hex
    subject: str
    pkcs12_path: str | None
    module: str | None
    token_label: str | None
    key_label: str | None
    not_after: datetime | None
    added_at: datetime
    added_by: str

    def to_dict(self) -> dict[str, object]:
        """What `sohoa signer list --json` shows: where the key is, no secret."""
        return {"agency": self.agency, "kind": self.kind, "name": self.name,
                "fingerprint": self.fingerprint, "subject": self.subject,
                "pkcs12_path": self.pkcs12_path, "module": self.module,
                "token_label": self.token_label, "key_label": self.key_label,
                "not_after": self.not_after.isoformat() if self.not_after else None,
                "added_at": self.added_at.isoformat(), "added_by": self.added_by}


def _entry(row: SignerRow) -> SignerEntry:
    return SignerEntry(row.agency, row.kind, row.name, row.fingerprint,  # type: ignore[arg-type]
                       row.subject, row.pkcs12_path, row.module, row.token_label, row.key_label,
                       aware(row.not_after) if row.not_after else None, aware(row.added_at),
                       row.added_by)


_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def _file_stem(agency: str) -> str:
    """A file name for the agency's secrets: the code itself when it is a plain name."""
    if _SAFE.fullmatch(agency):
        return agency
    return "agency-" + hashlib.sha256(agency.encode()).hexdigest()[:32]


class Signers:
    def __init__(self, url: str, secrets_dir: Path) -> None:
        migrate.upgrade(url)
        self.engine = engine_for(url)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        self.secrets_dir = secrets_dir

    # ---- the secrets directory ------------------------------------------------------------

    def check_owner(self) -> None:
        """Refuses anyone but the owner of the secrets directory (made 0700 if new)."""
        d = self.secrets_dir
        try:
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
            found = d.stat()
        except OSError as e:
            raise SignerConfigError(f"cannot use the secrets directory {d}: {e.strerror}") from e
        if found.st_uid != os.geteuid():
            raise SignerConfigError(
                f"only the owner of {d} (uid {found.st_uid}, the service account) may manage "
                "signers")
        if stat.S_IMODE(found.st_mode) != 0o700:
            os.chmod(d, 0o700)

    def _write_secret_file(self, name: str, data: bytes) -> Path:
        """A 0600 file, written whole or not at all."""
        self.check_owner()
        path = self.secrets_dir / name
        tmp = path.with_name(f".{name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path

    def secret(self, agency: str) -> SecretStr | None:
        """The agency's password or PIN, if one was given."""
        path = self.secrets_dir / f"{_file_stem(agency)}.secret"
        try:
            return SecretStr(path.read_text("utf-8"))
        except FileNotFoundError:
            return None

    # ---- the registry ---------------------------------------------------------------------

    def add(self, agency: str, kind: Kind, name: str, fingerprint: str, subject: str,
            added_by: str, secret: SecretStr | None, pkcs12: bytes | None = None,
            module: str | None = None, token_label: str | None = None,
            key_label: str | None = None, not_after: datetime | None = None) -> SignerEntry:
        """Registers (or replaces) the agency's signer: the PKCS#12 data is copied into the
        secrets directory, the secret written beside it, then the row."""
        agency = agency.strip()
        if not agency or len(agency) > 100:
            raise SignerConfigError("an agency code of 1 to 100 characters is needed")
        self.check_owner()
        stem = _file_stem(agency)
        p12_path = None
        if kind == "pkcs12":
            if pkcs12 is None:
                raise SignerConfigError("a PKCS#12 signer needs its file")
            p12_path = str(self._write_secret_file(f"{stem}.p12", pkcs12).resolve())
        secret_path = self.secrets_dir / f"{stem}.secret"
        if secret is not None and secret.get_secret_value():
            self._write_secret_file(f"{stem}.secret", secret.get_secret_value().encode("utf-8"))
        else:
            secret_path.unlink(missing_ok=True)
        if kind == "pkcs11":
            (self.secrets_dir / f"{stem}.p12").unlink(missing_ok=True)
        row = SignerRow(agency=agency, kind=kind, name=name[:300], fingerprint=fingerprint,
                        subject=subject[:500], pkcs12_path=p12_path, module=module,
                        token_label=token_label, key_label=key_label, not_after=not_after,
                        added_at=datetime.now(UTC), added_by=added_by[:200])
        with self._session.begin() as s:
            s.merge(row)
        return _entry(row)

    def get(self, agency: str) -> SignerEntry | None:
        with self._session() as s:
            row = s.get(SignerRow, agency)
            return _entry(row) if row else None

    def all(self, agencies: list[str] | None = None) -> list[SignerEntry]:
        """Every signer, or those of `agencies`."""
        q = select(SignerRow).order_by(SignerRow.agency)
        if agencies is not None:
            q = q.where(SignerRow.agency.in_(agencies))
        with self._session() as s:
            return [_entry(r) for r in s.scalars(q)]

    def remove(self, agency: str) -> SignerEntry | None:
        """Forgets the agency's signer and deletes its copy and secret; None if it had none."""
        self.check_owner()
        found = self.get(agency)
        if found is None:
            return None
        with self._session.begin() as s:
            s.execute(delete(SignerRow).where(SignerRow.agency == agency))
        stem = _file_stem(agency)
        for suffix in (".p12", ".secret"):
            (self.secrets_dir / f"{stem}{suffix}").unlink(missing_ok=True)
        return found


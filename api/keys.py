"""API keys: random tokens stored only as SHA-256 digests, each with one role and its agency codes.

A key looks like `sohoa_<id>_<secret>`: the id finds the row, the secret (32 random bytes) is
compared by digest in constant time. A high-entropy secret needs no slow password hash.
Keys live in their own table: `sohoa reindex` rebuilds the dossier index, never the keys.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import JSON, Boolean, DateTime, String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from storage import migrate

ROLES = ("scanner", "processor", "auditor", "admin")
ALL_AGENCIES = "*"


class KeyBase(DeclarativeBase):
    pass


class ApiKey(KeyBase):
    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    agencies: Mapped[list[str]] = mapped_column(JSON)
    name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


@dataclass(frozen=True)
class Principal:
    key_id: str
    role: str
    agencies: tuple[str, ...]

    def sees(self, agency: str) -> bool:
        return ALL_AGENCIES in self.agencies or agency in self.agencies


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore:
    """`authenticate` remembers a good key for `cache_seconds` (one database round trip less
    per request); a revoked key stops working within that time."""

    def __init__(self, url: str, cache_seconds: float = 30.0) -> None:
        self.engine = create_engine(url, future=True)
        migrate.upgrade(url)
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[Principal, float]] = {}

    def create(self, role: str, agencies: list[str], name: str = "") -> str:
        """Returns the new key; only its digest is kept."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        if not agencies or any(not a.strip() for a in agencies):
            raise ValueError("a key needs at least one agency code (or * for all)")
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        with Session(self.engine) as s, s.begin():
            s.add(ApiKey(id=key_id, digest=_digest(secret), role=role,
                         agencies=[a.strip().upper() for a in agencies], name=name,
                         created_at=datetime.now(UTC)))
        return f"sohoa_{key_id}_{secret}"

    def authenticate(self, token: str) -> Principal | None:
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != "sohoa":
            return None
        digest = _digest(parts[2])
        cached = self._cache.get(parts[1] + digest)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        with Session(self.engine) as s:
            row = s.get(ApiKey, parts[1])
            if row is None or row.revoked or not hmac.compare_digest(row.digest, digest):
                return None
            found = Principal(row.id, row.role, tuple(row.agencies))
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[parts[1] + digest] = (found, time.monotonic() + self.cache_seconds)
        return found

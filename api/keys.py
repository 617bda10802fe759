"""API keys: random tokens stored only as SHA-256 digests, each with one role and its agency codes.

A key looks like `sohoa_<id>_<secret>`: the id finds the row, the secret (32 random bytes) is
compared by digest in constant time. A high-entropy secret needs no slow password hash.
Keys live in their own table (`api_keys`, storage/tables.py): `sohoa reindex` rebuilds the
dossier index, never the keys, and object storage holds no copy of them: `sohoa backup FILE` /
`sohoa restore FILE` carry the rows (digests, never a secret) through `export_records` /
`import_records`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage import migrate
from storage.db import engine_for
from storage.tables import ApiKey

ROLES = ("scanner", "processor", "auditor", "admin")
ALL_AGENCIES = "*"
KEY_ID = re.compile(r"^[0-9a-z]{1,16}$")  # no "_": it separates the id from the secret
DIGEST = re.compile(r"^[0-9a-f]{64}$")
KEY_FIELDS = ("id", "digest", "role", "agencies", "name", "created_at", "revoked")


@dataclass(frozen=True)
class Principal:
    key_id: str
    role: str
    agencies: tuple[str, ...]

    @property
    def all_agencies(self) -> bool:
        """Whether the principal is of every agency ("*")."""
        return ALL_AGENCIES in self.agencies

    def sees(self, agency: str) -> bool:
        """May I see this agency's dossiers, batches and scans?"""
        return self.all_agencies or agency in self.agencies

    def may_change(self, agency: str) -> bool:
        """May I change this agency's dossiers, batches and scans? Writes are scoped like reads;
        what a role may do at all is the routes' check."""
        return self.sees(agency)

    def scope(self) -> tuple[str, ...] | None:
        """The agencies to filter a listing by: None for all agencies, else the principal's."""
        return None if self.all_agencies else self.agencies

    def scope_for(self, agency: str | None) -> tuple[str, ...] | None:
        """`scope()` narrowed to `agency` when one is asked for: nothing if it is not mine."""
        if agency:
            return (agency,) if self.sees(agency) else ()
        return self.scope()

    def only_agency(self) -> str | None:
        """The principal's one agency, when it has exactly one (and not "*"); else None."""
        return self.agencies[0] if len(self.agencies) == 1 and not self.all_agencies else None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def iso_utc(at: datetime) -> str:
    """A stored time as ISO 8601 in UTC (SQLite gives back naive datetimes: they were UTC)."""
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


def parse_time(value: object, where: str) -> datetime:
    """An ISO 8601 time with its offset (as `iso_utc` writes it), in UTC; ValueError otherwise."""
    if not isinstance(value, str):
        raise ValueError(f"{where}: an ISO 8601 time is needed")
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{where}: {value[:40]!r} is not an ISO 8601 time") from None
    if at.tzinfo is None:
        raise ValueError(f"{where}: {value[:40]!r} has no UTC offset")
    return at.astimezone(UTC)


def check_fields(record: object, fields: tuple[str, ...], where: str) -> dict[str, Any]:
    """A backup record with exactly these fields; ValueError naming what is missing or unknown."""
    if not isinstance(record, dict):
        raise ValueError(f"{where}: an object is needed")
    missing = [f for f in fields if f not in record]
    unknown = sorted(str(f) for f in record if f not in fields)
    if missing or unknown:
        raise ValueError(f"{where}: " + "; ".join(
            ([f"missing {', '.join(missing)}"] if missing else [])
            + ([f"unknown {', '.join(unknown)}"] if unknown else [])))
    return record


class KeyStore:
    """`authenticate` remembers a good key for `cache_seconds` (one database round trip less
    per request); a revoked key stops working within that time."""

    def __init__(self, url: str, cache_seconds: float = 30.0) -> None:
        migrate.upgrade(url)
        self.engine = engine_for(url)
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

    # backup and restore (`sohoa backup` / `sohoa restore`)

    def export_records(self) -> list[dict[str, Any]]:
        """Every key as it is stored (id, digest, role, agencies, name, created_at, revoked)."""
        with Session(self.engine) as s:
            return [_record(row) for row in s.scalars(select(ApiKey).order_by(ApiKey.id))]

    @staticmethod
    def check_records(records: object) -> list[dict[str, Any]]:
        """The records of a backup file, checked and normalized; ValueError on the first that is
        malformed (nothing is written)."""
        if not isinstance(records, list):
            raise ValueError("api_keys: a list is needed")
        checked: list[dict[str, Any]] = []
        seen: set[str] = set()
        for i, raw in enumerate(records):
            where = f"api_keys[{i}]"
            record = check_fields(raw, KEY_FIELDS, where)
            key_id, digest, role = record["id"], record["digest"], record["role"]
            if not isinstance(key_id, str) or not KEY_ID.match(key_id):
                raise ValueError(f"{where}.id: 1 to 16 lower-case letters or digits are needed")
            if key_id in seen:
                raise ValueError(f"{where}.id: key {key_id} is in the file twice")
            seen.add(key_id)
            if not isinstance(digest, str) or not DIGEST.match(digest):
                raise ValueError(f"{where}.digest: a SHA-256 digest (64 hex digits) is needed")
            if role not in ROLES:
                raise ValueError(f"{where}.role: one of {', '.join(ROLES)} is needed")
            agencies = record["agencies"]
            if (not isinstance(agencies, list) or not agencies
                    or any(not isinstance(a, str) or not a.strip() or len(a) > 40 for a in agencies)):
                raise ValueError(f"{where}.agencies: a list of agency codes (or *) is needed")
            if not isinstance(record["name"], str) or len(record["name"]) > 200:
                raise ValueError(f"{where}.name: a text of at most 200 characters is needed")
            if not isinstance(record["revoked"], bool):
                raise ValueError(f"{where}.revoked: true or false is needed")
            checked.append({"id": key_id, "digest": digest, "role": role,
                            "agencies": [a.strip().upper() for a in agencies],
                            "name": record["name"],
                            "created_at": iso_utc(parse_time(record["created_at"],
                                                             f"{where}.created_at")),
                            "revoked": record["revoked"]})
        return checked

    def import_records(self, records: object, replace: bool = False,
                       session: Session | None = None) -> Restored:
        """Adds the keys of a backup file by id: an equal stored key is `unchanged`, a differing one
        `skipped` (`replaced` with `replace`). ValueError (and nothing written) for a malformed
        record. In `session`'s transaction if given (the caller commits or rolls back)."""
        checked = self.check_records(records)
        outcome = Restored()
        own = session is None
        s = Session(self.engine) if own else session
        assert s is not None
        try:
            for record in checked:
                row = s.get(ApiKey, record["id"])
                stored = _record(row) if row is not None else None
                if row is None:
                    s.add(ApiKey(**{**record, "created_at": datetime.fromisoformat(
                        record["created_at"])}))
                    outcome.added.append(record["id"])
                    continue
                differ = [f for f in KEY_FIELDS if stored and stored[f] != record[f]]
                if not differ:
                    outcome.unchanged.append(record["id"])
                    continue
                outcome.differences[record["id"]] = differ
                if not replace:
                    outcome.skipped.append(record["id"])
                    continue
                for column in differ:
                    setattr(row, column, datetime.fromisoformat(record[column])
                            if column == "created_at" else record[column])
                outcome.replaced.append(record["id"])
            s.flush()
            if own:
                s.commit()
        finally:
            if own:
                s.close()
        self._cache.clear()
        return outcome


@dataclass
class Restored:
    """What a restore did with the records of one kind (key ids or usernames); `differences`
    names the fields of each skipped or replaced record that differ from the database's."""
    added: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    differences: dict[str, list[str]] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {"added": len(self.added), "unchanged": len(self.unchanged),
                "replaced": len(self.replaced), "skipped": len(self.skipped)}


def _record(row: ApiKey) -> dict[str, Any]:
    return {"id": row.id, "digest": row.digest, "role": row.role, "agencies": list(row.agencies),
            "name": row.name, "created_at": iso_utc(row.created_at), "revoked": bool(row.revoked)}

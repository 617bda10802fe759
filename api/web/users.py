"""Web users and their login sessions.

A user has one role and agency codes like an API key (`api/keys.py`), and a password kept as a
salted scrypt hash (`scrypt$n$r$p$salt$hash`, stdlib `hashlib.scrypt`). A login session is a
random 32-byte token in a cookie: only its SHA-256 is stored, with its own CSRF token; it ends after
`idle` without a request, `absolute` after login at the latest, at logout, or when the user is
disabled or gets a new password. Users and sessions live only in the database (tables `users` and
`web_sessions`, storage/tables.py; like API keys, `sohoa reindex` never touches them).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from api.keys import (
    ALL_AGENCIES,
    ROLES,
    Principal,
    Restored,
    check_fields,
    iso_utc,
    parse_time,
)
from storage import migrate
from storage.db import engine_for
from storage.tables import SessionRow, UserRow

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MIN_PASSWORD, MAX_PASSWORD = 8, 256
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{1,63}$")
AGENCY = re.compile(r"^(\*|[A-Z0-9][A-Z0-9._-]{0,39})$")
TOUCH_EVERY = timedelta(seconds=60)  # last_seen is written at most this often per session


class UserError(ValueError):
    """A user cannot be created or changed as asked; `key` is its i18n message id."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class WebUser:
    id: int
    username: str
    display_name: str
    role: str
    agencies: tuple[str, ...]
    active: bool
    created_at: datetime

    @property
    def principal(self) -> Principal:
        """The same authorization as an API key of this role and these agencies."""
        return Principal(f"user:{self.username}", self.role, self.agencies)

    @property
    def name(self) -> str:
        return self.display_name or self.username


@dataclass(frozen=True)
class LoginSession:
    user: WebUser
    csrf: str
    expires_at: datetime


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                            dklen=32)
    return "$".join(["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P),
                     base64.b64encode(salt).decode(), base64.b64encode(digest).decode()])


def verify_password(password: str, stored: str) -> bool:
    """With the parameters stored beside the hash, so they can be raised later."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r),
                                p=int(p), dklen=len(expected), maxmem=256 * 1024 * 1024)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


_dummy_lock = threading.Lock()
_dummy: list[str] = []


def _dummy_hash() -> str:
    """Checked against when the user does not exist: answering as slowly as for a wrong password
    tells nothing about which usernames exist."""
    with _dummy_lock:
        if not _dummy:
            _dummy.append(hash_password(secrets.token_urlsafe(16)))
        return _dummy[0]


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _aware(at: datetime) -> datetime:
    """SQLite gives back naive datetimes: they were stored as UTC."""
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _user(row: UserRow) -> WebUser:
    return WebUser(row.id, row.username, row.display_name, row.role, tuple(row.agencies), row.active,
                   _aware(row.created_at))


def normalize_username(username: str) -> str:
    return username.strip().lower()


def normalize_agencies(agencies: list[str] | tuple[str, ...]) -> list[str]:
    """Upper-cased, de-duplicated, in order; UserError for an empty list or a malformed code."""
    found: list[str] = []
    for agency in agencies:
        code = agency.strip().upper()
        if not code:
            continue
        if not AGENCY.match(code):
            raise UserError("users.error.agency", f"{agency!r} is not an agency code")
        if code not in found:
            found.append(code)
    if not found:
        raise UserError("users.error.agency", "a user needs at least one agency code (or * for all)")
    return found


def check_password(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise UserError("users.error.password",
                        f"a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters")


class UserStore:
    """Users and sessions in the catalog database. `now` is the clock (tests move it)."""

    def __init__(self, url: str, idle: timedelta = timedelta(hours=8),
                 absolute: timedelta = timedelta(hours=24),
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        migrate.upgrade(url)
        self.engine = engine_for(url)
        self.idle, self.absolute, self.now = idle, absolute, now

    # users

    def create(self, username: str, password: str, role: str, agencies: list[str] | tuple[str, ...],
               display_name: str = "") -> WebUser:
        name = normalize_username(username)
        if not USERNAME.match(name):
            raise UserError("users.error.username",
                            "a username has 2 to 64 letters a-z, digits, '.', '_', '-' or '@'")
        if role not in ROLES:
            raise UserError("users.error.role", f"role must be one of {', '.join(ROLES)}")
        codes = normalize_agencies(agencies)
        check_password(password)
        with Session(self.engine) as s, s.begin():
            if s.scalar(select(UserRow.id).where(UserRow.username == name)) is not None:
                raise UserError("users.error.exists", f"user {name} already exists")
            row = UserRow(username=name, display_name=display_name.strip()[:200],
                          password_hash=hash_password(password), role=role, agencies=codes,
                          active=True, created_at=self.now())
            s.add(row)
            s.flush()
            return _user(row)

    def get(self, username: str) -> WebUser | None:
        with Session(self.engine) as s:
            row = s.scalar(select(UserRow).where(UserRow.username == normalize_username(username)))
            return _user(row) if row else None

    def users(self) -> list[WebUser]:
        with Session(self.engine) as s:
            return [_user(r) for r in s.scalars(select(UserRow).order_by(UserRow.username))]

    def authenticate(self, username: str, password: str) -> WebUser | None:
        """The active user with this password, else None (in about the same time either way)."""
        with Session(self.engine) as s:
            row = s.scalar(select(UserRow).where(UserRow.username == normalize_username(username)))
            found = _user(row) if row else None
            stored = row.password_hash if row else _dummy_hash()
        good = verify_password(password, stored)
        return found if good and found is not None and found.active else None

    def set_active(self, username: str, active: bool) -> None:
        """Disabling also ends the user's sessions."""
        self._change(username, active=active)

    def set_password(self, username: str, password: str) -> None:
        """Also ends the user's sessions."""
        check_password(password)
        self._change(username, password_hash=hash_password(password))

    def _change(self, username: str, **values: object) -> None:
        with Session(self.engine) as s, s.begin():
            row = s.scalar(select(UserRow).where(UserRow.username == normalize_username(username)))
            if row is None:
                raise UserError("users.error.missing", f"no user {username}")
            s.execute(update(UserRow).where(UserRow.id == row.id).values(**values))
            s.execute(delete(SessionRow).where(SessionRow.user_id == row.id))

    # backup and restore (`sohoa backup` / `sohoa restore`): users with their password hashes,
    # never a password; login sessions are not carried (users log in again)

    BACKUP_FIELDS = ("username", "display_name", "password_hash", "role", "agencies", "active",
                     "created_at")

    def export_records(self) -> list[dict[str, Any]]:
        """Every user as stored: username, display name, password hash, role, agencies, active."""
        with Session(self.engine) as s:
            return [self._backup_record(r)
                    for r in s.scalars(select(UserRow).order_by(UserRow.username))]

    @classmethod
    def check_records(cls, records: object) -> list[dict[str, Any]]:
        """The users of a backup file, checked and normalized; ValueError on the first malformed
        one (nothing is written)."""
        if not isinstance(records, list):
            raise ValueError("users: a list is needed")
        checked: list[dict[str, Any]] = []
        seen: set[str] = set()
        for i, raw in enumerate(records):
            where = f"users[{i}]"
            record = check_fields(raw, cls.BACKUP_FIELDS, where)
            name = record["username"]
            if not isinstance(name, str) or not USERNAME.match(normalize_username(name)):
                raise ValueError(f"{where}.username: 2 to 64 letters a-z, digits, '.', '_', '-' "
                                 "or '@' are needed")
            name = normalize_username(name)
            if name in seen:
                raise ValueError(f"{where}.username: user {name} is in the file twice")
            seen.add(name)
            if not isinstance(record["display_name"], str) or len(record["display_name"]) > 200:
                raise ValueError(f"{where}.display_name: a text of at most 200 characters is needed")
            if not cls._well_formed_hash(record["password_hash"]):
                raise ValueError(f"{where}.password_hash: a scrypt hash "
                                 "(scrypt$N$r$p$salt$hash) is needed")
            if record["role"] not in ROLES:
                raise ValueError(f"{where}.role: one of {', '.join(ROLES)} is needed")
            agencies = record["agencies"]
            if not isinstance(agencies, list) or not all(isinstance(a, str) for a in agencies):
                raise ValueError(f"{where}.agencies: a list of agency codes (or *) is needed")
            try:
                codes = normalize_agencies(agencies)
            except UserError as e:
                raise ValueError(f"{where}.agencies: {e}") from None
            if not isinstance(record["active"], bool):
                raise ValueError(f"{where}.active: true or false is needed")
            checked.append({"username": name, "display_name": record["display_name"],
                            "password_hash": record["password_hash"], "role": record["role"],
                            "agencies": codes, "active": record["active"],
                            "created_at": iso_utc(parse_time(record["created_at"],
                                                             f"{where}.created_at"))})
        return checked

    def import_records(self, records: object, replace: bool = False,
                       session: Session | None = None) -> Restored:
        """Adds the users of a backup file by username: an equal stored user is `unchanged`, a
        differing one `skipped` (`replaced` with `replace`, which also ends their sessions).
        ValueError (and nothing written) for a malformed record. In `session`'s transaction if
        given (the caller commits or rolls back)."""
        checked = self.check_records(records)
        outcome = Restored()
        own = session is None
        s = Session(self.engine) if own else session
        assert s is not None
        try:
            for record in checked:
                name = record["username"]
                row = s.scalar(select(UserRow).where(UserRow.username == name))
                values = {**record, "created_at": datetime.fromisoformat(record["created_at"])}
                if row is None:
                    s.add(UserRow(**values))
                    outcome.added.append(name)
                    continue
                stored = self._backup_record(row)
                differ = [f for f in self.BACKUP_FIELDS if stored[f] != record[f]]
                if not differ:
                    outcome.unchanged.append(name)
                    continue
                outcome.differences[name] = differ
                if not replace:
                    outcome.skipped.append(name)
                    continue
                for column in differ:
                    setattr(row, column, values[column])
                s.execute(delete(SessionRow).where(SessionRow.user_id == row.id))
                outcome.replaced.append(name)
            s.flush()
            if own:
                s.commit()
        finally:
            if own:
                s.close()
        return outcome

    @staticmethod
    def _backup_record(row: UserRow) -> dict[str, Any]:
        return {"username": row.username, "display_name": row.display_name,
                "password_hash": row.password_hash, "role": row.role,
                "agencies": list(row.agencies), "active": bool(row.active),
                "created_at": iso_utc(row.created_at)}

    @staticmethod
    def _well_formed_hash(stored: object) -> bool:
        """`scrypt$N$r$p$salt$hash` as hash_password writes it (checks the form, not a password)."""
        if not isinstance(stored, str) or len(stored) > 255:
            return False
        parts = stored.split("$")
        if len(parts) != 6 or parts[0] != "scrypt":
            return False
        try:
            ints = [int(p) for p in parts[1:4]]
            salt = base64.b64decode(parts[4], validate=True)
            digest = base64.b64decode(parts[5], validate=True)
        except ValueError:
            return False
        return all(i > 0 for i in ints) and bool(salt) and len(digest) >= 16

    # sessions

    def start_session(self, user: WebUser) -> tuple[str, LoginSession]:
        """The cookie token (shown once, stored as its SHA-256) and the session."""
        token, csrf, now = secrets.token_urlsafe(32), secrets.token_urlsafe(32), self.now()
        expires = now + self.absolute
        with Session(self.engine) as s, s.begin():
            s.execute(delete(SessionRow).where(or_(SessionRow.expires_at < now,
                                                   SessionRow.last_seen_at < now - self.idle)))
            s.add(SessionRow(token_hash=_token_hash(token), user_id=user.id, csrf=csrf,
                             created_at=now, last_seen_at=now, expires_at=expires))
        return token, LoginSession(user, csrf, expires)

    def session(self, token: str) -> LoginSession | None:
        """The live session of this cookie token (its idle time restarts), else None."""
        if not token or len(token) > 200:
            return None
        digest, now = _token_hash(token), self.now()
        with Session(self.engine) as s, s.begin():
            found = s.execute(select(SessionRow, UserRow).join(UserRow, SessionRow.user_id == UserRow.id)
                              .where(SessionRow.token_hash == digest)).first()
            if found is None:
                return None
            row, user_row = found
            last_seen, expires = _aware(row.last_seen_at), _aware(row.expires_at)
            if now >= expires or now - last_seen >= self.idle or not user_row.active:
                s.delete(row)
                return None
            if now - last_seen >= TOUCH_EVERY:
                row.last_seen_at = now
            return LoginSession(_user(user_row), row.csrf, expires)

    def end_session(self, token: str) -> None:
        with Session(self.engine) as s, s.begin():
            s.execute(delete(SessionRow).where(SessionRow.token_hash == _token_hash(token)))


def manages(admin: Principal, agencies: list[str] | tuple[str, ...]) -> bool:
    """An admin of all agencies manages every user; one of some agencies only users all of whose
    agencies are among them."""
    if ALL_AGENCIES in admin.agencies:
        return True
    return bool(agencies) and ALL_AGENCIES not in agencies and set(agencies) <= set(admin.agencies)

"""Every table of sohoa's one database, on one metadata (storage/db.py `Base`).

    batches, pages, dossiers, dossier_versions, fields, corrections, dossier_results,
    dossier_search      the catalog: an index of object storage (storage/catalog.py), rebuilt
                        from it by `sohoa reindex`; dossier_search is what the ranked search
                        (storage/search.py) reads, with its full-text index beside it: an FTS5
                        table on SQLite, a tsvector column and trigram index on PostgreSQL
                        (`search_index_ddl` below, made whenever the table is)
    audit_log           the hash-chained audit log (storage/audit.py)
    leases              who works on what right now (storage/leases.py)
    api_keys            API keys, stored as digests (api/keys.py)
    users, web_sessions web users and their login sessions (api/web/users.py)
    signers             each agency's signing key: where it is, never the key (storage/signers.py)

A change here needs a migration (storage/migrations/versions, see storage/migrate.py);
tests/test_migrate.py checks that the migrations build exactly these tables.
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    event,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Mapped, mapped_column

from storage.db import Base

# ---- the catalog (storage/catalog.py) ---------------------------------------------------------


class Batch(Base):
    __tablename__ = "batches"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    file_name: Mapped[str] = mapped_column(String(512))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(32), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    page_count: Mapped[int] = mapped_column(Integer, default=0)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    record: Mapped[dict[str, Any]] = mapped_column(JSON)


class Page(Base):
    __tablename__ = "pages"
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"),
                                          primary_key=True)
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    dossier_code: Mapped[str | None] = mapped_column(String(64), index=True)
    role: Mapped[str] = mapped_column(String(16))  # dossier | unmatched | blank | separator
    rotation: Mapped[int] = mapped_column(Integer, default=0)
    skew: Mapped[float] = mapped_column(Float, default=0.0)
    confidence: Mapped[float] = mapped_column(Float, default=0.0)
    text: Mapped[str] = mapped_column(Text, default="")


class Dossier(Base):
    __tablename__ = "dossiers"
    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    agency: Mapped[str] = mapped_column(String(40), index=True)
    procedure: Mapped[str | None] = mapped_column(Text)
    latest_version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Set when the latest version withdraws the code (a person corrected a misread code: the
    # pages are now dossier `withdrawn_to`): the code is then no live dossier, not listed.
    withdrawn_to: Mapped[str | None] = mapped_column(String(64), default=None)
    # What the digitization report counts (storage/reports.py), set when a version or a result
    # is indexed. `received_on`: the receipt's date in Vietnam time (field `received_at`, else
    # the code's date part); `received_month` its "YYYY-MM", so a month is one equality.
    received_on: Mapped[date | None] = mapped_column(Date, default=None)
    received_month: Mapped[str | None] = mapped_column(String(7), default=None)
    digitized: Mapped[bool | None] = mapped_column(Boolean, default=None)  # a stored PDF
    full_components: Mapped[bool | None] = mapped_column(Boolean, default=None)
    signed: Mapped[bool | None] = mapped_column(Boolean, default=None)
    result_version: Mapped[int | None] = mapped_column(Integer, default=None)  # the latest result

    __table_args__ = (Index("ix_dossiers_agency_received_on", "agency", "received_on"),
                      # covers the report's query (storage/reports.py): read from the index alone
                      Index("ix_dossiers_report", "received_on", "agency", "received_month",
                            "withdrawn_to", "digitized", "full_components", "signed",
                            "result_version"))


class SearchText(Base):
    """What the ranked search (storage/search.py) matches of a dossier's latest version: its
    fields and OCR text folded (ocr.text.fold: no accents, đ -> d, lower case) into words
    separated by single spaces, one column per weight; and the text as written, which snippets
    are cut from. `id` is the full-text index's row number (stable, unlike SQLite's rowid)."""

    __tablename__ = "dossier_search"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(ForeignKey("dossiers.code", ondelete="CASCADE"),
                                      unique=True)
    ids: Mapped[str] = mapped_column(Text, default="")  # the code, citizen ID, phone, e-mail
    names: Mapped[str] = mapped_column(Text, default="")  # applicants
    places: Mapped[str] = mapped_column(Text, default="")  # addresses
    procedure: Mapped[str] = mapped_column(Text, default="")
    other: Mapped[str] = mapped_column(Text, default="")  # the other fields
    body: Mapped[str] = mapped_column(Text, default="")  # OCR text
    fields_text: Mapped[str] = mapped_column(Text, default="")  # as written: " · " between values
    body_text: Mapped[str] = mapped_column(Text, default="")  # as written


class DossierVersion(Base):
    __tablename__ = "dossier_versions"
    code: Mapped[str] = mapped_column(ForeignKey("dossiers.code", ondelete="CASCADE"),
                                      primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch_id: Mapped[str] = mapped_column(String(64), index=True)
    pdf_key: Mapped[str] = mapped_column(String(512))
    manifest_key: Mapped[str] = mapped_column(String(512))
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # When the change reached the catalog (the feed's clock, storage/catalog.py `_feed_time`):
    # the change feed's order. Its own time (`created_at`) was taken before it was stored and
    # indexed, and another batch's change can be indexed in between.
    indexed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True,
                                                        index=True)


class FieldRow(Base):
    __tablename__ = "fields"
    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    page: Mapped[int] = mapped_column(Integer)
    confidence: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(16))
    # What the field holds beside its value, as the version's fields.json has it (`items` of a
    # list, `place` and `read_as` of an address); None once a person corrected the value.
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class Correction(Base):
    """A field corrected by a person: kept with who, when and why, and in the change feed."""

    __tablename__ = "corrections"
    code: Mapped[str] = mapped_column(ForeignKey("dossiers.code", ondelete="CASCADE"),
                                      primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(64))
    previous: Mapped[str | None] = mapped_column(Text)
    value: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    indexed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True,
                                                        index=True)  # as DossierVersion's


class DossierResult(Base):
    """A stored result of a dossier (the decision, certificate or licence issued), versioned:
    results/{code}/r{n}/ in object storage."""

    __tablename__ = "dossier_results"
    code: Mapped[str] = mapped_column(ForeignKey("dossiers.code", ondelete="CASCADE"),
                                      primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch_id: Mapped[str] = mapped_column(String(64), index=True)
    pdf_key: Mapped[str] = mapped_column(String(512))
    manifest_key: Mapped[str] = mapped_column(String(512))
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    indexed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True,
                                                        index=True)  # as DossierVersion's


class FeedClock(Base):
    """One row: the last time the change feed handed out. A transaction that indexes a change
    updates it first, so that such transactions take their turn (the row's lock) and their
    times rise in the order they commit."""

    __tablename__ = "feed_clock"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# ---- the audit log (storage/audit.py) -------------------------------------------------------


class Entry(Base):
    __tablename__ = "audit_log"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[str] = mapped_column(String(40))  # ISO 8601 UTC, as hashed
    actor: Mapped[str] = mapped_column(String(100))  # api key id, "cli", "pipeline"
    action: Mapped[str] = mapped_column(String(40), index=True)
    target: Mapped[str] = mapped_column(String(300), index=True)
    agency: Mapped[str] = mapped_column(String(40), index=True)
    remote: Mapped[str] = mapped_column(String(100))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    def content(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at, "actor": self.actor, "action": self.action,
                "target": self.target, "agency": self.agency, "remote": self.remote,
                "detail": self.detail, "prev_hash": self.prev_hash}

    def to_dict(self) -> dict[str, Any]:
        return {**self.content(), "hash": self.hash}


# ---- leases (storage/leases.py) ---------------------------------------------------------------


class LeaseRow(Base):
    __tablename__ = "leases"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    batch_id: Mapped[str | None] = mapped_column(String(64), index=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# ---- API keys (api/keys.py), web users and their sessions (api/web/users.py) --------------


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    agencies: Mapped[list[str]] = mapped_column(JSON)
    name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class UserRow(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)  # stored lower-case
    display_name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    agencies: Mapped[list[str]] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SessionRow(Base):
    __tablename__ = "web_sessions"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


# ---- signers (storage/signers.py) ------------------------------------------------------------


class SignerRow(Base):
    """Where an agency's signing key is (a PKCS#12 copy in the secrets directory, or a PKCS#11
    token's module and labels) and whose certificate it holds; never a key, password or PIN."""

    __tablename__ = "signers"
    agency: Mapped[str] = mapped_column(String(100), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # pkcs12 | pkcs11
    name: Mapped[str] = mapped_column(String(300))  # the agency name printed in the note
    fingerprint: Mapped[str] = mapped_column(String(64))  # SHA-256 of the certificate (DER)
    subject: Mapped[str] = mapped_column(String(500), default="")
    pkcs12_path: Mapped[str | None] = mapped_column(String(1000))
    module: Mapped[str | None] = mapped_column(String(1000))
    token_label: Mapped[str | None] = mapped_column(String(200))
    key_label: Mapped[str | None] = mapped_column(String(200))
    not_after: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    added_by: Mapped[str] = mapped_column(String(200))


# ---- the full-text index of dossier_search, per database ---------------------------------------

FTS_COLUMNS = ("ids", "names", "places", "procedure", "other", "body")
log = logging.getLogger(__name__)


def _sqlite_search_ddl() -> list[str]:
    """Two FTS5 tables on dossier_search's content (not a second copy of it), kept in step by
    triggers: words (bm25 per column) and trigrams of the names (misspelled names)."""
    cols = ", ".join(FTS_COLUMNS)
    new = ", ".join(f"new.{c}" for c in FTS_COLUMNS)
    old = ", ".join(f"old.{c}" for c in FTS_COLUMNS)
    return [
        f"CREATE VIRTUAL TABLE dossier_fts USING fts5({cols}, content='dossier_search', "
        "content_rowid='id', tokenize='unicode61 remove_diacritics 0')",
        "CREATE VIRTUAL TABLE dossier_names_fts USING fts5(names, content='dossier_search', "
        "content_rowid='id', tokenize='trigram')",
        "CREATE TRIGGER dossier_search_ai AFTER INSERT ON dossier_search BEGIN "
        f"INSERT INTO dossier_fts(rowid, {cols}) VALUES (new.id, {new}); "
        "INSERT INTO dossier_names_fts(rowid, names) VALUES (new.id, new.names); END",
        "CREATE TRIGGER dossier_search_ad AFTER DELETE ON dossier_search BEGIN "
        f"INSERT INTO dossier_fts(dossier_fts, rowid, {cols}) VALUES ('delete', old.id, {old}); "
        "INSERT INTO dossier_names_fts(dossier_names_fts, rowid, names) "
        "VALUES ('delete', old.id, old.names); END",
        "CREATE TRIGGER dossier_search_au AFTER UPDATE ON dossier_search BEGIN "
        f"INSERT INTO dossier_fts(dossier_fts, rowid, {cols}) VALUES ('delete', old.id, {old}); "
        "INSERT INTO dossier_names_fts(dossier_names_fts, rowid, names) "
        "VALUES ('delete', old.id, old.names); "
        f"INSERT INTO dossier_fts(rowid, {cols}) VALUES (new.id, {new}); "
        "INSERT INTO dossier_names_fts(rowid, names) VALUES (new.id, new.names); END",
    ]


# PostgreSQL: one tsvector ('simple': the words are folded already), weighted A (code, IDs,
# names) to D (OCR text), with a GIN index; pg_trgm's trigram index on the names.
_PG_DOCUMENT = (
    "ALTER TABLE dossier_search ADD COLUMN document tsvector GENERATED ALWAYS AS ("
    "setweight(to_tsvector('simple', ids), 'A') || setweight(to_tsvector('simple', names), 'A')"
    " || setweight(to_tsvector('simple', places), 'B')"
    " || setweight(to_tsvector('simple', procedure), 'C')"
    " || setweight(to_tsvector('simple', other), 'C')"
    " || setweight(to_tsvector('simple', body), 'D')) STORED")
_PG_INDEXES = ["CREATE INDEX ix_dossier_search_document ON dossier_search USING gin (document)"]
_PG_TRIGRAMS = ["CREATE EXTENSION IF NOT EXISTS pg_trgm",
                "CREATE INDEX ix_dossier_search_names_trgm ON dossier_search "
                "USING gin (names gin_trgm_ops)"]


def search_index_ddl(connection: Connection) -> None:
    """Makes dossier_search's full-text index (the table exists, empty or not). On PostgreSQL
    without the pg_trgm extension (not installed, or no right to create it) the search works
    without finding misspelled names, and says so in the log."""
    dialect = connection.dialect.name
    if dialect == "sqlite":
        for statement in _sqlite_search_ddl():
            connection.execute(text(statement))
        connection.execute(text("INSERT INTO dossier_fts(dossier_fts) VALUES ('rebuild')"))
        connection.execute(text("INSERT INTO dossier_names_fts(dossier_names_fts) "
                                "VALUES ('rebuild')"))
    elif dialect == "postgresql":
        for statement in [_PG_DOCUMENT, *_PG_INDEXES]:
            connection.execute(text(statement))
        try:
            with connection.begin_nested():
                for statement in _PG_TRIGRAMS:
                    connection.execute(text(statement))
        except DBAPIError as e:  # not installed, no right to create it: search goes on without
            log.warning("pg_trgm is not available (%s): the search will not find misspelled "
                        "names; an administrator can run CREATE EXTENSION pg_trgm and "
                        "`sohoa reindex`", str(e).splitlines()[0])


def drop_search_index(connection: Connection) -> None:
    """Before dossier_search is dropped: its FTS5 tables (SQLite drops the triggers itself)."""
    if connection.dialect.name == "sqlite":
        connection.execute(text("DROP TABLE IF EXISTS dossier_fts"))
        connection.execute(text("DROP TABLE IF EXISTS dossier_names_fts"))


def alembic_include_name(name: str | None, type_: str, parents: dict[str, str | None]) -> bool:
    """Alembic's comparison (storage/migrations/env.py) leaves alone what the full-text index
    adds beside the metadata: FTS5 tables and their shadow tables, PostgreSQL's tsvector column
    and GIN indexes."""
    name = name or ""
    if type_ == "table":
        return not name.startswith(("dossier_fts", "dossier_names_fts"))
    if type_ == "column":
        return not (parents.get("table_name") == "dossier_search" and name == "document")
    if type_ == "index":
        return name not in ("ix_dossier_search_document", "ix_dossier_search_names_trgm")
    return True


def _after_create(target: Table, connection: Connection, **_: object) -> None:
    search_index_ddl(connection)


def _before_drop(target: Table, connection: Connection, **_: object) -> None:
    drop_search_index(connection)


event.listen(SearchText.__table__, "after_create", _after_create)
event.listen(SearchText.__table__, "before_drop", _before_drop)


# Every table above: what storage/migrate.py builds a new database from, and what the migrations
# (storage/migrations/env.py) are compared with.
METADATA = Base.metadata

"""Read-only queries of the web pages on the catalog and the audit log.

The page modules (api/web/*_pages.py) hold routes and view models; what they read from the
database is asked here. Each function takes the catalog (`storage.catalog.Catalog`, for its
sessions) or the audit log's engine, and plain arguments; it answers plain values: dicts,
lists, tuples or the small dataclasses below, never a row bound to a session.

`scope` is the agencies a reader may see: None for all agencies, else a tuple of agency codes
(`api.keys.Principal.scope()`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from storage.catalog import Catalog
from storage.records import Manifest
from storage.tables import Batch, Correction, Dossier, DossierVersion, Entry, FieldRow

Scope = tuple[str, ...] | None


# ---- the review queue ---------------------------------------------------------------------------


def batches_in_review(catalog: Catalog, limit: int) -> list[dict[str, Any]]:
    """Records of the batches waiting for review, newest first, at most `limit`."""
    stmt = (select(Batch.record).where(Batch.status == "needs_review")
            .order_by(Batch.received_at.desc(), Batch.id).limit(limit))
    with catalog.session() as s:
        return [dict(r) for r in s.scalars(stmt).all()]


@dataclass(frozen=True)
class CodeToCheck:
    """A dossier whose latest version's code was read by OCR or with a low confidence."""

    code: str
    updated_at: datetime | str
    source: str
    confidence: float


def codes_to_check(catalog: Catalog, scope: Scope, low_confidence: float,
                   limit: int) -> list[CodeToCheck]:
    """Dossiers (not withdrawn) whose latest version's code was read by OCR or below
    `low_confidence`, most recently updated first."""
    stmt = (select(Dossier.code, Dossier.updated_at, FieldRow.source, FieldRow.confidence)
            .join(FieldRow, and_(FieldRow.code == Dossier.code,
                                 FieldRow.version == Dossier.latest_version,
                                 FieldRow.name == "dossier_id"))
            .where(or_(FieldRow.source == "ocr", FieldRow.confidence < low_confidence),
                   Dossier.withdrawn_to.is_(None))
            .order_by(Dossier.updated_at.desc()).limit(limit))
    if scope is not None:
        stmt = stmt.where(Dossier.agency.in_(scope))
    with catalog.session() as s:
        rows = s.execute(stmt).all()
    return [CodeToCheck(code, at, source, confidence) for code, at, source, confidence in rows]


# ---- search and listing -----------------------------------------------------------------------


def agencies(catalog: Catalog, limit: int = 500) -> list[str]:
    """Every agency that has a dossier in the catalog, sorted."""
    with catalog.session() as s:
        return list(s.scalars(select(Dossier.agency).distinct().order_by(Dossier.agency)
                              .limit(limit)))


def procedures(catalog: Catalog, scope: Scope, limit: int = 300) -> list[str]:
    """The procedures of the dossiers of `scope`, sorted, empty ones left out."""
    stmt = (select(Dossier.procedure).where(Dossier.procedure.is_not(None)).distinct()
            .order_by(Dossier.procedure).limit(limit))
    if scope is not None:
        stmt = stmt.where(Dossier.agency.in_(scope))
    with catalog.session() as s:
        return [p for p in s.scalars(stmt) if p]


@dataclass(frozen=True)
class VersionSummary:
    """What a result row shows of a dossier version: its manifest and some of its fields."""

    manifest: Manifest
    fields: dict[str, str]  # name -> value, of the names asked for that the version has


def version_summaries(catalog: Catalog, versions: dict[str, int],
                      field_names: tuple[str, ...]) -> dict[str, VersionSummary]:
    """For each code -> version asked for, its manifest and its fields named in `field_names`:
    two queries for a whole page of results. A version the catalog lacks is left out."""
    if not versions:
        return {}
    manifests: dict[str, Manifest] = {}
    fields: dict[str, dict[str, str]] = {}
    with catalog.session() as s:
        for code, version, manifest in s.execute(
                select(DossierVersion.code, DossierVersion.version, DossierVersion.manifest)
                .where(DossierVersion.code.in_(versions))):
            if versions[code] == version:
                manifests[code] = Manifest.load(manifest)
        for code, version, name, value in s.execute(
                select(FieldRow.code, FieldRow.version, FieldRow.name, FieldRow.value)
                .where(FieldRow.code.in_(versions), FieldRow.name.in_(field_names))):
            if versions[code] == version:
                fields.setdefault(code, {})[name] = value
    return {code: VersionSummary(manifest, fields.get(code, {}))
            for code, manifest in manifests.items()}


def version_manifests(catalog: Catalog, code: str, versions: list[int]) -> list[Manifest]:
    """The catalog's copy of the manifests of these versions of a dossier."""
    with catalog.session() as s:
        return [Manifest.load(m) for m in s.scalars(select(DossierVersion.manifest).where(
            DossierVersion.code == code, DossierVersion.version.in_(versions)))]


def corrections(catalog: Catalog, code: str, version: int) -> list[dict[str, Any]]:
    """The corrections of one version of a dossier, oldest first."""
    with catalog.session() as s:
        rows = s.scalars(select(Correction).where(Correction.code == code,
                                                  Correction.version == version)
                         .order_by(Correction.seq)).all()
        return [{"name": c.name, "value": c.value, "previous": c.previous, "actor": c.actor,
                 "reason": c.reason, "at": c.at} for c in rows]


# ---- the audit log ------------------------------------------------------------------------------


def newest_entries(audit: Engine, action: str, targets: list[str]) -> dict[str, dict[str, Any]]:
    """The newest audit entry of `action` for each of `targets`: target -> its detail with the
    entry's `at` and `actor`."""
    if not targets:
        return {}
    newest = (select(func.max(Entry.seq)).where(Entry.action == action, Entry.target.in_(targets))
              .group_by(Entry.target))
    with Session(audit) as s:
        rows = s.scalars(select(Entry).where(Entry.seq.in_(newest))).all()
        return {e.target: {**e.detail, "at": e.at, "actor": e.actor} for e in rows}


def entries_of(audit: Engine, target: str, actions: tuple[str, ...] = (),
               without_suffixes: tuple[str, ...] = (), before: int | None = None,
               limit: int = 500) -> list[dict[str, Any]]:
    """The audit entries of one target, newest first: of `actions` (all when empty), none whose
    action ends with one of `without_suffixes`, sequence numbers below `before`."""
    stmt = select(Entry).where(Entry.target == target).order_by(Entry.seq.desc()).limit(limit)
    if actions:
        stmt = stmt.where(Entry.action.in_(actions))
    for suffix in without_suffixes:
        stmt = stmt.where(Entry.action.not_like(f"%{suffix}"))
    if before is not None:
        stmt = stmt.where(Entry.seq < before)
    with Session(audit) as s:
        return [e.to_dict() for e in s.scalars(stmt)]


# ---- the status page ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ChannelState:
    """One way pages come in (`source`: escl, folder, ftp, email, upload; and its device): the
    last file it brought and the last one that failed."""
    source: str
    device: str
    batches: int  # among the batches looked at
    last_file: str | None
    last_at: datetime | None
    last_status: str | None
    last_error: str | None
    last_error_file: str | None
    last_error_at: datetime | None


def _visible(record: dict[str, Any], scope: Scope) -> bool:
    return scope is None or record.get("agency") in scope


def intake_channels(catalog: Catalog, scope: Scope, recent: int = 2000) -> list[ChannelState]:
    """Each source and device seen among the `recent` newest batches, busiest first."""
    stmt = select(Batch.record, Batch.received_at).order_by(Batch.received_at.desc()).limit(recent)
    found: dict[tuple[str, str], dict[str, Any]] = {}
    with catalog.session() as s:
        rows = s.execute(stmt).all()
    for record, at in rows:
        if not _visible(record, scope):
            continue
        key = (record.get("source") or "upload", record.get("device") or "")
        state = found.setdefault(key, {"batches": 0, "last": None, "failed": None})
        state["batches"] += 1
        state["last"] = state["last"] or (record, at)
        if state["failed"] is None and (record.get("status") == "failed"
                                        or record.get("incomplete")):
            state["failed"] = (record, at)
    channels = []
    for (source, device), state in found.items():
        last, last_at = state["last"]
        failed, failed_at = state["failed"] or ({}, None)
        channels.append(ChannelState(
            source, device, state["batches"], last.get("file"), last_at, last.get("status"),
            failed.get("error") or failed.get("incomplete"), failed.get("file"), failed_at))
    return sorted(channels, key=lambda c: (-c.batches, c.source, c.device))


def batch_counts(catalog: Catalog, scope: Scope) -> dict[str, int]:
    """Batches by status (received, processing, waiting, needs_review, done, failed)."""
    stmt = select(Batch.status, func.count()).group_by(Batch.status)
    if scope is not None:  # the agency is in the record only
        with catalog.session() as s:
            counts: dict[str, int] = {}
            for status, record in s.execute(select(Batch.status, Batch.record)).all():
                if _visible(record, scope):
                    counts[status] = counts.get(status, 0) + 1
            return counts
    with catalog.session() as s:
        return {status: n for status, n in s.execute(stmt).all()}


def failed_pages_waiting(catalog: Catalog, scope: Scope) -> int:
    """Pages that could not be read, in batches waiting for review."""
    with catalog.session() as s:
        records = s.scalars(select(Batch.record).where(Batch.status == "needs_review")).all()
    return sum(len(r.get("failed_pages") or []) for r in records if _visible(r, scope))

"""The SQL catalog: an index of batches, pages, dossiers, versions and fields for fast lookups.

It holds nothing that object storage does not: `rebuild` recreates it from the stored records.
SQLite by default; PostgreSQL with SOHOA_DATABASE_URL.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy import text as sql
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from storage import layout, migrate, search
from storage.db import Base, aware, engine_for
from storage.objects import ObjectStore
from storage.records import BatchRecord, Manifest, PageFacts, ResultManifest
from storage.records import Correction as CorrectionRecord
from storage.tables import (
    Batch,
    Correction,
    Dossier,
    DossierResult,
    DossierVersion,
    FeedClock,
    FieldRow,
    Page,
)

P = ParamSpec("P")
R = TypeVar("R")


def _again_on_conflict(write: Callable[P, R]) -> Callable[P, R]:
    """Runs a write once more when another process inserted the same row meanwhile (two workers
    indexing versions of one dossier at once): the second try sees the row and updates it."""
    @functools.wraps(write)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return write(*args, **kwargs)
        except IntegrityError:
            return write(*args, **kwargs)
    return wrapper


def version_event(manifest: Manifest, agency: str, pdf_key: str,
                  at: datetime) -> dict[str, Any]:
    """The change-feed event of a stored version (also what webhooks receive): `created`,
    `new_version`, or `withdrawn` with `to`, the code that now holds its pages."""
    version = manifest.version
    event: dict[str, Any] = {
        "kind": "created" if version == 1 else "new_version",
        "dossier_id": manifest.dossier_id, "agency": agency, "version": version,
        "batch_id": manifest.batch_id, "pdf": pdf_key or None, "at": at.isoformat()}
    if withdrawn := manifest.withdrawn:
        event.update(kind="withdrawn", to=withdrawn.to)
    return event


# The tables that index object storage (storage/tables.py): `rebuild` drops and refills them and
# leaves the database's other tables (audit log, leases, API keys, users) alone.
INDEX_TABLES = ("batches", "pages", "dossiers", "dossier_versions", "fields", "corrections",
                "dossier_results", "dossier_search")

# Vietnam time (no DST): what a receipt's date and a report's month mean.
VIETNAM = timezone(timedelta(hours=7))
FIELD_COLUMNS = ("value", "page", "confidence", "source")  # a field's other keys go to `details`
_CODE_DATE = re.compile(r"-(\d{2})(\d{2})(\d{2})-")


def receipt_date(code: str, fields: dict[str, dict[str, Any]]) -> date | None:
    """The day a dossier was received, in Vietnam time: its receipt's `received_at` field, else
    the date part (YYMMDD) of its code; None when neither says."""
    value = (fields.get("received_at") or {}).get("value")
    if isinstance(value, str):
        try:
            at = datetime.fromisoformat(value)
            return (at.astimezone(VIETNAM) if at.tzinfo else at).date()
        except ValueError:
            pass
    if m := _CODE_DATE.search(code):
        try:
            return date(2000 + int(m[1]), int(m[2]), int(m[3]))
        except ValueError:
            return None
    return None


def result_event(manifest: ResultManifest, agency: str) -> dict[str, Any]:
    """The change-feed event of a stored result (also what webhooks receive)."""
    pdf = manifest.pdf
    return {"kind": "result_added", "dossier_id": manifest.dossier_id, "agency": agency,
            "version": manifest.version, "batch_id": manifest.batch_id,
            "pdf": pdf.key, "sha256": pdf.sha256,
            "at": datetime.fromisoformat(manifest.created_at).isoformat()}


def _flags(manifest: Manifest) -> dict[str, Any]:
    """What the report counts of a dossier's current version (storage/reports.py)."""
    signature = manifest.signature or {}
    return {"digitized": "dossier.pdf" in manifest.objects,
            "full_components": manifest.complete_by_components is True,
            "signed": signature.get("status") == "signed"}

UNFINISHED = ("received", "processing", "waiting")
# Review reasons of pages that would make a version of a known code but wait for a person
# (ingest/pipeline.py hold_partial): their pages are indexed with role "held" and that code.
HELD = frozenset({"incomplete_rescan", "incomplete_scan"})


# How long an indexing transaction waits for the one before it to commit (PostgreSQL): far longer
# than any batch's indexing takes; past it, the write fails and its task is tried again later,
# rather than every writer queueing behind one that hangs.
FEED_LOCK_SECONDS = 60


def _feed_time(s: Session) -> datetime:
    """The change feed's time for what this transaction indexes: now, and later than any time
    handed out before (a clock set back does not reorder the feed). Taken first in the
    transaction: updating the clock's row makes writers of the feed wait for each other until
    they commit, so a change is never seen after a later one's position has been read (a batch's
    dossiers are indexed once all are written, and another batch's can be indexed in between:
    ordered by their own times, the feed would hand out a cursor past a change not yet indexed,
    which a consumer resuming from it would never see)."""
    if s.get_bind().dialect.name == "postgresql":  # SQLite waits its busy timeout (storage/db.py)
        s.execute(sql(f"SET LOCAL lock_timeout = '{FEED_LOCK_SECONDS}s'"))
    last = s.execute(update(FeedClock).where(FeedClock.id == 1).values(at=FeedClock.at)
                     .returning(FeedClock.at)).scalar()
    if last is None:
        raise RuntimeError("the feed's clock is missing (Catalog() sets it)")
    at = max(datetime.now(UTC), aware(last) + timedelta(microseconds=1))
    s.execute(update(FeedClock).where(FeedClock.id == 1).values(at=at))
    return at


def _index_version(s: Session, manifest: Manifest, fields: dict[str, dict[str, Any]],
                   text: list[dict[str, Any]] | None, fed_at: datetime | None) -> None:
    code, version = manifest.dossier_id, manifest.version
    created = datetime.fromisoformat(manifest.created_at)
    document = search.Document.of(code, {n: str(f["value"]) for n, f in fields.items()},
                                  [line for page in text or [] for line in page.get("lines", [])])
    withdrawn_to = manifest.withdrawn.to if manifest.withdrawn else None
    pdf = manifest.objects.get("dossier.pdf")
    dossier = s.get(Dossier, code)
    procedure = (fields.get("procedure") or {}).get("value")
    received = receipt_date(code, fields)
    if dossier is None:
        dossier = Dossier(code=code, agency=manifest.agency, procedure=procedure,
                          latest_version=version, updated_at=created,
                          withdrawn_to=withdrawn_to)
        s.add(dossier)
        current = True
    elif version >= dossier.latest_version:
        dossier.latest_version, dossier.updated_at = version, created
        dossier.procedure = procedure or dossier.procedure
        dossier.withdrawn_to = withdrawn_to
        current = True
    else:
        current = False
    if current:
        for name, value in _flags(manifest).items():
            setattr(dossier, name, value)
        if withdrawn_to is None or dossier.received_on is None:
            dossier.received_on = received or dossier.received_on
            dossier.received_month = dossier.received_on.strftime("%Y-%m") \
                if dossier.received_on else None
    s.flush()
    if current:
        search.store(s, code, document)
    known = s.get(DossierVersion, (code, version))  # indexed again: its place in the feed stays
    s.merge(DossierVersion(code=code, version=version, batch_id=manifest.batch_id,
                           pdf_key=pdf.key if pdf else "",
                           manifest_key=layout.version_prefix(code, version)
                           + "manifest.json",
                           manifest=manifest.as_dict(), created_at=created,
                           indexed_at=_placed(known, fed_at, created)))
    s.execute(delete(FieldRow).where(FieldRow.code == code, FieldRow.version == version))
    for name, f in fields.items():
        details = {k: v for k, v in f.items() if k not in FIELD_COLUMNS} or None
        s.add(FieldRow(code=code, version=version, name=name, value=f["value"],
                       page=f["page"], confidence=f["confidence"], source=f["source"],
                       details=details))


def _latest_place(s: Session) -> datetime | None:
    """The latest place in the feed of any change indexed, or None for none."""
    found = [aware(at) for table in (DossierVersion, Correction, DossierResult)
             if (at := s.execute(select(func.max(table.indexed_at))).scalar()) is not None]
    return max(found, default=None)


def _placed(known: DossierVersion | Correction | DossierResult | None, fed_at: datetime | None,
            own: datetime) -> datetime:
    """A change's place in the feed: where it was when indexed before, else the feed's time;
    its own time when the catalog is rebuilt from storage (`fed_at` None)."""
    if known is not None and known.indexed_at is not None:
        return known.indexed_at
    return fed_at or own


class Catalog:
    def __init__(self, url: str) -> None:
        migrate.upgrade(url)
        self.engine = engine_for(url)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        self._rebuilding = False  # `rebuild`: changes keep their own times in the feed
        self._set_feed_clock()

    @_again_on_conflict
    def _set_feed_clock(self) -> None:
        """The feed clock's one row, so that the first writers of the feed also take turns."""
        with self.session() as s:
            if s.get(FeedClock, 1) is None:  # after the places already given (migration 0010)
                s.add(FeedClock(id=1, at=_latest_place(s) or datetime(1970, 1, 1, tzinfo=UTC)))

    def _fed_at(self, s: Session) -> datetime | None:
        return None if self._rebuilding else _feed_time(s)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._session.begin() as s:
            yield s

    # ---- writes: each replaces what the catalog knew, so indexing twice changes nothing ----

    @_again_on_conflict
    def index_batch(self, record: BatchRecord, pages: list[PageFacts]) -> None:
        roles: dict[int, tuple[str, str | None]] = {}
        for d in record.dossiers:
            for p in d.pages:
                roles[p] = ("dossier", d.dossier_id)
        waiting = set(record.unmatched_pages)
        for p in waiting:
            roles[p] = ("unmatched", None)
        for r in record.review:
            if r.reason in HELD:
                roles.update({p: ("held", r.code) for p in r.pages if p in waiting})
        for dropped in record.dropped_pages:
            roles[dropped.page] = (dropped.reason, None)
        assert record.received_at is not None
        with self.session() as s:
            s.execute(delete(Page).where(Page.batch_id == record.batch_id))
            s.merge(Batch(id=record.batch_id, file_name=record.file, sha256=record.sha256,
                          status=record.status, error=record.error, page_count=record.pages,
                          received_at=datetime.fromisoformat(record.received_at),
                          record=record.as_dict()))
            s.flush()
            for f in pages:
                role, code = roles.get(f.index, ("unmatched", None))
                ocr = f.ocr
                s.add(Page(batch_id=record.batch_id, index=f.index,
                           status=f.status, dossier_code=code, role=role,
                           rotation=f.rotation or 0, skew=f.skew or 0.0,
                           confidence=(ocr.confidence or 0.0) if ocr else 0.0,
                           text="\n".join(ocr.lines) if ocr else ""))

    def index_version(self, manifest: Manifest, fields: dict[str, dict[str, Any]],
                      text: list[dict[str, Any]] | None = None) -> None:
        """A stored version; a withdrawing version (manifest `withdrawn`, no pages, no objects)
        takes its code out of listing and search until a later version brings it back."""
        self.index_versions([(manifest, fields, text)])

    @_again_on_conflict
    def index_versions(self, versions: list[tuple[Manifest, dict[str, dict[str, Any]],
                                                  list[dict[str, Any]] | None]]) -> None:
        """index_version of several versions (a batch's dossiers), in one transaction."""
        with self.session() as s:
            fed_at = self._fed_at(s)
            for manifest, fields, text in versions:
                _index_version(s, manifest, fields, text, fed_at)

    @_again_on_conflict
    def index_correction(self, correction: CorrectionRecord) -> None:
        """Applies a stored correction to its version's field (idempotent: by code and seq)."""
        c = correction
        code, version, name = c.dossier_id, c.version, c.name
        with self.session() as s:
            fed_at, at = self._fed_at(s), datetime.fromisoformat(c.at)
            known = s.get(Correction, (code, c.seq))
            s.merge(Correction(code=code, seq=c.seq, version=version, name=name,
                               previous=c.previous, value=c.value, actor=c.actor,
                               reason=c.reason, at=at, indexed_at=_placed(known, fed_at, at)))
            row = s.get(FieldRow, (code, version, name))
            source = "confirmed" if c.confirmed else "corrected"
            if row is None:
                s.add(FieldRow(code=code, version=version, name=name, value=c.value,
                               page=c.page or 0, confidence=1.0, source=source))
            else:  # what the machine found beside the value no longer holds for a person's
                row.value, row.confidence, row.source, row.details = c.value, 1.0, source, None
            dossier = s.get(Dossier, code)
            if dossier is not None and dossier.latest_version == version:
                s.flush()
                values = s.execute(select(FieldRow.name, FieldRow.value).where(
                    FieldRow.code == code, FieldRow.version == version)).all()
                search.store_fields(s, code, {n: v for n, v in values})
                if name == "procedure":
                    dossier.procedure = c.value
                if name == "received_at" and (day := receipt_date(code, {name: {"value": c.value}})):
                    dossier.received_on, dossier.received_month = day, day.strftime("%Y-%m")

    @_again_on_conflict
    def index_result(self, manifest: ResultManifest) -> None:
        """A stored result of a dossier (indexed after its dossier: a result needs one)."""
        code, version = manifest.dossier_id, manifest.version
        with self.session() as s:
            fed_at, created = self._fed_at(s), datetime.fromisoformat(manifest.created_at)
            dossier = s.get(Dossier, code)
            if dossier is None:
                raise LookupError(f"no dossier {code} for its result")
            known = s.get(DossierResult, (code, version))
            s.merge(DossierResult(code=code, version=version, batch_id=manifest.batch_id,
                                  pdf_key=manifest.pdf.key,
                                  manifest_key=layout.result_prefix(code, version)
                                  + "manifest.json",
                                  manifest=manifest.as_dict(), created_at=created,
                                  indexed_at=_placed(known, fed_at, created)))
            dossier.result_version = max(dossier.result_version or 0, version)

    def result(self, code: str) -> dict[str, Any] | None:
        """The latest result of a dossier: version, sha256, received_at, pdf key, manifest;
        None when it has none."""
        with self.session() as s:
            row = s.scalars(select(DossierResult).where(DossierResult.code == code)
                            .order_by(DossierResult.version.desc()).limit(1)).first()
            if row is None:
                return None
            manifest = ResultManifest.load(row.manifest)
            return {"version": row.version, "sha256": manifest.pdf.sha256,
                    "size": manifest.pdf.size,
                    "received_at": aware(row.created_at).isoformat(), "pdf": row.pdf_key,
                    "manifest": row.manifest_key, "batch_id": row.batch_id,
                    "signature": manifest.signature}

    def known_results(self, code: str | None = None) -> list[tuple[str, int]]:
        """(code, version) of every result the catalog indexed: each must be in storage."""
        stmt = select(DossierResult.code, DossierResult.version)
        if code is not None:
            stmt = stmt.where(DossierResult.code == code)
        with self.session() as s:
            return [(c, v) for c, v in s.execute(stmt).all()]

    # ---- reads ----

    def dossier(self, code: str) -> dict[str, Any] | None:
        """The live dossier of this code; None when there is none, or when its code was
        withdrawn (see `withdrawal`)."""
        with self.session() as s:
            d = s.get(Dossier, code)
            if d is None or d.withdrawn_to is not None:
                return None
            versions = s.scalars(select(DossierVersion).where(DossierVersion.code == code)
                                 .order_by(DossierVersion.version)).all()
            fields = s.scalars(select(FieldRow).where(FieldRow.code == code,
                                                      FieldRow.version == d.latest_version)).all()
            latest = versions[-1]
            return {
                "dossier_id": d.code, "agency": d.agency, "procedure": d.procedure,
                "version": d.latest_version, "pdf": latest.pdf_key,
                "pages": Manifest.load(latest.manifest).pages,
                "fields": {f.name: {"value": f.value, "page": f.page,
                                    "confidence": f.confidence, "source": f.source,
                                    **(f.details or {})}
                           for f in fields},
                "versions": [{"version": v.version, "batch_id": v.batch_id, "pdf": v.pdf_key,
                              "manifest": v.manifest_key,
                              "created_at": v.created_at.isoformat()} for v in versions],
                "held": self._held(s, code),
            }

    def known_versions(self, code: str | None = None) -> list[tuple[str, int]]:
        """(code, version) of every version the catalog indexed: each must be in storage."""
        stmt = select(DossierVersion.code, DossierVersion.version)
        if code is not None:
            stmt = stmt.where(DossierVersion.code == code)
        with self.session() as s:
            return [(c, v) for c, v in s.execute(stmt).all()]

    def held(self, code: str) -> list[dict[str, Any]]:
        """Versions of `code` that wait for a person (a rescan that may lack pages): one entry
        per batch, `{batch_id, file, pages, reason, detail, received_at}`, oldest first."""
        with self.session() as s:
            return self._held(s, code)

    @staticmethod
    def _held(s: Session, code: str) -> list[dict[str, Any]]:
        rows = s.execute(select(Page.batch_id, Page.index, Batch.record)
                         .join(Batch, Batch.id == Page.batch_id)
                         .where(Page.dossier_code == code, Page.role == "held",
                                Batch.status == "needs_review")
                         .order_by(Batch.received_at, Page.batch_id, Page.index)).all()
        out: dict[str, dict[str, Any]] = {}
        for batch_id, index, stored in rows:
            if batch_id not in out:
                record = BatchRecord.load(stored)
                entry = next((r for r in record.review if r.code == code and r.reason in HELD),
                             None)
                out[batch_id] = {"batch_id": batch_id, "file": record.file, "pages": [],
                                 "reason": entry.reason if entry else None,
                                 "detail": entry.detail if entry else None,
                                 "received_at": record.received_at}
            out[batch_id]["pages"].append(index)
        return list(out.values())

    def withdrawal(self, code: str) -> dict[str, Any] | None:
        """What the latest version of a withdrawn code says (its pages went to dossier `to`,
        by whom, when); None for a live or unknown code."""
        with self.session() as s:
            d = s.get(Dossier, code)
            if d is None or d.withdrawn_to is None:
                return None
            latest = s.get(DossierVersion, (code, d.latest_version))
            said = Manifest.load(latest.manifest).withdrawn if latest else None
            return {"dossier_id": d.code, "agency": d.agency, "version": d.latest_version,
                    "to": d.withdrawn_to, "by": said.by if said else None,
                    "at": said.at if said else None}

    def list_dossiers(self, agencies: tuple[str, ...] | None, q: str = "",
                      procedure: str | None = None, updated_from: datetime | None = None,
                      updated_to: datetime | None = None, after: str | None = None,
                      limit: int = 50, where: tuple[Any, ...] = ()
                      ) -> tuple[list[dict[str, Any]], str | None]:
        """`search_dossiers`' page as the REST API lists it (each with a `snippet` when `q` has
        words) and the cursor of the next page, or None at the end."""
        position = None
        if after:  # without words, a code as before (the report's pages pass one)
            position = search.Position.decode(after) if search.Query.parse(q) \
                else search.Position("code", after)
        found = self.search_dossiers(
            search.Filters(agencies, procedure, updated_from, updated_to, where), q, position,
            limit)
        return [h.item() for h in found.hits], found.next.encode() if found.next else None

    def search_dossiers(self, filters: search.Filters, q: str = "", after: search.Position | None = None,
               limit: int = 50) -> search.Results:
        """Live dossiers (not withdrawn codes) the filters let through: without words by code,
        with words ranked, best first (storage/search.py). Counted in the caller's scope only:
        a count of every agency would leak. ValueError for a cursor of another search."""
        with self.session() as s:
            return search.search(s, filters, q, after, limit)

    def events(self, agencies: tuple[str, ...] | None,
               after: tuple[str, str, int, int] | None = None,
               limit: int = 100) -> list[dict[str, Any]]:
        """The change feed: a `created` or `new_version` event per stored dossier version
        (`withdrawn`, with the code its pages went `to`, for a version that withdraws its code),
        a `field_corrected` event per correction and a `result_added` event per stored result.
        Each event's position (when the catalog took it, code, kind rank, number) is its cursor.

        In the order changes reached the catalog, not by their own `at`: none is placed before a
        position already handed out (`_feed_time`). Read up to the feed clock's time when the
        reading starts: every change placed up to it is committed (its writer moved the clock in
        the same transaction), and one committed while the three tables are read waits for the
        next reading, so a correction placed after a version still being committed never moves
        the cursor past that version. Derived from what is stored, so it survives `reindex`:
        rebuilt, changes are placed at their own times; a consumer's cursor still works and sees
        no change twice, but a change made before its position and indexed after it, in the
        moments before the rebuild, is then behind it."""
        def since(at_col: Any, number_col: Any, rank: int) -> Any:
            assert after is not None
            at, code, after_rank, number = datetime.fromisoformat(after[0]), after[1], after[2], after[3]
            later_same_code = (number_col > number) if rank == after_rank else (rank > after_rank)
            return or_(at_col > at, and_(at_col == at, or_(
                Dossier.code > code, and_(Dossier.code == code, later_same_code))))

        versions = (select(DossierVersion, Dossier.agency).join(Dossier)
                    .order_by(DossierVersion.indexed_at, DossierVersion.code, DossierVersion.version)
                    .limit(limit))
        corrections = (select(Correction, Dossier.agency).join(Dossier)
                       .order_by(Correction.indexed_at, Correction.code, Correction.seq)
                       .limit(limit))
        if agencies is not None:
            versions = versions.where(Dossier.agency.in_(agencies))
            corrections = corrections.where(Dossier.agency.in_(agencies))
        results = (select(DossierResult, Dossier.agency).join(Dossier)
                   .order_by(DossierResult.indexed_at, DossierResult.code, DossierResult.version)
                   .limit(limit))
        if agencies is not None:
            results = results.where(Dossier.agency.in_(agencies))
        if after:
            versions = versions.where(since(DossierVersion.indexed_at, DossierVersion.version, 0))
            corrections = corrections.where(since(Correction.indexed_at, Correction.seq, 1))
            results = results.where(since(DossierResult.indexed_at, DossierResult.version, 2))
        with self.session() as s:
            upto = s.execute(select(FeedClock.at).where(FeedClock.id == 1)).scalar()
            if upto is None:
                return []
            versions = versions.where(DossierVersion.indexed_at <= upto)
            corrections = corrections.where(Correction.indexed_at <= upto)
            results = results.where(DossierResult.indexed_at <= upto)
            events = [(version_event(Manifest.load(v.manifest), agency, v.pdf_key,
                                     aware(v.created_at)),
                       (aware(v.indexed_at or v.created_at), v.code, 0, v.version))
                      for v, agency in s.execute(versions).all()]
            events += [({"kind": "field_corrected", "dossier_id": c.code, "agency": agency,
                         "version": c.version, "field": c.name, "value": c.value,
                         "previous": c.previous, "correction": c.seq,
                         "at": aware(c.at).isoformat()},
                        (aware(c.indexed_at or c.at), c.code, 1, c.seq))
                       for c, agency in s.execute(corrections).all()]
            events += [(result_event(ResultManifest.load(r.manifest), agency),
                        (aware(r.indexed_at or r.created_at), r.code, 2, r.version))
                       for r, agency in s.execute(results).all()]
        events.sort(key=lambda e: e[1])
        return [{**event, "position": [key[0].isoformat(), key[1], key[2], key[3]]}
                for event, key in events[:limit]]

    def batch(self, batch_id: str) -> BatchRecord | None:
        with self.session() as s:
            b = s.get(Batch, batch_id)
            return BatchRecord.load(dict(b.record)) if b else None

    def unfinished_batches(self, limit: int = 1000) -> list[BatchRecord]:
        """Records of batches not yet done, needs_review or failed (the watchdog's round),
        oldest first."""
        stmt = (select(Batch.record).where(Batch.status.in_(UNFINISHED))
                .order_by(Batch.received_at, Batch.id).limit(limit))
        with self.session() as s:
            return [BatchRecord.load(dict(r)) for r in s.scalars(stmt).all()]

    def recent_batches(self, agencies: tuple[str, ...] | None,
                       limit: int = 20) -> list[BatchRecord]:
        """The batch records indexed last (finished or failed), newest first; `agencies=None`
        means all (the scanning station's batch list)."""
        stmt = select(Batch.record).order_by(Batch.received_at.desc(), Batch.id).limit(limit)
        if agencies is not None:
            stmt = stmt.where(Batch.record["agency"].as_string().in_(agencies))
        with self.session() as s:
            return [BatchRecord.load(dict(r)) for r in s.scalars(stmt).all()]

    # ---- rebuild from the truth ----

    def rebuild(self, store: ObjectStore) -> tuple[int, int]:
        """Drops every row and re-indexes all batch records and dossier manifests."""
        index = [Base.metadata.tables[name] for name in INDEX_TABLES]
        Base.metadata.drop_all(self.engine, tables=index)
        Base.metadata.create_all(self.engine, tables=index)
        self._rebuilding = True
        try:
            found = self._index_all(store)
        finally:
            self._rebuilding = False
        with self.session() as s:  # the clock past every place rebuilt (the feed reads up to it)
            at = max(_feed_time(s), _latest_place(s) or datetime(1970, 1, 1, tzinfo=UTC))
            s.execute(update(FeedClock).where(FeedClock.id == 1).values(at=at))
        return found

    def _index_all(self, store: ObjectStore) -> tuple[int, int]:
        batches = versions = 0
        for key in store.list("batches/"):
            if key.endswith("/batch.json"):
                record = BatchRecord.load(store.get(key))
                pages = [PageFacts.load(store.get(layout.page_facts(record.batch_id, i)))
                         for i in range(record.pages)
                         if store.exists(layout.page_facts(record.batch_id, i))]
                self.index_batch(record, pages)
                batches += 1
        for key in store.list("dossiers/"):
            if key.endswith("/manifest.json"):
                manifest = Manifest.load(store.get(key))
                objects = manifest.objects  # none in a version that withdraws its code
                fields = json.loads(store.get(objects["fields.json"].key)) \
                    if "fields.json" in objects else {}
                text = json.loads(store.get(objects["text.json"].key)) \
                    if "text.json" in objects else []
                self.index_version(manifest, fields, text)
                versions += 1
        corrections = [CorrectionRecord.load(store.get(k)) for k in store.list("dossiers/")
                       if layout.is_correction(k)]
        for correction in sorted(corrections, key=lambda c: (c.dossier_id, c.seq)):
            self.index_correction(correction)
        for key in store.list(layout.results_prefix()):
            if key.endswith("/manifest.json"):
                result = ResultManifest.load(store.get(key))
                if self.dossier(result.dossier_id) or self.withdrawal(result.dossier_id):
                    self.index_result(result)
        return batches, versions

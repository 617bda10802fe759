"""Dossier versions: each change of a dossier is a new stored version (or a correction), then one
`DossierChanged` event that every listener receives.

    store_version(code, ..., refs, claim)  -> manifest    dossier stages, objects, manifest
    withdraw(code, to, claim, actor)       -> manifest    a version that withdraws a misread code
    correct(code, name, value, actor)      -> correction  a person's correction of a field
    store_result(code, ..., refs, claim)   -> manifest    result vN of the dossier (result stages)
    versions(code)                         -> manifests   oldest first
    page_refs(manifest)                    -> refs        the pages a version is made of

What follows a change is the listeners' work, registered in one place (`listeners`): the catalog
index (which the change feed reads), the audit log (with the manifest's checksum, the anchor
storage/integrity.py verifies against), and the webhook announcer. Every listener gets every
event, in that order; a failure is logged and does not undo the stored change. A `required`
listener's failure (the catalog's, the audit log's) fails the step afterwards, as its dependency
being down does anywhere else, so the caller waits and retries.

Objects written here are immutable and claimed atomically: `claim` makes a writer idempotent (the
same claim gets the same version number).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from ingest.results import ResultStage, ResultWork
from ingest.stages import DossierStage, DossierWork
from ocr import pdf as pdfmod
from storage import layout
from storage.audit import AuditLog
from storage.audit import Event as AuditEvent
from storage.catalog import Catalog, result_event, version_event
from storage.config import StorageConfig
from storage.objects import ObjectStore, get_all
from storage.records import (
    BatchRecord,
    Correction,
    Manifest,
    OriginalScan,
    PageFacts,
    PageRef,
    PageRefEntry,
    ResultManifest,
    StoredObject,
)

FORMAT_VERSION = 1  # of manifests and corrections
RESULT_ACTION = "dossier.result.create"  # the audit action of a stored result (its anchor)
log = logging.getLogger(__name__)

Kind = Literal["created", "new_version", "withdrawn", "field_corrected", "result_added"]


class NoDossier(LookupError):
    """A result for a dossier code that has no live dossier: refused, its pages kept."""


@dataclass(frozen=True)
class DossierChanged:
    """One change of dossier `code`: a version stored (`created`, `new_version`), its code
    withdrawn (`withdrawn`), a field corrected (`field_corrected`), or a result stored
    (`result_added`: `version` and `manifest` are the result's)."""

    kind: Kind
    code: str
    agency: str
    version: int
    actor: str
    at: str  # ISO 8601, seconds
    manifest: Manifest | ResultManifest | None = None  # what was stored (not field_corrected)
    anchor: str | None = None  # sha256 of that manifest.json as stored
    fields: dict[str, Any] = field(default_factory=dict)  # the version's fields and text
    text: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] | None = None  # the writer's additions to the manifest (a "change")
    correction: Correction | None = None  # field_corrected: the stored correction
    remote: str = ""  # where the person's request came from


class Listener(Protocol):
    def __call__(self, event: DossierChanged) -> None: ...


# A process's threads writing versions' objects, shared by the versions written at once: as many
# as before they were shared (four for each of a batch's dossiers written side by side), so that
# on S3, where each write is a round trip, none waits for a thread.
WRITERS = 12
_writers_pool: ThreadPoolExecutor | None = None
_writers_lock = threading.Lock()
_writers_started = False


def _writers() -> ThreadPoolExecutor:
    """The threads that write versions' objects, started once per process: a pool started for
    each version cost its dossier four thread starts, each waiting on the interpreter while the
    other dossiers are assembled (0.05 s of a batch's end: BENCHMARKS.md, "Page faults, BLAS
    threads"). Writers only write: none waits on another, so versions written at once share them."""
    global _writers_pool
    with _writers_lock:
        if _writers_pool is None:
            _writers_pool = ThreadPoolExecutor(WRITERS, thread_name_prefix="version-writer")
        return _writers_pool


def start_writers() -> None:
    """The writer threads started before the dossiers' end (Pipeline.prepare_dossiers): each
    started there waits for the interpreter while the other dossiers are assembled. A pool
    starts a thread for a task only when none is idle, so each task holds its thread a moment."""
    global _writers_started
    with _writers_lock:
        if _writers_started:
            return
        _writers_started = True
    pool = _writers()
    for _ in range(WRITERS):
        pool.submit(time.sleep, 0.005)


def _forked() -> None:
    """A forked worker has none of its parent's threads: it starts writers of its own."""
    global _writers_pool, _writers_lock, _writers_started
    _writers_pool, _writers_lock, _writers_started = None, threading.Lock(), False


os.register_at_fork(after_in_child=_forked)


@dataclass
class CatalogIndexer:
    """Indexes the change; the change feed (GET /api/v1/events) reads the index. Several
    versions told at once (`many`: a batch's dossiers) are indexed in one transaction."""

    catalog: Catalog
    required = True

    def __call__(self, event: DossierChanged) -> None:
        if event.kind == "field_corrected":
            assert event.correction is not None
            self.catalog.index_correction(event.correction)
        elif isinstance(event.manifest, ResultManifest):
            self.catalog.index_result(event.manifest)
        else:
            assert event.manifest is not None
            self.catalog.index_version(event.manifest, event.fields, event.text)

    def many(self, events: list[DossierChanged]) -> None:
        """A batch's versions indexed in one transaction; other changes one by one."""
        versions = [e for e in events if isinstance(e.manifest, Manifest)
                    and e.kind in ("created", "new_version", "withdrawn")]
        if len(versions) < len(events):
            for event in events:
                self(event)
            return
        self.catalog.index_versions([(e.manifest, e.fields, e.text) for e in versions])


@dataclass
class AuditWriter:
    """One audit entry per change; a version's entry holds its manifest's checksum. Several
    changes told at once (`many`: a batch's dossiers) are appended in one transaction."""

    audit: AuditLog
    required = True

    def __call__(self, event: DossierChanged) -> None:
        self.audit.append_many([audit_event(event)])

    def many(self, events: list[DossierChanged]) -> None:
        self.audit.append_many([audit_event(e) for e in events])


def audit_event(event: DossierChanged) -> AuditEvent:
    """The audit entry of a change."""
    change = {"change": event.extra.get("change")} if event.extra else {}
    if event.kind == "field_corrected":
        c = event.correction
        assert c is not None
        return AuditEvent(event.actor, "dossier.field.correct", event.code, event.agency,
                          event.remote,
                          {"version": event.version, "field": c.name, "previous": c.previous,
                           "value": c.value, "reason": c.reason, "correction": c.seq,
                           **({"confirmed": True} if c.confirmed else {})})
    m = event.manifest
    assert m is not None
    if isinstance(m, ResultManifest):
        return AuditEvent(event.actor, RESULT_ACTION, event.code, event.agency, event.remote,
                          {"version": event.version, "batch_id": m.batch_id,
                           "pdf_sha256": m.pdf.sha256, "manifest_sha256": event.anchor})
    if event.kind == "withdrawn":
        return AuditEvent(event.actor, "dossier.withdraw", event.code, event.agency,
                          detail={"version": event.version,
                                  "to": m.withdrawn.to if m.withdrawn else None,
                                  "manifest_sha256": event.anchor, **change})
    return AuditEvent(event.actor, "dossier.version.create", event.code, event.agency,
                      detail={"version": event.version, "batch_id": m.batch_id,
                              "pdf_sha256": m.objects["dossier.pdf"].sha256,
                              "manifest_sha256": event.anchor, **change})


@dataclass
class Announcer:
    """Hands the change's feed event to `announce` (ingest.broker.announce queues the webhook
    deliveries); the same shape as the feed's."""

    announce: Callable[[dict[str, Any]], None]
    required = False

    def __call__(self, event: DossierChanged) -> None:
        self.announce(feed_event(event))


def feed_event(event: DossierChanged) -> dict[str, Any]:
    """What the change feed and webhooks say of a change."""
    if event.kind == "field_corrected":
        c = event.correction
        assert c is not None
        return {"kind": "field_corrected", "dossier_id": event.code, "agency": event.agency,
                "version": event.version, "field": c.name, "value": c.value,
                "previous": c.previous, "at": c.at}
    m = event.manifest
    assert m is not None
    if isinstance(m, ResultManifest):
        return result_event(m, event.agency)
    pdf = m.objects["dossier.pdf"].key if "dossier.pdf" in m.objects else ""
    return version_event(m, event.agency, pdf, datetime.fromisoformat(m.created_at))


def listeners(catalog: Catalog | None, audit: AuditLog | None,
              announce: Callable[[dict[str, Any]], None] | None = None) -> list[Listener]:
    """The one place that says who hears of a dossier's changes, in this order."""
    found: list[Listener] = []
    if catalog is not None:
        found.append(CatalogIndexer(catalog))
    if audit is not None:
        found.append(AuditWriter(audit))
    if announce is not None:
        found.append(Announcer(announce))
    return found


@dataclass
class Dossiers:
    """A dossier's versions, results and corrections in `store`, made by `stages` (a version)
    and `result_stages` (a result); `storage` (the settings' section) says how long their
    objects are retained. ingest/services.py `dossiers` builds it from the settings, with the
    default stages and the listeners."""

    store: ObjectStore
    stages: list[DossierStage] = field(default_factory=list)
    result_stages: list[ResultStage] = field(default_factory=list)
    storage: StorageConfig = field(default_factory=StorageConfig)
    catalog: Catalog | None = None  # read by `correct`: the fields as corrected so far
    listeners: list[Listener] = field(default_factory=list)

    def emit(self, event: DossierChanged) -> None:
        """Every listener hears of the change once; a failure is logged, and the first failure
        of a required listener is raised once all have heard."""
        self.emit_all([event])

    def emit_all(self, events: list[DossierChanged]) -> None:
        """`emit` for several changes (a batch's dossiers), in their order: a listener that
        takes many at once (`many`) hears them in one call, the others one by one."""
        failure: Exception | None = None
        for listener in self.listeners:
            many = getattr(listener, "many", None)
            groups = [events] if many is not None and len(events) > 1 else [[e] for e in events]
            for group in groups:
                try:
                    if len(group) > 1:
                        many(group)  # type: ignore[misc]
                    else:
                        listener(group[0])
                except Exception as error:  # the change is stored; a listener must not undo that
                    log.exception("%s could not take %s", type(listener).__name__, ", ".join(
                        f"{e.kind} of {e.code} v{e.version}" for e in group))
                    if failure is None and getattr(listener, "required", False):
                        failure = error
        if failure is not None:
            raise failure

    # ---- writers ---------------------------------------------------------------------------

    def store_version(self, code: str, agency: str, code_source: str, refs: list[PageRef],
                      claim: str, registry: dict[str, Any] | None = None,
                      actor: str = "pipeline", extra: dict[str, Any] | None = None
                      ) -> Manifest:
        """A new version of dossier `code` made of these pages (from one batch or several, each
        possibly turned by a person): dossier stages, objects, manifest, then the event.
        `claim` makes it idempotent: the same claim gets the same version number."""
        event = self.write_version(code, agency, code_source, refs, claim, registry, actor, extra)
        self.emit(event)
        assert isinstance(event.manifest, Manifest)
        return event.manifest

    def write_version(self, code: str, agency: str, code_source: str, refs: list[PageRef],
                      claim: str, registry: dict[str, Any] | None = None,
                      actor: str = "pipeline", extra: dict[str, Any] | None = None,
                      record: BatchRecord | None = None,
                      known: dict[tuple[str, int], PageFacts] | None = None) -> DossierChanged:
        """store_version without the event, which it returns for the caller to `emit`: a
        batch's dossiers are written side by side and told in their order (ingest/pipeline.py
        finalize). `record` and `known` (page facts by batch and page): what the caller has
        read already."""
        batch_id = refs[0].batch_id
        if record is None or record.batch_id != batch_id:
            record = BatchRecord.load(self.store.get(layout.batch_record(batch_id)))
        facts, pdfs = self._pages(refs, known)
        pages = [r.index for r in refs]
        work = DossierWork(batch_id, code, agency, code_source, pages, facts, pdfs,
                           record.received_at or "", registry=registry)
        for stage in self.stages:
            stage(work)
        assert work.pdf is not None, "a dossier stage must produce the PDF"
        version = self._claim_version(code, claim)
        prefix = layout.version_prefix(code, version)
        fields = {k: f.to_dict() for k, f in work.fields.items()}
        text = [{"page": i, "lines": f.ocr.lines if f.ocr else []}
                for i, f in zip(pages, facts, strict=True)]
        objects: dict[str, StoredObject] = {}
        procedure = work.fields.get("procedure")
        retention = self.storage.retention_for(procedure.value if procedure else None)
        stored = [("dossier.pdf", work.pdf), *sorted(work.copies.items()),
                  ("text.json", _json(text)), ("fields.json", _json(fields))]
        # Written side by side: each waits on its disk sync (or on S3's answer), not on the
        # others; the manifest, which names them all, only once they are all stored.
        writes = [_writers().submit(self.store.put, prefix + name, data, overwrite=True,
                                    retention_days=retention) for name, data in stored]
        futures.wait(writes)  # all ended before an error is raised: none still writing after it
        for (name, _), write in zip(stored, writes, strict=True):
            info = write.result()
            objects[name] = StoredObject(key=info.key, sha256=info.sha256, size=info.size)
        assert record.original and record.sha256 and record.size is not None
        manifest = Manifest(
            format=FORMAT_VERSION, dossier_id=code, agency=agency, version=version,
            batch_id=batch_id, code_source=code_source, pages=pages,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            original=OriginalScan(key=record.original, sha256=record.sha256, size=record.size,
                                  file=record.file),
            objects=objects)
        if any(r.batch_id != batch_id or r.rotate for r in refs):
            manifest.page_refs = [PageRefEntry.model_validate(r.to_dict()) for r in refs]
        manifest.retention_days = retention
        if registry is not None:
            manifest.registry = registry
        for key, value in {**work.manifest, **(extra or {})}.items():
            setattr(manifest, key, value)
        # The manifest's own checksum goes into the audit log: the anchor that proves the
        # manifest was not rewritten later (storage/integrity.py).
        anchor = self.store.put(prefix + "manifest.json", manifest.dump(), overwrite=True,
                                retention_days=retention).sha256
        return DossierChanged("created" if version == 1 else "new_version", code, agency,
                              version, actor, manifest.created_at, manifest, anchor,
                              fields, text, extra)

    def emit_stored(self, manifest: Manifest, actor: str = "pipeline") -> None:
        """The event of a version already stored, again: for a run that stored it and was cut
        short before every listener heard (the catalog's index, the audit log's anchor)."""
        self.emit(self.stored_event(manifest, actor))

    def stored_event(self, manifest: Manifest, actor: str = "pipeline") -> DossierChanged:
        """The event of a version already stored (emit_stored), for the caller to `emit`."""
        code, version = manifest.dossier_id, manifest.version
        anchor = hashlib.sha256(self.store.get(
            layout.version_prefix(code, version) + "manifest.json")).hexdigest()
        fields = json.loads(self.store.get(manifest.objects["fields.json"].key))
        text = json.loads(self.store.get(manifest.objects["text.json"].key))
        extra = {"change": manifest.change} if manifest.has("change") else None
        return DossierChanged("created" if version == 1 else "new_version", code,
                              manifest.agency, version, actor, manifest.created_at,
                              manifest, anchor, fields, text, extra)

    def withdraw(self, code: str, to: str, claim: str, actor: str,
                 extra: dict[str, Any] | None = None) -> Manifest:
        """A version of dossier `code` that withdraws the code: a person found it was misread
        and its pages are now dossier `to`. It has no pages and no objects; its manifest says
        `withdrawn: {to, by, at}` and keeps the original scan's checksum (so it verifies). The
        catalog then lists the code no more; a later version (a real dossier of that code
        scanned later) brings it back. `claim` makes it idempotent like store_version's."""
        latest = self.versions(code)[-1]
        version = self._claim_version(code, claim)
        at = datetime.now(UTC).isoformat(timespec="seconds")
        manifest = Manifest.model_validate({
            "format": FORMAT_VERSION, "dossier_id": code, "agency": latest.agency,
            "version": version, "batch_id": latest.batch_id,
            "code_source": latest.code_source, "pages": [], "created_at": at,
            "original": latest.original.as_dict(), "objects": {},
            "retention_days": latest.retention_days,
            "withdrawn": {"to": to, "by": actor, "at": at, "from_version": latest.version},
            **(extra or {}),
        })
        key = layout.version_prefix(code, version) + "manifest.json"
        if self.store.exists(key):  # stored by an earlier run of this claim, cut short
            data = self.store.get(key)
            manifest = Manifest.load(data)
            anchor = hashlib.sha256(data).hexdigest()
        else:
            anchor = self.store.put(key, manifest.dump(),
                                    retention_days=manifest.retention_days).sha256
        self.emit(DossierChanged("withdrawn", code, manifest.agency, version, actor,
                                 manifest.created_at, manifest, anchor, extra=extra))
        return manifest

    def correct(self, code: str, name: str, value: str, actor: str, reason: str = "",
                remote: str = "") -> Correction:
        """A person's correction of a field of the latest version: stored as an object of its
        own (the version's fields.json stays as the machine read it), then the event. The value
        it already has is a confirmation: the field reads `confirmed`, no longer in doubt."""
        manifest = self.versions(code)[-1]
        version = manifest.version
        fields = json.loads(self.store.get(manifest.objects["fields.json"].key))
        if self.catalog:
            current = self.catalog.dossier(code)
            if current and current["version"] == version:
                fields = current["fields"]
        previous = fields.get(name)
        correction = Correction(format=FORMAT_VERSION, dossier_id=code, version=version,
                                name=name, value=value,
                                previous=previous["value"] if previous else None,
                                page=previous["page"] if previous else manifest.pages[0],
                                actor=actor, reason=reason,
                                at=datetime.now(UTC).isoformat(timespec="seconds"), seq=1)
        if previous is not None and previous["value"] == value:
            correction.confirmed = True  # "this reading is right": its doubt goes
        while not self.store.create(layout.correction(code, correction.seq), correction.dump()):
            correction.seq += 1
        self.emit(DossierChanged("field_corrected", code, manifest.agency, version, actor,
                                 correction.at, correction=correction, remote=remote))
        return correction

    def store_result(self, code: str, refs: list[PageRef], claim: str,
                     actor: str = "pipeline", remote: str = "") -> ResultManifest:
        """Result vN of dossier `code` made of these (already OCR'd) pages: result stages,
        objects, manifest (its checksum the audit log's anchor), then the `result_added` event.
        NoDossier when the code has no live dossier. `claim` makes it idempotent: the same
        claim gets the same result number, and a result stored by an earlier run cut short is
        announced again rather than rebuilt."""
        versions = self.versions(code)
        if not versions or versions[-1].withdrawn:
            raise NoDossier(f"no dossier {code}: a result needs its dossier first")
        dossier = versions[-1]
        agency = dossier.agency
        batch_id = refs[0].batch_id
        version = self._claim(layout.result_prefix, code, claim)
        prefix = layout.result_prefix(code, version)
        if self.store.exists(prefix + "manifest.json"):
            data = self.store.get(prefix + "manifest.json")
            manifest = ResultManifest.load(data)
            self.emit(DossierChanged("result_added", code, agency, version, actor,
                                     manifest.created_at, manifest,
                                     hashlib.sha256(data).hexdigest(), remote=remote))
            return manifest
        record = BatchRecord.load(self.store.get(layout.batch_record(batch_id)))
        facts, pdfs = self._pages(refs)
        pages = [r.index for r in refs]
        work = ResultWork(batch_id, code, agency, pages, facts, pdfs, record.received_at or "")
        for stage in self.result_stages:
            stage(work)
        assert work.pdf is not None, "a result stage must produce the PDF"
        retention = dossier.retention_days
        text = [{"page": i, "lines": f.ocr.lines if f.ocr else []}
                for i, f in zip(pages, facts, strict=True)]
        objects: dict[str, StoredObject] = {}
        for name, data in ((ResultManifest.PDF, work.pdf), ("text.json", _json(text))):
            info = self.store.put(prefix + name, data, overwrite=True, retention_days=retention)
            objects[name] = StoredObject(key=info.key, sha256=info.sha256, size=info.size)
        assert record.original and record.sha256 and record.size is not None
        manifest = ResultManifest(
            format=FORMAT_VERSION, kind="result", dossier_id=code, agency=agency,
            version=version, batch_id=batch_id, pages=pages,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            original=OriginalScan(key=record.original, sha256=record.sha256, size=record.size,
                                  file=record.file),
            objects=objects, retention_days=retention, dossier_version=dossier.version)
        if any(r.batch_id != batch_id or r.rotate for r in refs):
            manifest.page_refs = [PageRefEntry.model_validate(r.to_dict()) for r in refs]
        for key, value in work.manifest.items():
            setattr(manifest, key, value)
        anchor = self.store.put(prefix + "manifest.json", manifest.dump(), overwrite=True,
                                retention_days=retention).sha256
        self.emit(DossierChanged("result_added", code, agency, version, actor,
                                 manifest.created_at, manifest, anchor, remote=remote))
        return manifest

    # ---- readers ---------------------------------------------------------------------------

    def results(self, code: str) -> list[ResultManifest]:
        """The stored results of dossier `code`, oldest first."""
        keys = [k for k in self.store.list(layout.results_prefix(code))
                if k.endswith("/manifest.json")]
        return sorted((ResultManifest.load(self.store.get(k)) for k in keys),
                      key=lambda m: m.version)

    def versions(self, code: str) -> list[Manifest]:
        """The stored versions of dossier `code`, oldest first."""
        keys = [k for k in self.store.list(layout.dossier_prefix(code))
                if k.endswith("/manifest.json")]
        return sorted((Manifest.load(self.store.get(k)) for k in keys), key=lambda m: m.version)

    @staticmethod
    def page_refs(manifest: Manifest) -> list[PageRef]:
        """The pages a stored version is made of."""
        return manifest.refs()

    def _pages(self, refs: list[PageRef], known: dict[tuple[str, int], PageFacts] | None = None
               ) -> tuple[list[PageFacts], list[bytes]]:
        """The facts and page PDFs of `refs` (each turned as its ref says), read side by side
        from a remote store; facts found in `known` (by batch and page) are not read again."""
        known = known or {}
        unread = [r for r in refs if (r.batch_id, r.index) not in known]
        found = get_all(self.store, [*(layout.page_facts(r.batch_id, r.index) for r in unread),
                                     *(layout.page_pdf(r.batch_id, r.index) for r in refs)])
        read = {(r.batch_id, r.index): PageFacts.load(data)
                for r, data in zip(unread, found, strict=False)}
        pdfs = [pdfmod.rotated(data, r.rotate)
                for r, data in zip(refs, found[len(unread):], strict=True)]
        return [{**known, **read}[(r.batch_id, r.index)] for r in refs], pdfs

    def _claim_version(self, code: str, claim: str) -> int:
        """The next free version number, claimed atomically (or this claim's earlier one)."""
        return self._claim(layout.version_prefix, code, claim)

    def _claim(self, prefix: Callable[[str, int], str], code: str, claim: str) -> int:
        """The next free number under `prefix` (versions, results), claimed atomically (or
        this claim's earlier one)."""
        version = 1
        while True:
            key = prefix(code, version) + ".claim"
            if self.store.create(key, claim.encode()):
                return version
            if self.store.get(key).decode() == claim:
                return version
            version += 1


def _json(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=False, indent=1, sort_keys=True).encode()

"""The batch pipeline as idempotent steps keyed by batch id (and page number).

    receive(file)              -> batch_id   stores the original first, then the batch record
    inspect(batch_id)          -> record     validates the file, counts pages (or records the error)
    process_page(batch_id, n)  -> facts      page stages; stores pages/n.pdf, then pages/n.json
    split_batch(batch_id)      -> plan       dossiers, unmatched and dropped pages
    assemble(batch_id, code)   -> manifest   a new dossier version (ingest/versions.py)
    finish(batch_id)           -> record     final status, catalog index

Each step reads its inputs from the object store and writes its outputs there, so any step can run
on any machine (as a task queue will run them), and running a step again changes nothing: a step
whose output already exists returns it.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ingest import logs, metrics, services
from ingest.page_stages import decode_limits, page_stages
from ingest.registry import Registry
from ingest.settings import Settings
from ingest.split import DossierSplit, SplitPlan, split, split_result
from ingest.stages import PageStage, PageWork, read_page
from ingest.versions import DossierChanged, Dossiers, NoDossier, PageRef, listeners, start_writers
from ocr import pdf as pdfmod
from ocr.decode import (
    DecodeLimits,
    count_pages,
    cut_short,
    page_weights,
)
from ocr.dossier_code import DossierCodeGrammar
from ocr.errors import DocumentError, ToolError
from storage import layout
from storage.audit import AuditLog
from storage.catalog import Catalog
from storage.errors import TRANSIENT, dependency_of, describe
from storage.objects import ObjectStore, get_all, sha256_file
from storage.records import (
    BatchRecord,
    DossierSummary,
    DroppedPage,
    FailedPage,
    Manifest,
    PageFacts,
    ResultManifest,
    ReviewEntry,
)

FORMAT_VERSION = 1
ALL_AGENCIES = "*"  # a scope that holds every agency (api/keys.py)
# A batch in one of these states is settled: nothing resumes it by itself.
FINAL = frozenset({"done", "needs_review", "failed"})
ASSEMBLERS = 3  # a batch's dossiers written at once (Pipeline.assemble_all)
# A page read ahead of the pipeline (ingest/ahead.py): its work, or None to read it here.
ReadAhead = Callable[[], PageWork | None]

log = logging.getLogger(__name__)


@dataclass
class Pipeline:
    settings: Settings
    store: ObjectStore
    catalog: Catalog | None = None
    audit: AuditLog | None = None
    # By default the settings' (ingest/page_stages.py page_stages).
    page_stages: list[PageStage] = None  # type: ignore[assignment]
    # Dossier versions, withdrawals and corrections, and who hears of them (ingest/versions.py);
    # by default with the catalog and audit log as listeners.
    dossiers: Dossiers = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.page_stages is None:
            self.page_stages = page_stages(self.settings)
        if self.dossiers is None:
            self.dossiers = services.dossiers(self.settings, self.store, self.catalog,
                                              listeners(self.catalog, self.audit))

    @classmethod
    def from_settings(cls, settings: Settings, with_catalog: bool = True) -> Pipeline:
        """A pipeline on the services the settings describe (ingest/services.py)."""
        found = services.build(settings, with_catalog)
        return cls(settings, found.store, found.catalog, found.audit, dossiers=found.dossiers)

    @property
    def grammar(self) -> DossierCodeGrammar:
        return DossierCodeGrammar(self.settings.barcodes.dossier_code_pattern)

    @property
    def limits(self) -> DecodeLimits:
        return decode_limits(self.settings.ocr)

    def prepare_pages(self) -> None:
        """Every page stage's `prepare()` (ingest/stages.py, "Preparing"); a failure is logged
        and left to the stage to meet again on its own work."""
        _each(self.page_stages, "prepare")

    def prepare_dossiers(self) -> None:
        """Every dossier stage's `prepare()`, as prepare_pages; and the version writers."""
        _each(self.dossiers.stages, "prepare")
        start_writers()

    def release(self) -> None:
        """Every page stage's `release()` (ingest/stages.py, "Preparing"), once a batch's pages
        are read; a failure is logged."""
        _each(self.page_stages, "release")

    # ---- records -------------------------------------------------------------------------

    def record(self, batch_id: str) -> BatchRecord:
        return BatchRecord.load(self.store.get(layout.batch_record(batch_id)))

    def _save_record(self, record: BatchRecord) -> None:
        self.store.put(layout.batch_record(record.batch_id), record.dump(), overwrite=True)

    def save_record(self, record: BatchRecord | dict[str, Any]) -> None:
        """A batch record changed after its batch finished (review): stored, then indexed."""
        if isinstance(record, dict):
            record = BatchRecord.load(record)
        self._save_record(record)
        if self.catalog:
            self.catalog.index_batch(record, self.page_facts(record.batch_id, record.pages))

    @contextmanager
    def _original(self, record: BatchRecord) -> Iterator[Path]:
        """A local file of the original. From a remote store it is fetched once per machine and
        kept in data_dir/cache until the batch is finalized here: page tasks of a 300-page scan
        must not download it 300 times."""
        assert record.original is not None
        if (path := self.store.file_path(record.original)) is not None:  # read in place
            yield path
            return
        cached = self._cache_path(record)
        if not (cached.exists() and cached.stat().st_size == record.size):
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_name(f".{cached.name}.{os.getpid()}")
            with self.store.local_path(record.original) as path:
                shutil.copyfile(path, tmp)
            os.replace(tmp, cached)
        yield cached

    def _cache_path(self, record: BatchRecord) -> Path:
        return self.settings.storage.data_dir / "cache" / Path(record.original or "").name.replace(
            "original", record.batch_id)

    # ---- steps ---------------------------------------------------------------------------

    def receive(self, path: Path, source: str = "upload", dossier: str | None = None,
                file_name: str | None = None, agency: str | None = None,
                device: str | None = None, incomplete: str | None = None,
                scope: list[str] | None = None, result: bool = False) -> str:
        """Stores the original scan before anything else; the same bytes (from the same agency)
        give the same batch. `device` names the scanner it came from; `incomplete` says why the
        file may lack pages (a jammed feeder, an interrupted upload): the batch then ends in
        review. `scope` lists the agencies whose dossiers the sender may write (by default
        `agency` alone; none or "*": any): a code of another agency makes no version. With
        `result`, the file is the result of dossier `dossier` (ingest/split.py split_result)."""
        digest = sha256_file(path)
        scoped = hashlib.sha256(f"{agency}:{digest}".encode()).hexdigest() if agency else digest
        if result:  # the same file as a batch and as a result are two batches
            scoped = hashlib.sha256(f"result:{dossier}:{scoped}".encode()).hexdigest()
        batch_id = "b" + scoped[:24]
        if self.store.exists(layout.batch_record(batch_id)):
            if incomplete:  # the same bytes, this time known to be partial: say so on the batch
                self._mark_incomplete(batch_id, incomplete)
            return batch_id
        suffix = path.suffix.lower() if re.fullmatch(r"\.[a-z0-9]{1,5}", path.suffix.lower()) \
            else ""
        key = layout.original(batch_id, suffix)
        info = self.store.put_file(key, path)
        self._save_record(BatchRecord(
            format=FORMAT_VERSION, batch_id=batch_id, file=file_name or path.name,
            sha256=info.sha256, size=info.size, original=key, source=source,
            dossier_hint=dossier, agency=agency, device=device, incomplete=incomplete,
            scope=sorted(set(scope)) if scope else ([agency] if agency else None),
            received_at=datetime.now(UTC).isoformat(timespec="seconds"),
            status="received", error=None, pages=0, dossiers=[],
            unmatched_pages=[], dropped_pages=[], failed_pages=[],
            **({"result_for": dossier} if result else {}),
        ))
        if self.catalog:  # so the watchdog knows of it, should nobody ever start it
            self.catalog.index_batch(self.record(batch_id), [])
        return batch_id

    def _mark_incomplete(self, batch_id: str, why: str) -> None:
        """An incomplete scan is never folded into an earlier batch of the same bytes without
        its mark: the batch says so, and goes to review if it had finished."""
        record = self.record(batch_id)
        if record.incomplete:
            return
        record.incomplete = why
        if record.status == "done":
            record.status = "needs_review"
            record.review = [*record.review, ReviewEntry(pages=[], code=None,
                                                         reason="incomplete", detail=why)]
        if record.status in FINAL:
            self.save_record(record)
        else:  # finish() adds the review reason when the batch ends
            self._save_record(record)

    def inspect(self, batch_id: str) -> BatchRecord:
        record = self.record(batch_id)
        if record.status != "received":
            return record
        try:
            with self._original(record) as path:
                # A transfer can end "complete" with a file cut short (a client killed mid-upload,
                # a scanner that stopped writing): its own structure tells.
                cut = cut_short(path)
                if not record.incomplete and cut:
                    record.incomplete = f"the file is cut short: {cut}"
                record.pages = count_pages(path, self.limits)
            record.status = "processing"
        except DocumentError as e:
            record.status, record.error = "failed", f"{e.code}: {e}"
            if record.incomplete:  # an interrupted scan, not a bad file: staff rescan it
                record.status = "needs_review"
                record.review = [ReviewEntry(pages=[], code=None, reason="incomplete",
                                             detail=record.incomplete)]
                record.finished_at = datetime.now(UTC).isoformat(timespec="seconds")
        except TRANSIENT:
            raise
        except Exception as e:  # a file our decoders choke on: still a recorded, clear failure
            log.exception("batch %s could not be opened", batch_id)
            record.status, record.error = "failed", f"unreadable: {type(e).__name__}: {e}"
        self._save_record(record)
        if self.catalog:
            self.catalog.index_batch(record, [])
        return record

    def wait(self, batch_id: str, error: BaseException) -> BatchRecord:
        """A dependency (registry, object store, database) stopped the batch: it waits, with
        the dependency named, until its next try (`resume`). Never `failed` for good. Recorded
        in the object store, or only in the catalog while the store is the one down."""
        try:
            record = self.record(batch_id)
            in_store = True
        except TRANSIENT:
            found = self.catalog.batch(batch_id) if self.catalog else None
            if found is None:
                raise
            record, in_store = found, False
        if record.status in FINAL:
            return record
        now = datetime.now(UTC)
        waiting = record.waiting_for or {}
        tries = int(waiting.get("tries", 0))
        due = waiting.get("next_try")
        if record.status == "waiting" and due and datetime.fromisoformat(due) > now:
            next_try = due  # another page of the same try failed: the next try stays put
        elif record.status == "waiting":  # a try that could not even begin
            tries += 1
            next_try = self._after_pause(now, tries)
        else:
            next_try = self._after_pause(now, tries)
        record.status, record.error = "waiting", describe(error)[:2000]
        record.waiting_for = {
            "dependency": dependency_of(error), "error": describe(error)[:2000],
            "since": waiting.get("since") or now.isoformat(timespec="seconds"),
            "tries": tries, "next_try": next_try}
        if in_store:
            self._save_record(record)
        if self.catalog:
            self.catalog.index_batch(record, [])
        return record

    def _after_pause(self, now: datetime, tries: int) -> str:
        """When to try again after `tries` tries: the pause doubles, up to the maximum."""
        pause = min(self.settings.recovery.backoff_s * 2 ** tries,
                    self.settings.recovery.backoff_max_s)
        return (now + timedelta(seconds=pause)).isoformat(timespec="seconds")

    def resume(self, batch_id: str, reset: bool = False) -> BatchRecord:
        """Starts another try of a waiting batch (the caller queues its missing work); it stays
        `waiting`, with the time of the try after this one, until its work gets done. With
        `reset` (a person asked: `sohoa batch retry`), also a failed batch, and the pauses start
        short again."""
        record = self.record(batch_id)
        status = record.status
        if status in ("done", "needs_review") or (status == "failed" and not reset):
            return record
        if status == "failed":
            record.retried_failure = record.retried_failure or record.error
            record.status = "processing" if record.pages else "received"
            record.error = None
        elif status == "waiting":
            waiting = dict(record.waiting_for or {})
            tries = 0 if reset else int(waiting.get("tries", 0)) + 1
            waiting.update(tries=tries, next_try=self._after_pause(datetime.now(UTC), tries))
            record.waiting_for = waiting
            if not record.pages:
                record.status = "received"  # it waited before its pages were counted
        else:  # it never waited in the store (the store was what was down): the catalog did
            if self.catalog:
                self.catalog.index_batch(record, [])
            return record
        self._save_record(record)
        if self.catalog:
            self.catalog.index_batch(record, [])
        return record

    def heaviest_first(self, batch_id: str, pages: list[int]) -> list[int]:
        """`pages` in the order to process them: heaviest first (ocr.decode.page_weights)."""
        record = self.record(batch_id)
        with self._original(record) as path:
            weights = page_weights(path) if record.pages > 1 else []
        if len(weights) != record.pages:
            return pages
        return sorted(pages, key=lambda i: -weights[i])

    def process_page(self, batch_id: str, index: int,
                     read_ahead: ReadAhead | None = None) -> PageFacts:
        """The page's facts: read it, or load what an earlier run stored."""
        facts = self.process_new_page(batch_id, index, read_ahead)
        return facts if facts is not None else PageFacts.load(
            self.store.get(layout.page_facts(batch_id, index)))

    def process_new_page(self, batch_id: str, index: int,
                         read_ahead: ReadAhead | None = None) -> PageFacts | None:
        """The page read and its facts stored, or None if they were stored already (by an
        earlier run, or by another worker): one look at the store, which a task on a remote
        store pays for every page. `read_ahead`, when given, returns the page read already
        from the same bytes by these stages (ingest/ahead.py), or None to read it here."""
        if self.store.exists(layout.page_facts(batch_id, index)):
            return None
        with logs.context(batch_id=batch_id, page=index):
            facts = self._process_page(batch_id, index, read_ahead)
            log.info("page %d: %s in %.2f s", index, metrics.page_outcome(facts),
                     sum((facts.seconds or {}).values()))
        metrics.page_processed(facts)
        return facts

    def _process_page(self, batch_id: str, index: int,
                      read_ahead: ReadAhead | None = None) -> PageFacts:
        facts_key = layout.page_facts(batch_id, index)
        record = self.record(batch_id)
        facts = PageFacts(index=index, status="ok")
        try:
            work = read_ahead() if read_ahead else None
            if work is not None:
                work.batch_id, facts = batch_id, work.facts
            else:
                with self._original(record) as path:
                    work = read_page(path, facts, self.page_stages, self.limits, batch_id)
            timings = facts.seconds = facts.seconds or {}
            if not work.done:
                t0 = time.perf_counter()
                scan = work.scan
                self.store.put(layout.page_pdf(batch_id, index),
                               pdfmod.page_pdf(scan.image, scan.dpi, work.text_pdf,
                                               self.settings.ocr.jpeg_quality, jpeg=scan.jpeg,
                                               rotation=facts.rotation or 0,
                                               skew=facts.skew or 0.0),
                               overwrite=True)
                timings["page_pdf"] = round(time.perf_counter() - t0, 3)
        except DocumentError as e:
            facts.status, facts.error = "failed", f"{e.code}: {e}"
        except ToolError as e:
            facts.status, facts.error = "failed", f"tool: {e}"
        except TRANSIENT:
            raise  # storage or a server is down: the caller retries or resumes
        except Exception as e:  # a page our image code could not handle: recorded, batch goes on
            log.exception("page %d of batch %s failed", index, batch_id)
            facts.status, facts.error = "failed", f"unexpected: {type(e).__name__}: {e}"
        self.store.put(facts_key, facts.dump(), overwrite=True)
        return facts

    def pages_done(self, batch_id: str) -> set[int]:
        """The pages of the batch that have their result: one listing of the store (a request per
        thousand keys on S3), not a request per page, so that a big batch's progress is cheap."""
        found = (layout.page_of_facts(k) for k in self.store.list(layout.pages_prefix(batch_id)))
        return {i for i in found if i is not None}

    def page_facts(self, batch_id: str, count: int) -> list[PageFacts]:
        return self.page_facts_for(batch_id, list(range(count)))

    def split_batch(self, batch_id: str, pages: list[PageFacts] | None = None) -> SplitPlan:
        """`pages`: the batch's page facts when the caller has them loaded already."""
        record = self.record(batch_id)
        pages = pages if pages is not None else self.page_facts(batch_id, record.pages)
        if code := record.result_for:
            found = self.grammar.match(code)
            return split_result(pages, code, found.agency if found else code.split("-")[0])
        return split(pages, self.grammar, record.dossier_hint,
                     tuple(self.settings.barcodes.result_separators))

    def check_registry(self, plan: SplitPlan) -> SplitPlan:
        """With a registry configured, dossiers whose code it does not know go to review."""
        if not self.settings.registry.url:
            return plan
        registry = Registry(self.settings.registry.url, self.settings.registry.token,
                            self.settings.registry.allow_private)
        known = []
        for part in plan.dossiers:
            part.registry = registry.lookup(part.code)
            if part.source != "user" and part.registry is None:
                plan.unmatched = sorted(plan.unmatched + part.pages)
                plan.unmatched_groups.append(part.pages)
                plan.review.append({"pages": part.pages, "code": part.code,
                                    "reason": "unknown_to_registry"})
            else:
                known.append(part)
        plan.dossiers = known
        return plan

    def hold_other_agency(self, batch_id: str, plan: SplitPlan) -> SplitPlan:
        """Writes are scoped like reads: a code (read on a page or given) of an agency outside
        the sender's scope neither makes nor versions that dossier. Its pages wait in review as
        `other_agency`, for that agency's staff to decide on."""
        scope = self.record(batch_id).scope
        if not scope or ALL_AGENCIES in scope:
            return plan
        kept = []
        for part in plan.dossiers:
            if part.agency in scope:
                kept.append(part)
                continue
            plan.unmatched = sorted(plan.unmatched + part.pages)
            plan.unmatched_groups.append(part.pages)
            plan.review.append({"pages": part.pages, "code": part.code,
                                "code_source": part.source, "reason": "other_agency",
                                "agency": part.agency})
        plan.dossiers = kept
        return plan

    def hold_partial(self, batch_id: str, plan: SplitPlan) -> SplitPlan:
        """A version that may lack pages never becomes a dossier's current version by itself: it
        waits in review until a person keeps the current version or replaces it. Held are the
        dossier a partial scan ends on (a jam or a cut stops the scan inside its last dossier;
        those before it were closed by the next receipt) and any rescan with fewer pages than
        the dossier's current version."""
        record = self.record(batch_id)
        partial = record.incomplete
        last = max(plan.dossiers, key=lambda d: d.pages[-1]) if partial and plan.dossiers else None
        kept = []
        for part in plan.dossiers:
            versions = self.dossiers.versions(part.code)
            current = versions[-1] if versions and not versions[-1].withdrawn else None
            if any(m.batch_id == batch_id for m in versions):
                kept.append(part)  # this batch made its version on an earlier run of this step
                continue
            if part is last:
                entry = {"reason": "incomplete_rescan" if current else "incomplete_scan",
                         "detail": partial}
            elif current and len(part.pages) < len(current.pages):
                entry = {"reason": "incomplete_rescan",
                         "detail": f"{len(part.pages)} of {len(current.pages)} pages"}
            else:
                kept.append(part)
                continue
            if current:
                entry.update(current_version=current.version, current_pages=len(current.pages))
            plan.unmatched = sorted(plan.unmatched + part.pages)
            plan.unmatched_groups.append(part.pages)
            plan.review.append({"pages": part.pages, "code": part.code,
                                "code_source": part.source, **entry})
        plan.dossiers = kept
        return plan

    def assemble(self, batch_id: str, part: DossierSplit, record: BatchRecord | None = None,
                 pages: list[PageFacts] | None = None
                 ) -> tuple[Manifest, DossierChanged | None]:
        """The dossier stored as a new version, unless this batch already made one; and the
        event still to be told (`Dossiers.emit`), if any."""
        for manifest in self.dossiers.versions(part.code):
            if manifest.batch_id == batch_id:
                if self.audit and not self._audited(manifest):  # an earlier run cut short after
                    return manifest, self.dossiers.stored_event(manifest)  # storing it
                return manifest, None
        refs = [PageRef(batch_id, i) for i in part.pages]
        event = self.dossiers.write_version(part.code, part.agency, part.source, refs,
                                            claim=batch_id, registry=part.registry,
                                            record=record, known={
                                                (batch_id, f.index): f for f in pages or []})
        assert isinstance(event.manifest, Manifest)
        return event.manifest, event

    def assemble_all(self, batch_id: str, parts: list[DossierSplit],
                     pages: list[PageFacts] | None = None) -> list[Manifest]:
        """The batch's dossiers, ASSEMBLERS written at once: most of a dossier's time goes in
        waiting on object storage (its claim, its pages read, its objects written, each a round
        trip to S3 or a disk sync). Their events are then told together, in the plan's order
        (`Dossiers.emit_all`: the audit log takes them in one transaction); when one dossier
        cannot be written, those before it are told before the error is raised."""
        record = self.record(batch_id)

        def one(part: DossierSplit) -> tuple[Manifest, DossierChanged | None]:
            with logs.context(dossier=part.code):
                return self.assemble(batch_id, part, record, pages)

        manifests: list[Manifest] = []
        events: list[DossierChanged] = []
        try:
            with ThreadPoolExecutor(max(1, min(ASSEMBLERS, len(parts)))) as pool:
                built = pool.map(lambda part: contextvars.copy_context().run(one, part), parts)
                for part, (manifest, event) in zip(parts, built, strict=True):
                    log.info("dossier %s: version %d, %d pages", part.code, manifest.version,
                             len(part.pages), extra={"dossier": part.code})
                    manifests.append(manifest)
                    events += [event] if event is not None else []
        except Exception:
            with contextlib.suppress(Exception):  # the dossier's own error is the one to see
                self.dossiers.emit_all(events)
            raise
        self.dossiers.emit_all(events)
        return manifests

    def store_results(self, batch_id: str, plan: SplitPlan) -> list[ResultManifest]:
        """Stores each result of the plan as its dossier's next result (once per batch and
        code). A result for a code without a live dossier, or of an agency outside the sender's
        scope, is refused: its pages wait in review (`no_dossier`), never lost."""
        scope = self.record(batch_id).scope
        stored = []
        for part in plan.results:
            if not scope or ALL_AGENCIES in scope or part.agency in scope:
                try:
                    stored.append(self.dossiers.store_result(
                        part.code, [PageRef(batch_id, i) for i in part.pages], claim=batch_id))
                    continue
                except NoDossier:
                    pass
            plan.unmatched = sorted(plan.unmatched + part.pages)
            plan.unmatched_groups.append(part.pages)
            plan.review.append({"pages": part.pages, "code": part.code, "reason": "no_dossier",
                                "detail": f"a result for {part.code}, which has no dossier"})
        return stored

    def _audited(self, manifest: Manifest) -> bool:
        """Whether the audit log holds the entry (and so the manifest's anchor) of a version."""
        assert self.audit is not None
        return any(e["detail"].get("version") == manifest.version for e in
                   self.audit.for_target(manifest.dossier_id, ("dossier.version.create",)))

    # ---- dossier versions: `pipeline.dossiers` (ingest/versions.py) ---------------------------
    # Kept until the review code (ingest/review.py, api/web/review_pages.py) names Dossiers.

    page_refs = staticmethod(Dossiers.page_refs)

    def page_facts_for(self, batch_id: str, pages: list[int]) -> list[PageFacts]:
        return [PageFacts.load(data) for data in
                get_all(self.store, [layout.page_facts(batch_id, i) for i in pages])]

    def finish(self, batch_id: str, plan: SplitPlan, manifests: list[Manifest],
               results: list[ResultManifest] | None = None,
               pages: list[PageFacts] | None = None) -> BatchRecord:
        """`pages`: the batch's page facts when the caller has them loaded already."""
        record = self.record(batch_id)
        if pages is None or len(pages) != record.pages:
            pages = self.page_facts(batch_id, record.pages)
        if results or record.result_for:  # a batch without results stores no key
            record.results = [
                {"dossier_id": m.dossier_id, "pages": m.pages, "version": m.version,
                 "pdf": m.pdf.key, "sha256": m.pdf.sha256} for m in results or []]
        stored = get_all(self.store, [m.objects["fields.json"].key for m in manifests])
        fields = {m.dossier_id: json.loads(data) for m, data in zip(manifests, stored, strict=True)}
        record.dossiers = [
            DossierSummary(dossier_id=m.dossier_id, pages=m.pages, version=m.version,
                           code_source=m.code_source, pdf=m.objects["dossier.pdf"].key,
                           fields=fields[m.dossier_id])
            for m in manifests]
        record.unmatched_pages = plan.unmatched
        record.unmatched_groups = plan.unmatched_groups
        failed = [pages[i] for i in plan.failed]
        record.review = review_entries(plan, failed, record.incomplete)
        record.dropped_pages = [DroppedPage(page=p, reason=r) for p, r in plan.dropped]
        record.failed_pages = [FailedPage(page=f.index, error=f.error) for f in failed]
        record.status = "needs_review" if plan.unmatched or record.incomplete else "done"
        if record.unset("waiting_for") is not None:
            record.error = None  # what it waited for answered in the end
        if plan.failed and not record.error:
            count = len(plan.failed)
            record.error = f"{count} page{'s' if count > 1 else ''} could not be read"
        if (code := record.result_for) and not results:
            # A result refused (no such dossier, nothing readable): a failed upload, its
            # original kept; `sohoa batch retry` stores it once its dossier exists.
            record.status = "failed"
            record.error = f"no dossier {code}: a result needs its dossier" \
                if any(r.reason == "no_dossier" for r in record.review) \
                else record.error or "no page of the result could be read"
        record.finished_at = datetime.now(UTC).isoformat(timespec="seconds")
        self._save_record(record)
        if self.catalog:
            self.catalog.index_batch(record, pages)
        metrics.batch_finished(record.status)
        return record

    def finalize(self, batch_id: str) -> BatchRecord:
        """split_batch, check codes with the registry, assemble each dossier, finish: once every
        page has its facts."""
        with logs.context(batch_id=batch_id):
            pages = self.page_facts(batch_id, self.record(batch_id).pages)  # read once
            plan = self.check_registry(self.split_batch(batch_id, pages))
            plan = self.hold_partial(batch_id, self.hold_other_agency(batch_id, plan))
            manifests = self.assemble_all(batch_id, plan.dossiers, pages)
            results = self.store_results(batch_id, plan)
            record = self.finish(batch_id, plan, manifests, results, pages)
            log.info("batch %s: %s, %d dossiers", batch_id, record.status, len(manifests))
        self._cache_path(record).unlink(missing_ok=True)
        return record


def _each(stages: list[Any], hook: str) -> None:
    """`stage.<hook>()` of each stage that has it; one that fails is logged, the others still run."""
    for stage in stages:
        call = getattr(stage, hook, None)
        if call is None:
            continue
        try:
            call()
        except Exception:
            log.exception("%s of stage %s failed", hook, getattr(stage, "name", stage))


def review_entries(plan: SplitPlan, failed: list[PageFacts],
                   incomplete: str | None) -> list[ReviewEntry]:
    """Why pages wait for a person, beside the pages concerned, as reason codes: held versions
    and unknown codes (from the plan), pages with no code, pages that could not be read, and a
    scan that may lack pages (no page: the whole batch)."""
    entries = [ReviewEntry.model_validate(entry) for entry in plan.review]
    taken = {p for entry in entries for p in entry.pages}
    for f in failed:
        entries.append(ReviewEntry(pages=[f.index], code=None, reason="unreadable",
                                   detail=f.error))
        taken.add(f.index)
    for group in plan.unmatched_groups:
        if rest := [p for p in group if p not in taken]:
            entries.append(ReviewEntry(pages=rest, code=None, reason="no_code"))
    entries.sort(key=lambda e: e.pages[0])
    if incomplete:
        entries.append(ReviewEntry(pages=[], code=None, reason="incomplete", detail=incomplete))
    return entries


ProgressFn = Callable[[int, int], None]

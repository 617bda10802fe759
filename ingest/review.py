"""What staff do in the review queue: each change is a new dossier version and an audit entry.

    assign(batch, pages, code)        pages the machine could not match join dossier `code`
    rotate(code, position, degrees)   turn one page of a dossier
    move(code, position, to)          put a page elsewhere in the dossier
    drop(code, position)              take a page out (it stays in its batch and original)
    split(code, position, new_code)   the pages from `position` on become dossier `new_code`
    merge(code, other)                `other`'s pages are appended to `code`
    confirm(code)                     a person checked a code the machine read by OCR
    recode(code, new_code)            the code was read wrong: the pages are dossier `new_code`
    discard(batch, pages)             unmatched pages that belong to no dossier are set aside
    replace(batch, pages)             a held rescan (it may lack pages), or pages with a code of
                                      another agency, become the dossier's current version
    keep_current(batch, pages)        a held rescan is set aside; the current version stays
    accept_incomplete(batch)          a person checked a scan that may lack pages

Only the acts that assert a code (assign, confirm, recode, and the code typed for a split) mark
it as given by a person (code source "user"); rotate, move, drop and merge keep the code source
of the version they change, so a code read by OCR still waits for its confirmation.

Positions are 0-based places in the dossier's latest version. Every operation takes an
`action_id` (the web form sends one): doing the same action twice makes one version, not two,
and applies its change once (`replayed` finds the version the first run made).
Nothing is ever deleted: older versions stay, and so do the batch and its original scan.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from ingest.pipeline import PageRef, Pipeline
from storage import layout
from storage.catalog import HELD
from storage.records import (
    BatchRecord,
    DossierSummary,
    DroppedPage,
    Manifest,
    Resolution,
    ReviewEntry,
)

# Review entries a person settles by `replace` (store the pages as the version the machine would
# have made) or `keep_current`: held versions, and codes of another agency than the sender's.
DECIDED = HELD | {"other_agency"}


class ReviewError(ValueError):
    """A change that cannot be made; the message is for the staff."""


class Review:
    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    # ---- helpers --------------------------------------------------------------------------

    def _latest(self, code: str) -> Manifest:
        versions = self.pipeline.dossiers.versions(code)
        if not versions:
            raise ReviewError(f"no dossier {code}")
        if withdrawn := versions[-1].withdrawn:
            raise ReviewError(f"{code} was renamed to {withdrawn.to}")
        return versions[-1]

    @staticmethod
    def _live(versions: list[Manifest]) -> list[PageRef]:
        """The pages of a dossier's latest version; none if it has none yet or its code was
        withdrawn (pages added to such a code make it a dossier again)."""
        if not versions or versions[-1].withdrawn:
            return []
        return versions[-1].refs()

    def _agency(self, code: str) -> str:
        found = self.pipeline.grammar.match(code)
        if found is None:
            raise ReviewError(f"{code!r} is not a dossier code")
        return found.agency

    def _save(self, code: str, agency: str, refs: list[PageRef], actor: str, change: dict[str, Any],
              action_id: str | None, code_source: str = "user") -> Manifest:
        """A new version; `code_source` stays "user" only for acts that assert the code."""
        if not refs:
            raise ReviewError("a dossier needs at least one page")
        return self.pipeline.dossiers.store_version(code, agency, code_source, refs,
                                           self._claim(code, action_id), actor=actor,
                                           extra={"change": change})

    @staticmethod
    def _claim(code: str, action_id: str | None) -> str:
        return f"review:{action_id or uuid.uuid4().hex}:{code}"

    def replayed(self, code: str, action_id: str | None) -> Manifest | None:
        """The version an earlier run of this action made (a form sent twice, a retried
        request): returned as it is, so the change is not applied a second time."""
        if not action_id:
            return None
        claim = f"review:{action_id}:{code}".encode()
        for manifest in reversed(self.pipeline.dossiers.versions(code)):
            key = layout.version_prefix(code, manifest.version) + ".claim"
            if self.pipeline.store.exists(key) and self.pipeline.store.get(key) == claim:
                return manifest
        return None

    def _position(self, refs: list[PageRef], position: int) -> None:
        if not 0 <= position < len(refs):
            raise ReviewError(f"the dossier has no page {position + 1}")

    # ---- operations -----------------------------------------------------------------------

    def assign(self, batch_id: str, pages: list[int], code: str, actor: str,
               action_id: str | None = None) -> Manifest:
        """Unmatched pages of a batch join dossier `code` (appended to its latest version, or a
        new dossier); the batch leaves review when no page is left unmatched."""
        code = code.strip().upper()
        agency = self._agency(code)
        if done := self.replayed(code, action_id):
            return done
        record = self.pipeline.record(batch_id)
        waiting = set(record.unmatched_pages)
        if not pages or not set(pages) <= waiting:
            raise ReviewError("only pages waiting for review can be assigned")
        if record.agency and record.agency != agency:
            raise ReviewError(f"{code} belongs to another agency than this batch")
        for index in pages:
            if not self.pipeline.store.exists(layout.page_pdf(batch_id, index)):
                raise ReviewError(f"page {index + 1} could not be read and cannot be assigned")
        refs = self._live(self.pipeline.dossiers.versions(code))
        refs += [PageRef(batch_id, i) for i in sorted(pages)]
        manifest = self._save(code, agency, refs, actor,
                              {"action": "assign", "batch_id": batch_id, "pages": sorted(pages)},
                              action_id)
        self._resolve(record, pages, code, manifest, actor)
        return manifest

    def _resolve(self, record: BatchRecord, pages: list[int], code: str,
                 manifest: Manifest, actor: str) -> None:
        self._take(record, pages, actor)
        record.resolved = [*record.resolved, Resolution(
            pages=sorted(pages), dossier_id=code, version=manifest.version, by=actor)]
        entry = next((d for d in record.dossiers if d.dossier_id == code), None)
        summary = DossierSummary(
            dossier_id=code, pages=sorted(set(pages) | set(entry.pages if entry else [])),
            version=manifest.version, code_source="user",
            pdf=manifest.objects["dossier.pdf"].key, fields=entry.fields if entry else {})
        record.dossiers = [d for d in record.dossiers if d.dossier_id != code] + [summary]
        self._settle(record)
        self.pipeline.save_record(record)

    @staticmethod
    def _take(record: BatchRecord, pages: list[int], actor: str) -> None:
        """These pages no longer wait for review. A person who decided on the held part of a
        scan that may lack pages has checked that scan."""
        done = set(pages)
        record.unmatched_pages = [p for p in record.unmatched_pages if p not in done]
        record.unmatched_groups = [g for g in ([p for p in group if p not in done]
                                               for group in record.unmatched_groups) if g]
        kept = []
        for entry in record.review:
            rest = [p for p in entry.pages if p not in done]
            if rest or not entry.pages:
                kept.append(ReviewEntry.model_validate({**entry.as_dict(), "pages": rest}))
            elif entry.reason in HELD and record.incomplete and not record.incomplete_checked:
                record.incomplete_checked = {
                    "by": actor, "at": datetime.now(UTC).isoformat(timespec="seconds")}
        record.review = kept

    @staticmethod
    def _settle(record: BatchRecord) -> None:
        """The batch leaves review when no page waits and an incomplete scan was checked."""
        if not record.unmatched_pages and (not record.incomplete or record.incomplete_checked):
            record.status = "done"

    def discard(self, batch_id: str, pages: list[int], actor: str,
                action_id: str | None = None, reason: str = "set_aside") -> BatchRecord:
        """Unmatched pages that belong to no dossier (a stray sheet, a page that cannot be read
        and was scanned again) are set aside: they stay in the batch and its original, listed
        with its dropped pages."""
        record = self.pipeline.record(batch_id)
        if action_id and any(d.action_id == action_id for d in record.dropped_pages):
            return record
        if not pages or not set(pages) <= set(record.unmatched_pages):
            raise ReviewError("only pages waiting for review can be set aside")
        record.dropped_pages = record.dropped_pages + [
            DroppedPage(page=p, reason=reason, by=actor, action_id=action_id)
            for p in sorted(pages)]
        self._take(record, pages, actor)
        self._settle(record)
        self.pipeline.save_record(record)
        self._audit(actor, "batch.pages.discard", record, pages=sorted(pages), reason=reason)
        return record

    def held(self, record: BatchRecord, pages: list[int]) -> ReviewEntry:
        """The review entry of a held rescan made of exactly these pages."""
        entry = next((r for r in record.review if r.reason in DECIDED
                      and sorted(r.pages) == sorted(pages)), None)
        if entry is None:
            raise ReviewError("these pages are not a rescan waiting for a decision")
        return entry

    def replace(self, batch_id: str, pages: list[int], actor: str,
                action_id: str | None = None) -> Manifest:
        """A held rescan (it may lack pages) becomes its dossier's current version, in place of
        the version before (which stays, as every version does): a person decided."""
        record = self.pipeline.record(batch_id)
        try:
            entry = self.held(record, pages)
        except ReviewError:  # the same form again? its version was made the first time
            if done := self.replayed_in(record, action_id):
                return done
            raise
        code = entry.code
        assert code is not None  # a held version is of a code
        manifest = self._save(code, self._agency(code), [PageRef(batch_id, i) for i in pages],
                              actor, {"action": "replace", "batch_id": batch_id,
                                      "pages": sorted(pages),
                                      "replaced_version": entry.current_version},
                              action_id, code_source=entry.code_source or "user")
        self._resolve(record, pages, code, manifest, actor)
        return manifest

    def replayed_in(self, record: BatchRecord, action_id: str | None) -> Manifest | None:
        """The version an earlier run of this action made, found by the batch's resolutions."""
        for done in record.resolved if action_id else []:
            if found := self.replayed(done.dossier_id, action_id):
                return found
        return None

    def keep_current(self, batch_id: str, pages: list[int], actor: str,
                     action_id: str | None = None) -> BatchRecord:
        """A held rescan is set aside (kept in its batch and original, as `kept_current`): the
        dossier's current version stays what it was."""
        record = self.pipeline.record(batch_id)
        if action_id and any(d.action_id == action_id for d in record.dropped_pages):
            return record
        self.held(record, pages)
        return self.discard(batch_id, pages, actor, action_id, reason="kept_current")

    def accept_incomplete(self, batch_id: str, actor: str) -> BatchRecord:
        """A person checked a scan that may lack pages (what was missing was scanned again, or
        nothing was): it no longer keeps the batch in review."""
        record = self.pipeline.record(batch_id)
        if not record.incomplete:
            raise ReviewError("this scan is not marked incomplete")
        if not record.incomplete_checked:
            record.incomplete_checked = {"by": actor,
                                         "at": datetime.now(UTC).isoformat(timespec="seconds")}
            self._settle(record)
            self.pipeline.save_record(record)
            self._audit(actor, "batch.incomplete.checked", record, incomplete=record.incomplete)
        return record

    def _audit(self, actor: str, action: str, record: BatchRecord, **detail: Any) -> None:
        if self.pipeline.audit:
            self.pipeline.audit.append(actor, action, record.batch_id, record.agency or "",
                                       detail=detail)

    def rotate(self, code: str, position: int, degrees: int, actor: str,
               action_id: str | None = None) -> Manifest:
        if degrees % 90:
            raise ReviewError("pages turn by quarter turns")
        if done := self.replayed(code, action_id):
            return done
        latest = self._latest(code)
        refs = latest.refs()
        self._position(refs, position)
        page = refs[position]
        refs[position] = PageRef(page.batch_id, page.index, (page.rotate + degrees) % 360)
        return self._save(code, latest.agency, refs, actor,
                          {"action": "rotate", "position": position, "degrees": degrees}, action_id,
                          latest.code_source)

    def move(self, code: str, position: int, to: int, actor: str,
             action_id: str | None = None) -> Manifest:
        if done := self.replayed(code, action_id):
            return done
        latest = self._latest(code)
        refs = latest.refs()
        self._position(refs, position)
        self._position(refs, to)
        refs.insert(to, refs.pop(position))
        return self._save(code, latest.agency, refs, actor,
                          {"action": "move", "position": position, "to": to}, action_id,
                          latest.code_source)

    def drop(self, code: str, position: int, actor: str,
             action_id: str | None = None) -> Manifest:
        if done := self.replayed(code, action_id):
            return done
        latest = self._latest(code)
        refs = latest.refs()
        self._position(refs, position)
        dropped = refs.pop(position)
        return self._save(code, latest.agency, refs, actor,
                          {"action": "drop", "position": position, "page": dropped.to_dict()},
                          action_id, latest.code_source)

    def split(self, code: str, position: int, new_code: str, actor: str,
              action_id: str | None = None) -> tuple[Manifest, Manifest]:
        """Pages from `position` on become dossier `new_code` (appended if it exists)."""
        new_code = new_code.strip().upper()
        kept, other = self.replayed(code, action_id), self.replayed(new_code, action_id)
        if kept and other:
            return kept, other
        latest = self._latest(code)
        refs = latest.refs()
        if not 1 <= position < len(refs):
            raise ReviewError("split between two pages of the dossier")
        if new_code == code:
            raise ReviewError("split into another dossier code")
        agency = self._agency(new_code)
        if agency != latest.agency:
            raise ReviewError(f"{new_code} belongs to another agency")
        action_id = action_id or uuid.uuid4().hex
        moved = self._live(self.pipeline.dossiers.versions(new_code)) + refs[position:]
        change = {"action": "split", "from": code, "to": new_code, "position": position}
        other = self._save(new_code, agency, moved, actor, change, action_id)
        kept = self._save(code, latest.agency, refs[:position], actor, change, action_id,
                          latest.code_source)
        return kept, other

    def merge(self, code: str, other: str, actor: str,
              action_id: str | None = None) -> Manifest:
        """`other`'s pages are appended to `code`, and `other` is withdrawn in its favour (a version
        without pages that names `code`, as a recode leaves it): pages live in one dossier only,
        and systems that ask for `other` are told where its pages went (410 with `renamed_to`).
        Nothing is deleted: `other`'s earlier versions stay. Returns `code`'s new version."""
        other = other.strip().upper()
        merged, withdrawn = self.replayed(code, action_id), self.replayed(other, action_id)
        if merged and withdrawn:
            return merged
        action_id = action_id or uuid.uuid4().hex
        if merged is None:
            latest, theirs = self._latest(code), self._latest(other)
            if theirs.dossier_id == code:
                raise ReviewError("merge two different dossiers")
            if theirs.agency != latest.agency:
                raise ReviewError("dossiers of different agencies cannot be merged")
            refs = latest.refs() + Pipeline.page_refs(theirs)
            merged = self._save(code, latest.agency, refs, actor,
                                {"action": "merge", "from": theirs.dossier_id,
                                 "from_version": theirs.version}, action_id,
                                latest.code_source)
        if withdrawn is None:  # a run cut short after the pages moved goes on here
            self.pipeline.dossiers.withdraw(other, code, self._claim(other, action_id), actor,
                                   extra={"change": merged.change})
        self._rename_in_batches(other, code, merged, actor)
        return merged

    def confirm(self, code: str, actor: str, action_id: str | None = None) -> Manifest:
        """A person checked a code the machine read by OCR (or with low confidence) against the
        page: the same pages make a new version whose code source is "user"."""
        if done := self.replayed(code, action_id):
            return done
        latest = self._latest(code)
        if latest.code_source in ("barcode", "user"):
            raise ReviewError("this code was not read by OCR")
        return self._save(code, latest.agency, latest.refs(), actor,
                          {"action": "confirm", "code_source": latest.code_source}, action_id)

    def recode(self, code: str, new_code: str, actor: str,
               action_id: str | None = None) -> tuple[Manifest, Manifest]:
        """The code was read wrong (OCR, a damaged barcode): the right code is `new_code`. The
        dossier's pages become dossier `new_code`, its code given by a person: its version 1,
        or, if it exists, its next version with these pages appended (like merge). Then `code`
        gets a version that withdraws it (manifest `withdrawn: {to, by, at}`, no pages), so
        object storage alone says where its pages went, and the batches that held it name the
        new code. Pages may only become a code of their batch's agency. Returns (the version
        withdrawing `code`, the version of `new_code`)."""
        new_code = new_code.strip().upper()
        agency = self._agency(new_code)
        if new_code == code:
            raise ReviewError("recode to another dossier code")
        withdrawn, moved = self.replayed(code, action_id), self.replayed(new_code, action_id)
        if withdrawn and moved:
            return withdrawn, moved
        action_id = action_id or uuid.uuid4().hex
        if moved is None:
            latest = self._latest(code)
            refs = latest.refs()
            for batch_id in dict.fromkeys(r.batch_id for r in refs):
                batch_agency = self.pipeline.record(batch_id).agency
                if batch_agency and batch_agency != agency:
                    raise ReviewError(f"{new_code} belongs to another agency than the scans of "
                                      f"this dossier")
            change = {"action": "recode", "from": code, "to": new_code,
                      "from_version": latest.version}
            moved = self._save(new_code, agency, self._live(self.pipeline.dossiers.versions(new_code))
                               + refs, actor, change, action_id)
        if withdrawn is None:  # a run cut short after the pages moved goes on here
            withdrawn = self.pipeline.dossiers.withdraw(code, new_code, self._claim(code, action_id), actor,
                                               extra={"change": moved.change})
        self._rename_in_batches(code, new_code, moved, actor)
        return withdrawn, moved

    def _rename_in_batches(self, code: str, new_code: str, moved: Manifest,
                           actor: str) -> None:
        """The batch records that list `code` among their dossiers list `new_code` instead (as
        the batch API and the catalog's pages show them), noting the change."""
        refs = moved.refs()
        fields = None
        for batch_id in dict.fromkeys(r.batch_id for r in refs):
            record = self.pipeline.record(batch_id)
            old = next((d for d in record.dossiers if d.dossier_id == code), None)
            if old is None:
                continue  # not one of this batch's dossiers, or renamed already
            if fields is None:
                fields = json.loads(self.pipeline.store.get(moved.objects["fields.json"].key))
            summary = DossierSummary(
                dossier_id=new_code,
                pages=sorted({r.index for r in refs if r.batch_id == batch_id}),
                version=moved.version, code_source="user",
                pdf=moved.objects["dossier.pdf"].key, fields=fields)
            record.dossiers = [d for d in record.dossiers
                               if d.dossier_id not in (code, new_code)] + [summary]
            record.renamed = [*record.renamed, {"from": code, "to": new_code,
                                                "version": moved.version, "by": actor}]
            self.pipeline.save_record(record)

"""The review queue's view models: what the queue and the review screens show (api/web/review_pages.py
holds the routes). Why a batch or a code waits, which pages of a batch a user sees, a batch's
unmatched pages in groups, the dossiers a batch made and what a version changed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from api.keys import Principal
from api.web.why import IncompleteWhy
from ingest.pipeline import PageRef, Pipeline
from ingest.review import DECIDED, ReviewError
from storage import layout, queries
from storage.records import BatchRecord, Manifest, ReviewEntry

LOW_CONFIDENCE = 0.9  # a dossier code read with less than this waits for a person
QUEUE_LIMIT = 200  # rows of each kind the queue shows


@dataclass
class Reason:
    """Why something waits (or what a version changed): an i18n key and its values."""
    key: str
    values: dict[str, Any] = field(default_factory=dict)


@dataclass
class QueueItem:
    kind: str  # batch | code
    at: datetime
    href: str
    name: str  # the batch's file name, or the dossier code
    reasons: list[Reason]


def _aware(at: datetime | str) -> datetime:
    found = datetime.fromisoformat(at) if isinstance(at, str) else at
    return found if found.tzinfo else found.replace(tzinfo=UTC)


def percent(confidence: float) -> int:
    return round(confidence * 100)


def batch_reasons(record: BatchRecord) -> list[Reason]:
    """Why a batch waits, from the reason codes beside its pages (ingest/pipeline.py
    review_entries): pages with no code, codes the registry does not know, rescans that may lack
    pages, pages that could not be read, a scan that may lack pages."""
    waiting = set(record.unmatched_pages)
    reasons = []
    unreadable = 0
    for r in record.review:
        pages = [p for p in r.pages if p in waiting]
        reason = r.reason
        if reason == "unreadable":
            unreadable += len(pages)
        elif reason == "no_code" and pages:
            reasons.append(Reason("review.reason.unmatched", {"count": len(pages)}))
        elif reason == "unknown_to_registry" and pages:
            reasons.append(Reason("review.reason.registry", {"code": r.code,
                                                             "count": len(pages)}))
        elif reason == "incomplete_rescan" and pages:
            reasons.append(Reason("review.reason.rescan", {
                "code": r.code, "count": len(pages), "version": r.current_version,
                "current": r.current_pages}))
        elif reason == "other_agency" and pages:
            reasons.append(Reason("review.reason.other_agency", {
                "code": r.code, "agency": r.agency, "count": len(pages)}))
        elif reason == "incomplete_scan" and pages:
            reasons.append(Reason("review.reason.partial", {"code": r.code,
                                                            "count": len(pages)}))
    if unreadable:
        reasons.append(Reason("review.reason.unreadable", {"count": unreadable}))
    if record.incomplete and not record.incomplete_checked:
        reasons.append(Reason("review.reason.incomplete", {"why": IncompleteWhy(record.incomplete)}))
    return reasons


def page_agency(record: BatchRecord, index: int) -> str:
    """Whose page this is, for who may see and decide on it: the agency of a code of another
    agency read on it (review reason `other_agency`), else the batch's agency."""
    for entry in record.review:
        if entry.reason == "other_agency" and index in entry.pages and entry.agency:
            return entry.agency
    return record.agency or ""


def sees_page(who: Principal, record: BatchRecord, index: int) -> bool:
    return who.sees(page_agency(record, index))


def other_agencies(record: BatchRecord) -> set[str]:
    return {r.agency for r in record.review
            if r.reason == "other_agency" and r.pages and r.agency}


def code_reason(source: str, confidence: float) -> Reason:
    if source != "ocr":
        return Reason("review.reason.low", {"confidence": percent(confidence)})
    if confidence >= 1.0:  # the code was found, not read from its label line: no score
        return Reason("review.reason.ocr_found")
    return Reason("review.reason.ocr", {"confidence": percent(confidence)})


def waiting_batches(pipeline: Pipeline, who: Principal) -> list[BatchRecord]:
    """Batch records still in review, newest first: of the user's agencies, and of other
    agencies when they hold pages with a code of the user's agencies (`other_agency`)."""
    assert pipeline.catalog is not None
    agencies = who.scope()
    found = [BatchRecord.load(r) for r in queries.batches_in_review(
        pipeline.catalog, QUEUE_LIMIT if agencies is None else QUEUE_LIMIT * 10)]
    if agencies is None:
        return found
    return [r for r in found
            if who.sees(r.agency or "") or other_agencies(r) & set(agencies)][:QUEUE_LIMIT]


def codes_to_check(pipeline: Pipeline, who: Principal) -> list[QueueItem]:
    """Dossiers whose latest version has a code read by OCR or with low confidence."""
    assert pipeline.catalog is not None
    rows = queries.codes_to_check(pipeline.catalog, who.scope(), LOW_CONFIDENCE, QUEUE_LIMIT)
    return [QueueItem("code", _aware(r.updated_at), f"/review/dossiers/{r.code}", r.code,
                      [code_reason(r.source, r.confidence)])
            for r in rows]


def batch_name(record: BatchRecord, names: dict[str, str]) -> str:
    """What staff call a batch: a station's scan by its scanner's name (the list shows when),
    anything else by its file's name."""
    if record.source == "escl" and record.device:
        return names.get(record.device, record.device)
    return record.file or record.batch_id


def queue(pipeline: Pipeline, who: Principal, names: dict[str, str] | None = None
          ) -> list[QueueItem]:
    items = [QueueItem("batch", _aware(r.received_at or ""), f"/review/batches/{r.batch_id}",
                       batch_name(r, names or {}), batch_reasons(r))
             for r in waiting_batches(pipeline, who)]
    return sorted(items + codes_to_check(pipeline, who), key=lambda i: i.at, reverse=True)


@dataclass
class UnmatchedPage:
    number: int  # 1-based, as staff count
    readable: bool
    selected: bool = False


@dataclass
class Group:
    """Unmatched pages as separators and codes cut them. `code` is one read on them that cannot
    be used as it is: `held` says why (a rescan that may lack pages: keep the current version
    or replace it), else the registry did not know it."""
    pages: list[UnmatchedPage]
    code: str | None = None
    held: ReviewEntry | None = None  # the review entry a person decides on (DECIDED)
    visible: bool = True  # False: pages of another agency than the user's, not shown


def unmatched_groups(pipeline: Pipeline, record: BatchRecord,
                     selected: set[int] | None, who: Principal) -> list[Group]:
    """The batch's waiting pages in groups; without a choice made yet, the first readable
    group is selected, so scanning a code assigns it at once."""
    waiting = record.unmatched_pages
    failed = {f.page for f in record.failed_pages}
    entries = {p: r for r in record.review if r.code for p in r.pages}
    groups = [[p for p in g if p in waiting] for g in record.unmatched_groups]
    grouped = {p for g in groups for p in g}
    groups = [g for g in groups if g] + [[p] for p in waiting if p not in grouped]
    out = []
    for pages in groups:
        shown = [UnmatchedPage(p + 1, p not in failed and pipeline.store.exists(
            layout.page_pdf(record.batch_id, p))) for p in pages]
        found = [entries.get(p) for p in pages]
        entry = found[0] if all(e is found[0] for e in found) else None
        held = entry if entry and entry.reason in DECIDED else None
        out.append(Group(shown, entry.code if entry else None, held,
                         all(sees_page(who, record, p) for p in pages)))
    if selected is None:
        first = next((g for g in out if g.visible and all(p.readable for p in g.pages)), None)
        selected = {p.number for p in first.pages} if first else set()
    for group in out:
        for page in group.pages:
            page.selected = page.number in selected
    return out


@dataclass
class BatchDossier:
    code: str
    pages: int
    version: int
    source: str
    confidence: float


def batch_dossiers(pipeline: Pipeline, record: BatchRecord, who: Principal) -> list[BatchDossier]:
    """The batch's dossiers as they are now (a later version may have changed them)."""
    assert pipeline.catalog is not None
    out = []
    for entry in record.dossiers:
        found = pipeline.catalog.dossier(entry.dossier_id)
        if found is None or not who.sees(found["agency"]):
            continue
        code_field = found["fields"].get("dossier_id") or {}
        out.append(BatchDossier(found["dossier_id"], len(found["pages"]), found["version"],
                                code_field.get("source", entry.code_source),
                                code_field.get("confidence", 1.0)))
    return out


@dataclass
class DossierPage:
    number: int
    ref: PageRef


def batch_view(pipeline: Pipeline, record: BatchRecord, who: Principal,
               selected: set[int] | None) -> dict[str, Any]:
    """What the batch screen shows of a batch in review."""
    return {
        "record": record, "groups": unmatched_groups(pipeline, record, selected, who),
        "dossiers": batch_dossiers(pipeline, record, who), "reasons": batch_reasons(record),
        "incomplete": (record.incomplete and not record.incomplete_checked
                       and who.sees(record.agency or "")),
        "settled": record.status != "needs_review",
    }


def dossier_view(dossier: dict[str, Any], versions: list[Manifest], recode: str | None,
                 file_of: Callable[[str], str]) -> dict[str, Any]:
    """What the page editor shows of a dossier (the catalog's view of it) and its versions;
    `recode` is a code refused in the "correct the code" box, shown again."""
    code, latest = dossier["dossier_id"], versions[-1]
    code_field = dossier["fields"].get("dossier_id") or {}
    source = code_field.get("source", latest.code_source)
    confidence = code_field.get("confidence", 1.0)
    needs_confirm = latest.code_source not in ("barcode", "user") \
        and (source == "ocr" or confidence < LOW_CONFIDENCE)
    return {
        "code": code, "agency": dossier["agency"], "version": latest.version,
        "pages": [DossierPage(i + 1, r) for i, r in enumerate(latest.refs())],
        "source": source, "confidence": percent(confidence),
        "needs_confirm": needs_confirm, "recode": recode or "",
        "recode_refused": recode is not None, "recode_focus": needs_confirm or recode is not None,
        "versions": [(m, describe(code, m, file_of)) for m in reversed(versions)],
    }


def describe(code: str, manifest: Manifest, file_of: Callable[[str], str]) -> Reason:
    """What a version changed, for the versions list (`file_of` names a batch by its file)."""
    change = manifest.change or {}  # what the review wrote: its own keys per action
    action = change.get("action")
    if action == "assign":
        return Reason("review.change.assign", {"pages": pages_text(change["pages"]),
                                               "file": file_of(change["batch_id"])})
    if action == "rotate":
        turn = int(change["degrees"]) % 360
        return Reason(f"review.change.rotate.{turn}", {"page": change["position"] + 1})
    if action == "move":
        return Reason("review.change.move", {"page": change["position"] + 1, "to": change["to"] + 1})
    if action == "drop":
        return Reason("review.change.drop", {"page": change["position"] + 1})
    if action == "split":
        if change["from"] == code:
            return Reason("review.change.split_from", {"page": change["position"] + 1,
                                                       "other": change["to"]})
        return Reason("review.change.split_to", {"other": change["from"]})
    if action == "merge":
        return Reason("review.change.merge", {"other": change["from"]})
    if action == "confirm":
        return Reason("review.change.confirm")
    if manifest.withdrawn:
        return Reason("review.change.withdrawn", {"other": manifest.withdrawn.to})
    if action == "recode":
        return Reason("review.change.recode", {"other": change["from"]})
    return Reason("review.change.scan", {"file": manifest.original.file})


def pages_text(pages: list[int]) -> str:
    """0-based page indexes as staff count them: "1, 2, 5"."""
    return ", ".join(str(p + 1) for p in sorted(pages))


# ---- refusals -----------------------------------------------------------------------------

class Refused(Exception):
    """A change that cannot be made: shown on the page with its status; nothing was changed."""

    def __init__(self, key: str, status_code: int = 422, **values: Any) -> None:
        super().__init__(key)
        self.key, self.status_code, self.values = key, status_code, values


# ingest/review.py's messages, as the staff's language says them.
_REVIEW_ERRORS = [
    (re.compile(r"no dossier (?P<code>\S+)"), "review.error.no_dossier"),
    (re.compile(r"'(?P<code>.*)' is not a dossier code"), "review.error.bad_code"),
    (re.compile(r"only pages waiting for review"), "review.error.not_waiting"),
    (re.compile(r"not a rescan waiting"), "review.error.not_held"),
    (re.compile(r"(?P<code>\S+) belongs to another agency"), "review.error.other_agency"),
    (re.compile(r"dossiers of different agencies"), "review.error.merge_agency"),
    (re.compile(r"page (?P<page>\d+) could not be read"), "review.error.unreadable"),
    (re.compile(r"a dossier needs at least one page"), "review.error.last_page"),
    (re.compile(r"the dossier has no page (?P<page>\d+)"), "review.error.no_page"),
    (re.compile(r"split between two pages"), "review.error.split_position"),
    (re.compile(r"split into another dossier code"), "review.error.split_same"),
    (re.compile(r"merge two different dossiers"), "review.error.merge_same"),
    (re.compile(r"this code was not read by OCR"), "review.error.not_ocr"),
    (re.compile(r"this scan is not marked incomplete"), "review.error.not_incomplete"),
    (re.compile(r"recode to another dossier code"), "review.error.recode_same"),
    (re.compile(r"(?P<code>\S+) was renamed to (?P<other>\S+)"), "review.error.renamed"),
]


def refused(e: ReviewError) -> Refused:
    for pattern, key in _REVIEW_ERRORS:
        if found := pattern.match(str(e)):
            return Refused(key, **found.groupdict())
    return Refused("review.error.other", detail=str(e))

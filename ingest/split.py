"""Splitting a batch into dossiers by their codes.

Rules (issue #2): a page whose barcode is a valid dossier code starts a new dossier and is its first
page; following pages belong to it until the next code. The same code again (the second receipt copy,
another form of the same dossier) continues it. Separator sheets (PATCH-T) end the current dossier
and are dropped, as are blank pages. Pages before the first code, or after a separator with no code
yet, go to review ("unmatched"), unless the caller gave one code for the whole file. No barcode but
an OCR'd `Mã hồ sơ:` line with a valid code: that code is used, with source "ocr".

Results (issue 13): a result separator sheet (barcode `SOHOA-RESULT`, "KẾT QUẢ") starts result
pages: each page after it, up to the next separator sheet of either kind or the end of the
batch, is a page of the result of the dossier whose code it carries (the code on the result,
by barcode or `Mã hồ sơ:` line; a page without one continues the result before it). Result
pages never make a dossier version. A batch sent as a result (`sohoa ingest --result CODE`,
POST /api/v1/dossiers/{code}/result) is one result of that code, every page but blank ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ocr.dossier_code import DossierCodeGrammar
from ocr.fields import RECEIPT_LABELS
from ocr.text import fold_aligned
from storage.records import PageFacts


@dataclass(frozen=True)
class PageCode:
    code: str
    agency: str
    source: str  # barcode | ocr | user


@dataclass
class DossierSplit:
    code: str
    agency: str
    source: str
    pages: list[int] = field(default_factory=list)
    registry: dict[str, Any] | None = None  # what the processing system's registry said of it


@dataclass
class SplitPlan:
    dossiers: list[DossierSplit]
    unmatched: list[int]
    dropped: list[tuple[int, str]]  # (page, blank|separator)
    unmatched_groups: list[list[int]]  # unmatched pages as the separators cut them, for review
    failed: list[int]  # pages that could not be decoded (also in unmatched)
    review: list[dict[str, Any]] = field(default_factory=list)  # why pages wait for a person
    results: list[DossierSplit] = field(default_factory=list)  # result pages, by dossier code


_CODE_LABEL_RE = re.compile(next(rx for name, rx in RECEIPT_LABELS if name == "dossier_id"))


def page_code(facts: PageFacts, grammar: DossierCodeGrammar) -> PageCode | None:
    for b in facts.barcodes:
        found = grammar.find(b.value)
        if found:
            return PageCode(found.code, found.agency, "barcode")
    label = _CODE_LABEL_RE
    for line in facts.ocr.lines if facts.ocr else []:
        folded = fold_aligned(line)
        m = label.search(folded)
        if m:
            found = grammar.find_repaired(line[m.end():].replace(" ", "").lstrip(":"))
            if found:
                return PageCode(found.code, found.agency, "ocr")
    return None


def is_result_sheet(facts: PageFacts, marks: tuple[str, ...]) -> bool:
    """Whether a separator page is a result separator sheet (its barcode one of `marks`)."""
    wanted = {m.strip().upper() for m in marks}
    return any(b.value.strip().upper() in wanted for b in facts.barcodes or [])


def split_result(pages: list[PageFacts], code: str, agency: str) -> SplitPlan:
    """A batch sent as the result of dossier `code`: every page but blank pages and
    separator sheets is the result; pages that could not be read wait in review."""
    part = DossierSplit(code, agency, "user")
    dropped: list[tuple[int, str]] = []
    failed: list[int] = []
    for facts in pages:
        i = facts.index
        if facts.status == "failed":
            failed.append(i)
        elif facts.separator:
            dropped.append((i, "separator"))
        elif facts.blank:
            dropped.append((i, "blank"))
        else:
            part.pages.append(i)
    return SplitPlan([], list(failed), dropped, [[i] for i in failed], failed,
                     results=[part] if part.pages else [])


def split(pages: list[PageFacts], grammar: DossierCodeGrammar,
          whole_file_code: str | None = None,
          result_marks: tuple[str, ...] = ("SOHOA-RESULT",)) -> SplitPlan:
    dossiers: dict[str, DossierSplit] = {}
    order: list[str] = []
    unmatched: list[int] = []
    groups: list[list[int]] = []
    dropped: list[tuple[int, str]] = []
    failed: list[int] = []
    current: DossierSplit | None = None
    if whole_file_code:
        user = grammar.find(whole_file_code)
        agency = user.agency if user else whole_file_code.split("-")[0]
        current = DossierSplit(whole_file_code, agency, "user")
        dossiers[whole_file_code] = current
        order.append(whole_file_code)
    open_group: list[int] | None = None
    results: dict[str, DossierSplit] = {}
    result_order: list[str] = []
    in_results = False
    result: DossierSplit | None = None

    for facts in pages:
        i = facts.index
        if facts.status == "failed":
            failed.append(i)
            unmatched.append(i)
            groups.append([i])
            continue
        if facts.separator:
            dropped.append((i, "separator"))
            current, open_group, result = None, None, None
            in_results = is_result_sheet(facts, result_marks)
            continue
        if facts.blank:
            dropped.append((i, "blank"))
            continue
        code = page_code(facts, grammar)
        if in_results:
            if code and (result is None or code.code != result.code):
                result = results.get(code.code)
                if result is None:
                    result = results[code.code] = DossierSplit(code.code, code.agency,
                                                               code.source)
                    result_order.append(code.code)
            if result is not None:
                result.pages.append(i)
                open_group = None
                continue
        if code and (current is None or code.code != current.code):
            current = dossiers.get(code.code)
            if current is None:
                current = DossierSplit(code.code, code.agency, code.source)
                dossiers[code.code] = current
                order.append(code.code)
        if current is not None:
            current.pages.append(i)
            open_group = None
        else:
            unmatched.append(i)
            if open_group is None:
                open_group = []
                groups.append(open_group)
            open_group.append(i)
    kept = [dossiers[c] for c in order if dossiers[c].pages]
    return SplitPlan(kept, unmatched, dropped, groups, failed,
                     results=[results[c] for c in result_order])

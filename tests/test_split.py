"""Splitting rules, on page facts as the page stages record them."""

from typing import Any

from ingest.split import split
from ocr.dossier_code import DossierCodeGrammar
from storage.records import PageFacts

A, B = "000.00.04.H40-230414-0002", "000.17.22.H56-210531-0001"


def page(i: int, barcode: str | None = None, *, blank: bool = False, sep: bool = False,
         lines: list[str] | None = None, failed: bool = False) -> PageFacts:
    facts: dict[str, Any] = {"index": i, "status": "failed" if failed else "ok",
                             "barcodes": [{"value": barcode, "symbology": "Code128"}]
                             if barcode else [],
                             "blank": blank, "separator": sep}
    if lines:
        facts["ocr"] = {"lines": lines}
    return PageFacts.load(facts)


def plan_of(pages: list[PageFacts], code: str | None = None) -> tuple:
    p = split(pages, DossierCodeGrammar(), code)
    return ([(d.code, d.pages, d.source) for d in p.dossiers], p.unmatched, p.dropped)


def test_a_code_starts_a_dossier_and_following_pages_join_it() -> None:
    dossiers, unmatched, _ = plan_of([page(0, A), page(1), page(2, B), page(3)])
    assert dossiers == [(A, [0, 1], "barcode"), (B, [2, 3], "barcode")]
    assert unmatched == []


def test_second_receipt_copy_with_same_code_continues_the_dossier() -> None:
    dossiers, _, _ = plan_of([page(0, A), page(1, A), page(2)])
    assert dossiers == [(A, [0, 1, 2], "barcode")]


def test_pages_before_the_first_code_go_to_review() -> None:
    dossiers, unmatched, _ = plan_of([page(0), page(1), page(2, A)])
    assert (dossiers, unmatched) == ([(A, [2], "barcode")], [0, 1])


def test_a_code_given_for_the_file_takes_the_leading_pages() -> None:
    dossiers, unmatched, _ = plan_of([page(0), page(1), page(2, B)], code=A)
    assert (dossiers, unmatched) == ([(A, [0, 1], "user"), (B, [2], "barcode")], [])


def test_separators_split_and_are_dropped_and_never_make_empty_dossiers() -> None:
    dossiers, unmatched, dropped = plan_of(
        [page(0, A), page(1, sep=True), page(2, sep=True), page(3, B)])
    assert dossiers == [(A, [0], "barcode"), (B, [3], "barcode")]
    assert dropped == [(1, "separator"), (2, "separator")]
    assert unmatched == []


def test_pages_after_a_separator_without_a_code_go_to_review() -> None:
    dossiers, unmatched, _ = plan_of([page(0, A), page(1, sep=True), page(2)])
    assert (dossiers, unmatched) == ([(A, [0], "barcode")], [2])


def test_blank_pages_are_dropped_without_splitting() -> None:
    dossiers, _, dropped = plan_of([page(0, A), page(1, blank=True), page(2)])
    assert dossiers == [(A, [0, 2], "barcode")]
    assert dropped == [(1, "blank")]


def test_ocr_code_line_is_used_when_no_barcode_reads() -> None:
    dossiers, _, _ = plan_of([page(0, lines=["GIẤY TIẾP NHẬN", f"Mã hồ sơ: {A[:-4]}OOO2"]),
                              page(1)])
    assert dossiers == [(A, [0, 1], "ocr")]


def test_barcodes_that_are_not_codes_do_not_split() -> None:
    dossiers, _, _ = plan_of([page(0, A), page(1, "001090012345||Nguyễn Văn An|x|Nam|y|z")])
    assert dossiers == [(A, [0, 1], "barcode")]


def test_pages_that_could_not_be_decoded_go_to_review() -> None:
    dossiers, unmatched, _ = plan_of([page(0, A), page(1, failed=True), page(2)])
    assert (dossiers, unmatched) == ([(A, [0, 2], "barcode")], [1])

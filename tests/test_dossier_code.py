"""Dossier codes: DOMAIN.md's grammars, codes inside payloads, OCR digit repair."""

import pytest

from ocr.dossier_code import STRICT, DossierCodeGrammar

REAL_CODES = [
    "000.00.04.H40-230414-0002",
    "000.17.22.H56-210531-0001",
    "000.A0.01.H26-210212-9090",
    "38.98.H29-210519-0013",
    "000.701.18.G12-260314-2711000036943",
    "G09.20-20260609-0092637",
]


@pytest.mark.parametrize("code", REAL_CODES)
def test_tolerant_grammar_accepts_every_code_seen_in_real_systems(code: str) -> None:
    assert DossierCodeGrammar().match(code).code == code


def test_tolerant_grammar_splits_agency_date_and_sequence() -> None:
    found = DossierCodeGrammar().match("000.00.04.H40-230414-0002")
    assert (found.agency, found.date, found.seq) == ("000.00.04.H40", "230414", "0002")


@pytest.mark.parametrize("code", ["38.98.H29-210519-0013", "G09.20-20260609-0092637"])
def test_strict_grammar_rejects_variants(code: str) -> None:
    assert DossierCodeGrammar(STRICT).match(code) is None


@pytest.mark.parametrize("bad", ["ASN00123", "CUSTOM BARCODE", "000.00.04.H40-231314-0002",
                                 "000.00.04.H40-230414-002", "PATCHT", ""])
def test_non_codes_are_rejected(bad: str) -> None:
    assert DossierCodeGrammar().match(bad) is None


def test_code_is_found_inside_a_url() -> None:
    url = "https://dichvucong.gov.vn/tra-cuu?ma=000.00.04.H40-230414-0002&x=1"
    assert DossierCodeGrammar().find(url).code == "000.00.04.H40-230414-0002"


def test_ocr_confusions_are_repaired_in_digit_positions_only() -> None:
    assert DossierCodeGrammar().find_repaired("000.00.04.H40-23O4l4-OOO2").code == \
        "000.00.04.H40-230414-0002"

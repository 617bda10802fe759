"""OCR quality against ground truth on scanned-looking Vietnamese pages (straighten + OCR stages)."""

from __future__ import annotations

import statistics
import unicodedata

import pytest
from rapidfuzz.distance import Levenshtein

from ingest.page_stages import Recognize, Straighten
from ingest.split import page_code
from ingest.stages import PageWork
from ocr.dossier_code import DossierCodeGrammar
from tests import synth


def cer(truth: str, text: str) -> float:
    norm = lambda s: " ".join(unicodedata.normalize("NFC", s).split())  # noqa: E731
    return Levenshtein.distance(norm(truth), norm(text)) / max(1, len(norm(truth)))


def read(page: synth.Page, scan: synth.Scan) -> PageWork:
    img = synth.degrade(page, scan)
    work = PageWork("test", 0, img, page.dpi)
    for stage in (Straighten(), Recognize()):
        stage(work)
    return work


SCANS = [  # (dpi, skew, upside down)
    (300, 0.0, False), (300, 5.0, False), (300, -10.0, False), (200, 7.5, False),
    (200, -3.0, False), (300, 2.0, True),
]


@pytest.fixture(scope="module")
def readings() -> list[tuple[str, PageWork, tuple]]:
    paragraphs = synth.corpus_paragraphs()
    out = []
    for i, (dpi, skew, upside_down) in enumerate(SCANS):
        page, _ = synth.text_page(paragraphs[i * 6:i * 6 + 6], dpi)
        scan = synth.Scan(skew=skew, upside_down=upside_down, noise=5, blur=0.7, seed=i)
        out.append((page.text, read(page, scan), (dpi, skew, upside_down)))
    return out


def test_median_character_error_rate_is_at_most_half_a_percent(readings) -> None:
    rates = [cer(truth, "\n".join(w.facts.ocr.lines)) for truth, w, _ in readings]
    assert statistics.median(rates) <= 0.005, rates


def test_every_page_up_to_ten_degrees_comes_out_with_text(readings) -> None:
    for truth, work, scan in readings:
        assert cer(truth, "\n".join(work.facts.ocr.lines)) < 0.03, scan


def test_upside_down_page_is_turned_and_read(readings) -> None:
    work = next(w for _, w, scan in readings if scan[2])
    assert work.facts.rotation == 180


def test_text_is_nfc_with_word_boxes_and_confidences(readings) -> None:
    ocr = readings[0][1].facts.ocr
    assert all(unicodedata.is_normalized("NFC", line) for line in ocr.lines)
    word = ocr.words[0]
    assert word["conf"] > 50 and word["box"][2] > word["box"][0]
    assert 0.8 < ocr.confidence <= 1.0


def test_text_layer_pdf_is_produced(readings) -> None:
    assert readings[0][1].text_pdf.startswith(b"%PDF")


@pytest.mark.parametrize(("turn", "correction"), [(90, 270), (270, 90)])
def test_sideways_pages_are_turned_upright_and_read(turn: int, correction: int) -> None:
    page, _ = synth.text_page(synth.corpus_paragraphs()[30:33], 200)
    img = synth.degrade(page, synth.Scan(skew=2.0, noise=4, seed=turn)).rotate(turn, expand=True)
    work = PageWork("test", 0, img, 200)
    for stage in (Straighten(), Recognize()):
        stage(work)
    assert work.facts.rotation == correction  # degrees counter-clockwise applied
    assert cer(page.text, "\n".join(work.facts.ocr.lines)) < 0.03


def test_receipt_without_barcode_gives_its_code_from_the_ocr_line() -> None:
    code = "000.00.04.H40-230414-0002"
    page = synth.receipt(code, synth.receipt_fields(2), 300, symbology="none")
    work = read(page, synth.Scan(skew=-3.0, noise=4, seed=3))
    found = page_code(work.facts, DossierCodeGrammar())
    assert (found.code, found.source) == (code, "ocr")


def test_english_page_gets_the_vie_eng_reading(samples) -> None:
    from ocr.decode import open_document

    doc = open_document(samples / "paperless-ngx" / "simple.pdf")
    page = doc.page(0)
    work = PageWork("test", 0, page.image, page.dpi)
    Recognize()(work)
    assert work.facts.ocr.lines == ["This is a test document."]
    assert work.facts.ocr.languages == "vie+eng"


def test_vietnamese_page_needs_only_vie(readings) -> None:
    assert readings[0][1].facts.ocr.languages == "vie"


def test_a_receipts_qr_code_leaves_no_garbage_in_its_text() -> None:
    # Given a receipt with its code as a QR code, scanned skewed by 5 degrees
    from ingest.page_stages import default_page_stages
    from ocr.config import BarcodeConfig, OcrConfig

    code = "000.00.04.H40-230414-0002"
    page = synth.receipt(code, synth.receipt_fields(3), 300, symbology="qr")
    img = synth.degrade(page, synth.Scan(skew=5.0, noise=5, blur=0.7, seed=4))
    work = PageWork("test", 0, img, page.dpi)
    # When the default page stages read it
    for stage in default_page_stages(OcrConfig(), BarcodeConfig()):
        stage(work)
    # Then the code is read from the QR code, and the text is the receipt's, without lines
    # made of the code's modules (read with them, over 1 % of its characters were garbage)
    assert [b.value for b in work.facts.barcodes] == [code]
    assert cer(page.text, "\n".join(work.facts.ocr.lines)) < 0.01
    # and what is stored of the page (its scan) still shows the code
    assert work.scan.image is img

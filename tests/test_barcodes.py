"""Barcode reading on paperless-ngx's real samples and on generated receipts."""

from pathlib import Path

import numpy as np
import pytest

from ocr import barcodes
from ocr.decode import open_document
from tests import synth


def page_gray(path: Path, index: int = 0) -> np.ndarray:
    doc = open_document(path)
    try:
        return np.asarray(doc.page(index).image.convert("L"))
    finally:
        doc.close()


@pytest.mark.parametrize(("name", "value", "symbology"), [
    ("barcode-39-custom.pdf", "CUSTOM BARCODE", "Code39"),
    ("barcode-qr-custom.pdf", "CUSTOM BARCODE", "QRCode"),
    ("barcode-128-custom.pdf", "CUSTOM BARCODE", "Code128"),
    ("barcode-39-asn-123.pdf", "ASN00123", "Code39"),
    ("barcode-39-asn-invalid.pdf", "ASNXYZXYZ", "Code39"),
    ("patch-code-t.pdf", "PATCHT", "Code39"),
    ("patch-code-t-qr.pdf", "PATCHT", "QRCode"),
])
def test_sample_barcodes_decode_to_their_value(samples: Path, name: str, value: str,
                                               symbology: str) -> None:
    found = barcodes.read(page_gray(samples / "paperless-ngx" / name))
    assert [(b.value, b.symbology) for b in found] == [(value, symbology)]


def test_small_rescanned_qr_is_read_by_zxing_cpp(samples: Path) -> None:
    gray = page_gray(samples / "paperless-ngx" / "barcode-qr-asn-000123-upscale-dpi.pdf")
    assert [b.value for b in barcodes.read_zxing(gray)] == ["ASN 000123"]


def test_damaged_barcode_decodes_to_nothing(samples: Path) -> None:
    gray = page_gray(samples / "paperless-ngx" / "patch-code-t-middle-unreadable.pdf", 1)
    assert barcodes.read(gray) == []


def test_several_codes_on_one_page_are_all_read(samples: Path) -> None:
    gray = page_gray(samples / "paperless-ngx" / "split-by-tag-multiple-per-page.pdf", 1)
    assert len(barcodes.read(gray)) == 2


@pytest.mark.parametrize("symbology", ["code128", "qr"])
@pytest.mark.parametrize("engine", ["zxing-cpp", "pyzbar"])
@pytest.mark.parametrize("code", ["000.00.04.H40-230414-0002", "000.701.18.G12-260314-2711000036943"])
def test_generated_receipt_code_is_read_by_both_engines(symbology: str, engine: str,
                                                        code: str) -> None:
    page = synth.receipt(code, synth.receipt_fields(0), 300, symbology)
    gray = np.asarray(synth.degrade(page, synth.Scan(skew=3, noise=6, blur=0.8)))
    assert [b.value for b in barcodes.read(gray, (engine,))] == [code]


def test_vietnamese_qr_payload_survives_pyzbar() -> None:
    payload = "001090012345||Nguyễn Thị Ánh Tuyết|15031990|Nữ|Xã Đồng Tâm|20042021"
    gray = np.asarray(synth.id_card_copy(payload, "Nguyễn Thị Ánh Tuyết").image)
    assert [b.value for b in barcodes.read_pyzbar(gray)] == [payload]


def test_a_block_of_bars_is_found_around_an_upright_code_and_none_in_prose() -> None:
    # Given an upright receipt with a Code 128 among its lines, and a page of prose, at 200 dpi
    receipt = synth.receipt("000.00.04.H40-230414-0002", synth.receipt_fields(1), 200)
    prose = synth.text_page(synth.corpus_paragraphs()[:6], 200)[0]
    # When their blocks of bars are looked for
    blocks = barcodes.bar_blocks(np.asarray(receipt.image.convert("L")), 200)
    # Then the receipt has one, holding its code (read there), and the prose page none
    (x0, y0, x1, y1) = blocks[0]
    inside = np.asarray(receipt.image.convert("L"))[y0 - 10:y1 + 10, x0 - 40:x1 + 40]
    assert [b.value for b in barcodes.read(inside)] == ["000.00.04.H40-230414-0002"]
    assert barcodes.bar_blocks(np.asarray(prose.image.convert("L")), 200) == []


def test_blocks_of_bars_across_the_page_are_found_around_a_code_printed_up_it() -> None:
    # Given an upright receipt whose Code 128 is printed up the page, and a page of prose
    from PIL import Image

    receipt = synth.receipt("000.00.04.H40-230414-0002", synth.receipt_fields(1), 200)
    page = receipt.image.convert("L").transpose(Image.ROTATE_90)
    prose = synth.text_page(synth.corpus_paragraphs()[:6], 200)[0]
    # When blocks of bars across the page are looked for
    (x0, y0, x1, y1), = barcodes.bar_blocks(np.asarray(page), 200, across=True)
    # Then the one found holds the code, and the prose page has none either way
    inside = np.asarray(page)[y0 - 40:y1 + 40, x0 - 10:x1 + 10]
    assert [b.value for b in barcodes.read(inside)] == ["000.00.04.H40-230414-0002"]
    assert barcodes.bar_blocks(np.asarray(prose.image.convert("L")), 200, across=True) == []


def test_read_as_it_lies_a_code_across_the_page_is_left_to_the_quarter_turned_pass() -> None:
    # Given a Code 128 turned a quarter on its page
    from PIL import Image

    page = synth.receipt("000.00.04.H40-230414-0002", synth.receipt_fields(1), 300)
    gray = np.asarray(page.image.convert("L").transpose(Image.ROTATE_90))
    # When it is read as it lies, and turned
    # Then only the turned reading finds it
    assert barcodes.read(gray, turned=False) == []
    assert [b.value for b in barcodes.read(gray)] == ["000.00.04.H40-230414-0002"]

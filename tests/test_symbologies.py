"""The one table of barcode symbologies (ocr/symbologies.py): both engines know every row, the
settings accept its names only, and a typo stops the start instead of failing every page."""

from __future__ import annotations

import numpy as np
import pytest
import zxingcpp
from pydantic import ValidationError
from pyzbar import pyzbar

from ingest.settings import Settings
from ocr import barcodes, symbologies
from ocr.symbologies import SYMBOLOGIES


@pytest.mark.parametrize("row", SYMBOLOGIES, ids=lambda s: s.name)
def test_every_row_names_formats_the_engines_know(row: symbologies.Symbology) -> None:
    for member in (row.zxing, *row.zxing_variants):
        assert hasattr(zxingcpp.BarcodeFormat, member)
        assert symbologies.from_zxing(member) == row.name
    zxingcpp.barcode_formats_from_str(row.zxing)  # raises ValueError if zxing-cpp lacks it
    if row.zbar is not None:
        assert hasattr(pyzbar.ZBarSymbol, row.zbar)
        assert symbologies.from_zbar(row.zbar) == row.name


@pytest.mark.parametrize("name", ["Code128", "QRCode", "DataMatrix", "Aztec", "EAN13", "Code39"])
def test_a_generated_code_is_read_back_under_its_table_name(name: str) -> None:
    row = symbologies.lookup(name)
    text = "5901234123457" if name == "EAN13" else "ASN00123"
    image = zxingcpp.create_barcode(text, getattr(zxingcpp.BarcodeFormat, row.zxing)).to_image(scale=4)
    gray = np.pad(np.asarray(image), 40, constant_values=255)
    engines = ("zxing-cpp", "pyzbar") if row.zbar else ("zxing-cpp",)
    for engine in engines:
        found = barcodes.ENGINES[engine](gray, (name,))
        assert [(b.value, b.symbology) for b in found] == [(text, name)], engine


def test_pyzbar_asked_only_for_codes_it_cannot_read_reads_nothing() -> None:
    image = zxingcpp.create_barcode("ASN00123", zxingcpp.BarcodeFormat.Code128).to_image(scale=4)
    gray = np.pad(np.asarray(image), 40, constant_values=255)
    assert barcodes.read_pyzbar(gray, ("DataMatrix", "Aztec")) == []


def test_the_settings_take_the_tables_names_in_any_case() -> None:
    assert Settings(barcode_formats=["code128", "QRCODE", "rmqrcode", "Code128"]).barcodes.formats \
        == ["Code128", "QRCode", "rMQRCode"]
    assert Settings().barcodes.formats == list(symbologies.DEFAULT_FORMATS)


def test_an_unknown_format_stops_the_start_naming_it_and_the_known_ones(monkeypatch) -> None:
    monkeypatch.setenv("SOHOA_BARCODE_FORMATS", '["Code128", "Code129"]')
    with pytest.raises(ValidationError) as caught:
        Settings()
    message = str(caught.value)
    assert "unknown barcode format 'Code129'" in message
    assert "known: Code128, Code39, Code93, ITF" in message and "DataMatrix" in message


def test_no_format_at_all_is_refused() -> None:
    with pytest.raises(ValidationError, match="name at least one"):
        Settings(barcode_formats=[])


def test_the_straightened_retry_reads_only_the_one_d_ones() -> None:
    assert symbologies.one_d(["QRCode", "Code128", "PDF417", "Code39", "DataMatrix"]) \
        == ("Code128", "Code39")
    assert {s.name for s in SYMBOLOGIES if s.two_d} \
        == {"QRCode", "MicroQRCode", "rMQRCode", "DataMatrix", "Aztec", "PDF417"}  # the old TWO_D

"""The stored page: the scan as it came, turned upright by the page's drawing matrix.

The straightened copy the stages read is small (ocr.max_dpi); the page PDF keeps the scan's own
pixels, and its own JPEG bytes when it came as JPEG, turned by `facts.rotation` and `facts.skew`.
"""

import io
import subprocess
from pathlib import Path

import numpy as np
import pikepdf
import pytest
from PIL import Image

from ocr import deskew
from ocr import pdf as pdfmod
from ocr.decode import open_document
from tests import synth

DPI = 200


@pytest.fixture(scope="module")
def prose() -> synth.Page:
    return synth.text_page(synth.corpus_paragraphs()[2:8], DPI)[0]


def scanned(page: synth.Page, skew: float) -> tuple[Image.Image, bytes]:
    img = synth.degrade(page, synth.Scan(skew=skew, noise=2, blur=0.4))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85)
    return Image.open(io.BytesIO(out.getvalue())), out.getvalue()


def drawn(page_pdf: bytes, tmp_path: Path, dpi: int = 100) -> Image.Image:
    path = tmp_path / "page.pdf"
    path.write_bytes(page_pdf)
    png = subprocess.run(["pdftoppm", "-r", str(dpi), "-gray", "-png", str(path)],
                         capture_output=True, check=True).stdout
    return Image.open(io.BytesIO(png)).convert("L")


def test_a_skewed_jpeg_scan_is_stored_byte_for_byte_and_shown_straight(prose, tmp_path) -> None:
    # given a scan skewed by 6 degrees that came as JPEG
    img, jpeg = scanned(prose, 6.0)
    # when its page is drawn straightened by the 6 degrees measured
    page = pdfmod.page_pdf(img, DPI, None, jpeg=jpeg, skew=6.0)
    # then the page holds the scanner's JPEG unchanged, and shows the text level
    with pikepdf.open(io.BytesIO(page)) as pdf:
        (image,) = pdf.pages[0].get_images().values()
        assert bytes(image.read_raw_bytes()) == jpeg
        assert [float(v) for v in pdf.pages[0].MediaBox] == pytest.approx(
            [0, 0, img.width * 72 / DPI, img.height * 72 / DPI])
    shown = drawn(page, tmp_path)
    assert abs(deskew.detect(np.asarray(shown), 100).angle) < 0.3


def test_the_uncovered_corners_have_the_papers_colour(prose, tmp_path) -> None:
    img, jpeg = scanned(prose, 8.0)
    shown = np.asarray(drawn(pdfmod.page_pdf(img, DPI, None, jpeg=jpeg, skew=8.0), tmp_path))
    assert shown[1, 1] >= 240 and shown[-2, -2] >= 240


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_quarter_turns_turn_the_page(prose, tmp_path, rotation: int) -> None:
    # given an upright page scanned turned the other way
    upright = prose.image
    img = upright.rotate(-rotation, expand=True)
    # when it is drawn turned back by `rotation` degrees counter-clockwise
    page = pdfmod.page_pdf(img, DPI, None, rotation=rotation)
    # then the page shows it upright, at the upright page's size
    shown = drawn(page, tmp_path, DPI)
    assert shown.size == upright.size
    difference = np.abs(np.asarray(shown, float) - np.asarray(upright.convert("L"), float))
    assert difference.mean() < 8


def test_previews_show_the_page_as_it_is_drawn(prose, tmp_path) -> None:
    img, jpeg = scanned(prose, -5.0)
    path = tmp_path / "page.pdf"
    path.write_bytes(pdfmod.page_pdf(img, DPI, None, jpeg=jpeg, rotation=90, skew=-5.0))
    preview = Image.open(io.BytesIO(pdfmod.page_jpeg(path, 0))).convert("L")
    assert preview.size == (img.height, img.width)
    upright = preview.rotate(-90, expand=True)
    assert abs(deskew.detect(np.asarray(upright), DPI).angle) < 0.3


def test_a_jpeg_page_of_a_pdf_is_handed_out_with_its_own_bytes(prose, tmp_path) -> None:
    path = synth.write_pdf([(prose, synth.Scan())], tmp_path / "scan.pdf")
    with pikepdf.open(path) as pdf:
        (image,) = pdf.pages[0].get_images().values()
        raw = bytes(image.read_raw_bytes())
    doc = open_document(path)
    assert doc.page(0).jpeg == raw
    doc.close()


def test_a_page_that_changes_its_image_on_the_way_is_not_handed_out_as_jpeg(tmp_path) -> None:
    # given a JPEG page the PDF turns with /Rotate, and one with a /Decode array (inverted)
    path = synth.write_pdf([(synth.blank(DPI, seed=1), synth.Scan())] * 2, tmp_path / "scan.pdf")
    with pikepdf.open(path, allow_overwriting_input=True) as pdf:
        pdf.pages[0].Rotate = 90
        (image,) = pdf.pages[1].get_images().values()
        image.Decode = pikepdf.Array([1, 0])
        pdf.save(path)
    doc = open_document(path)
    # then both are decoded and drawn from their pixels, not embedded as they came
    assert doc.page(0).jpeg is None and doc.page(1).jpeg is None
    doc.close()


def test_a_saved_pdf_is_named_by_its_bytes_the_same_pages_the_same_file(prose) -> None:
    # Given the same page saved twice, and a different one
    img, jpeg = scanned(prose, 3.0)
    first = pdfmod.page_pdf(img, DPI, None, jpeg=jpeg, skew=3.0)
    again = pdfmod.page_pdf(img, DPI, None, jpeg=jpeg, skew=3.0)
    other = pdfmod.page_pdf(img, DPI, None, jpeg=jpeg, skew=2.0)
    # Then the same bytes come out, with an ID of their own (not qpdf's stand-in), and another
    # page gets another ID
    assert first == again
    ids = [bytes(pikepdf.open(io.BytesIO(b)).trailer.ID[0]).hex() for b in (first, other)]
    assert ids[0] != ids[1]
    assert "31415926535897932384626433832795" not in ids


def test_a_document_that_had_an_id_keeps_its_first_part() -> None:
    # Given a document saved once, then changed and saved again
    doc = pikepdf.new()
    doc.add_blank_page()
    first = pikepdf.open(io.BytesIO(pdfmod.saved(doc)))
    kept = bytes(first.trailer.ID[0])
    first.add_blank_page()
    # Then its ID's first part stays, and the second names the new bytes
    changed = pikepdf.open(io.BytesIO(pdfmod.saved(first))).trailer.ID
    assert bytes(changed[0]) == kept
    assert bytes(changed[1]) not in (kept, bytes.fromhex("31415926535897932384626433832795"))


def test_a_file_not_written_as_expected_is_saved_the_slow_way_still_the_same(monkeypatch) -> None:
    # Given a qpdf whose stand-in ID saved() would not find in the file
    monkeypatch.setattr(pdfmod, "_STAND_IN", b"<not-what-qpdf-writes>")
    doc = pikepdf.new()
    doc.add_blank_page()
    # Then the file is saved with qpdf's own deterministic ID: the same bytes each time
    first, again = pdfmod.saved(doc), pdfmod.saved(doc)
    assert first == again
    assert b"31415926535897932384626433832795" not in first


def test_the_metadata_packet_keeps_a_title_with_markup_characters_as_text() -> None:
    # Given a dossier whose procedure and title hold XML's own characters
    from datetime import UTC, datetime
    from xml.etree import ElementTree

    meta = pdfmod.DossierMetadata("H01-1", "H01", "Cấp phép <xây dựng> & sửa chữa",
                                  datetime(2026, 12, 5, tzinfo=UTC), title='Hồ sơ "A" & <B>')
    # When its XMP packet is written
    packet = pdfmod.xmp_packet(meta, meta.title or "")
    # Then it is well-formed XML, and reads back as the text given
    root = ElementTree.fromstring(packet.split("?>", 1)[1].rsplit("<?xpacket", 1)[0])
    texts = [el.text for el in root.iter() if el.text and el.text.strip()]
    assert 'Hồ sơ "A" & <B>' in texts and "Cấp phép <xây dựng> & sửa chữa" in texts

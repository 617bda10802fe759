"""Pages too heavy to draw in time fail as `too_complex`, their drawing stopped; CCITT scans with
garbage in their stream fail as `corrupt` instead of passing for blank paper (issue 10)."""

from __future__ import annotations

import io
import os
import random
import time
from pathlib import Path

import numpy as np
import pikepdf
import pytest
from PIL import Image, ImageDraw

from ingest.page_stages import DetectBlank, ReadBarcodes
from ingest.pipeline import Pipeline
from ingest.settings import Settings
from ocr.decode import open_document
from ocr.errors import CorruptPage

WIDTH, HEIGHT, DPI = 1700, 2200, 200  # a letter page at 200 dpi


def one_batch(tmp_path: Path, source: Path, **settings: object) -> tuple[Pipeline, str]:
    """A pipeline on a tmp data dir, with `source` received as a batch of its own."""
    pipeline = Pipeline.from_settings(Settings(data_dir=tmp_path / "data", workers=1, **settings))
    pipeline.page_stages = [ReadBarcodes(), DetectBlank()]
    batch_id = pipeline.receive(source)
    assert pipeline.inspect(batch_id).status == "processing"
    return pipeline, batch_id


# ---- too complex to draw ------------------------------------------------------------------------


def vector_page_pdf(path: Path, strokes: int) -> None:
    """A one-page PDF of `strokes` long vector lines and no image: poppler must draw every one
    (300,000 of them take it about a minute and a half at 300 dpi)."""
    lines = "".join(f"{i * 37 % 612} {i * 53 % 792} m {i * 91 % 612} {i * 29 % 792} l S\n"
                    for i in range(strokes))
    pdf = pikepdf.new()
    page = pdf.add_blank_page(page_size=(612, 792))
    page.Contents = pikepdf.Stream(pdf, f"0.3 w\n{lines}".encode())
    pdf.save(path)


def drawing(path: Path) -> list[int]:
    """Processes still drawing a file under `path`, and pdftoppm children of this process not
    reaped (zombies have no command line)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name, after = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
        if str(path).encode() in cmdline or (name == "pdftoppm" and int(after[1]) == os.getpid()):
            found.append(int(entry.name))
    return found


def test_a_page_that_takes_too_long_to_draw_fails_as_too_complex_and_its_drawing_stops(
        tmp_path: Path) -> None:
    """Given a one-page PDF of 300,000 vector strokes and a render limit of 1 s, when its page is
    processed, then it fails as `too_complex` within seconds, and no pdftoppm is left running."""
    source = tmp_path / "strokes.pdf"
    vector_page_pdf(source, 300_000)
    pipeline, batch_id = one_batch(tmp_path, source, render_seconds=1)
    start = time.monotonic()
    facts = pipeline.process_page(batch_id, 0)
    assert time.monotonic() - start < 8
    assert facts.status == "failed"
    assert facts.error == "too_complex: page 0 took longer than 1 s to draw"
    assert drawing(tmp_path) == [], "pdftoppm left running"


def test_an_ordinary_vector_page_still_draws_under_the_same_limit(tmp_path: Path) -> None:
    source = tmp_path / "few-strokes.pdf"
    vector_page_pdf(source, 200)
    pipeline, batch_id = one_batch(tmp_path, source, render_seconds=1)
    facts = pipeline.process_page(batch_id, 0)
    assert (facts.status, facts.origin, facts.dpi) == ("ok", "rasterized", 300)


def test_the_render_limit_is_a_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SOHOA_RENDER_SECONDS", "2.5")
    assert Pipeline.from_settings(Settings(data_dir=tmp_path)).limits.render_seconds == 2.5
    assert Settings().ocr.render_seconds == 2.5
    monkeypatch.setenv("SOHOA_RENDER_SECONDS", "0")
    with pytest.raises(ValueError, match="greater than 0"):
        Settings()


# ---- CCITT ------------------------------------------------------------------------------------


def g4_strip(image: Image.Image) -> bytes:
    """`image` ('1' mode) as one CCITT G4 strip, white coded as white, as a PDF wants it.

    libtiff codes 0 bits as white runs, and Pillow stores '1' images with 0 as black: the image
    is inverted first so that the runs come out right for a PDF's default /BlackIs1 false."""
    inverted = Image.eval(image.convert("L"), lambda v: 255 - v).convert("1")
    buf = io.BytesIO()
    inverted.save(buf, "TIFF", compression="group4", tiffinfo={278: image.height})  # one strip
    tiff = Image.open(io.BytesIO(buf.getvalue()))
    (offset,), (length,) = tiff.tag_v2[273], tiff.tag_v2[279]
    return buf.getvalue()[offset:offset + length]


def ccitt_page_pdf(path: Path, data: bytes) -> None:
    """A one-page PDF whose page is a full-page CCITT G4 scan holding `data`."""
    pdf = pikepdf.new()
    stream = pikepdf.Stream(pdf, data)
    stream.Type, stream.Subtype = pikepdf.Name.XObject, pikepdf.Name.Image
    stream.Width, stream.Height, stream.BitsPerComponent = WIDTH, HEIGHT, 1
    stream.ColorSpace = pikepdf.Name.DeviceGray
    stream.Filter = pikepdf.Name.CCITTFaxDecode
    stream.DecodeParms = pikepdf.Dictionary(K=-1, Columns=WIDTH, Rows=HEIGHT, BlackIs1=False)
    w_pt, h_pt = WIDTH * 72 / DPI, HEIGHT * 72 / DPI
    page = pdf.add_blank_page(page_size=(w_pt, h_pt))
    page.Resources = pikepdf.Dictionary(XObject=pikepdf.Dictionary(Im0=stream))
    page.Contents = pikepdf.Stream(pdf, f"q {w_pt} 0 0 {h_pt} 0 0 cm /Im0 Do Q".encode())
    pdf.save(path)


def scan_with_content() -> Image.Image:
    image = Image.new("1", (WIDTH, HEIGHT), 1)
    draw = ImageDraw.Draw(image)
    draw.rectangle((150, 200, 900, 320), fill=0)
    for y in range(500, 2000, 60):  # lines of "text"
        draw.rectangle((150, y, 150 + (y * 7) % 1300, y + 18), fill=0)
    return image


def decoded(path: Path) -> Image.Image:
    doc = open_document(path)
    try:
        page = doc.page(0)
    finally:
        doc.close()
    assert (page.origin, page.dpi) == ("embedded image", DPI)
    return page.image


def test_a_valid_ccitt_scan_decodes_to_its_pixels(tmp_path: Path) -> None:
    scan = scan_with_content()
    ccitt_page_pdf(tmp_path / "g4.pdf", g4_strip(scan))
    assert np.array_equal(np.array(decoded(tmp_path / "g4.pdf").convert("L")),
                          np.array(scan.convert("L")))


def test_a_valid_all_white_ccitt_scan_is_white_paper_not_corrupt(tmp_path: Path) -> None:
    """A genuinely blank sheet compresses to almost nothing: it decodes, white, without error."""
    ccitt_page_pdf(tmp_path / "white.pdf", g4_strip(Image.new("1", (WIDTH, HEIGHT), 1)))
    assert decoded(tmp_path / "white.pdf").convert("L").getextrema() == (255, 255)


@pytest.mark.parametrize("good_start, seed", [
    pytest.param(False, 0, id="garbage"),
    pytest.param(True, 0, id="garbage after a good third"),
    # libtiff (as Pillow 13 bundles it) reads this garbage as an end of block: no error at all
    pytest.param(False, 104, id="garbage taken for an early end"),
])
def test_a_ccitt_scan_with_garbage_in_its_stream_fails_as_corrupt_not_blank(
        tmp_path: Path, good_start: bool, seed: int) -> None:
    """Given a CCITT G4 page whose stream is garbage, or turns to garbage part way down (libtiff
    stops there and leaves the rest white, with or without an error), when it is processed, then
    the page fails as `corrupt: page 0: CCITT stream cannot be decoded (...)`, not as blank."""
    good = g4_strip(scan_with_content())
    data = (good[:len(good) // 3] if good_start else b"") + random.Random(seed).randbytes(40_000)
    source = tmp_path / "garbage.pdf"
    ccitt_page_pdf(source, data)
    with pytest.raises(CorruptPage, match=r"^page 0: CCITT stream cannot be decoded \("):
        decoded(source)
    pipeline, batch_id = one_batch(tmp_path, source)
    facts = pipeline.process_page(batch_id, 0)
    assert facts.status == "failed"
    assert facts.error.startswith("corrupt: page 0: CCITT stream cannot be decoded (")
    assert facts.error.endswith(" in CCITTFax stream)") or "wrong length" in facts.error

"""Deskew accuracy (issue: median error at most 0.1 degree up to ±15), sideways pages, blank pages."""

import numpy as np
import pytest

from ocr import barcodes, blank, deskew
from tests import synth

ANGLES = [-14.6, -11.2, -7.9, -4.4, -1.3, -0.3, 0.0, 0.6, 2.2, 5.1, 8.8, 12.3, 14.9]


@pytest.fixture(scope="module")
def prose_page() -> synth.Page:
    return synth.text_page(synth.corpus_paragraphs()[5:14], 200)[0]


@pytest.fixture(scope="module")
def receipt_page() -> synth.Page:
    return synth.receipt("000.00.04.H40-230414-0002", synth.receipt_fields(1), 300, "both")


def measured(page: synth.Page, angle: float, turn: int = 0) -> deskew.Skew:
    img = synth.degrade(page, synth.Scan(skew=angle, noise=6, blur=0.8))
    if turn:
        img = img.rotate(turn, expand=True)
    return deskew.detect(np.asarray(img), page.dpi)


def test_median_deskew_error_is_under_a_tenth_of_a_degree(prose_page, receipt_page) -> None:
    errors = [abs(measured(p, a).angle - a) for p in (prose_page, receipt_page) for a in ANGLES]
    assert np.median(errors) <= 0.1
    assert max(errors) <= 0.3


@pytest.mark.parametrize("turn", [90, 270])
def test_sideways_pages_are_detected(prose_page, turn: int) -> None:
    assert measured(prose_page, 3.0, turn).sideways


def test_upright_pages_are_not_sideways(receipt_page) -> None:
    assert not measured(receipt_page, -6.0).sideways


def test_rotation_keeps_the_page_size_and_white_corners(prose_page) -> None:
    out = deskew.rotate(prose_page.image, 10)
    assert out.size == prose_page.image.size and out.getpixel((0, 0)) >= 250


@pytest.mark.parametrize("seed", range(3))
def test_duplex_backside_with_bleed_through_and_specks_is_blank(seed: int) -> None:
    page = synth.blank(300, seed=seed)
    gray = np.asarray(synth.degrade(page, synth.Scan(noise=6, blur=0.8)))
    assert blank.is_blank(gray, 300)


def test_a_page_with_two_words_is_not_blank() -> None:
    c = synth.Canvas(300)
    c.line("Trang 2")
    assert not blank.is_blank(np.asarray(synth.degrade(c.page("text"), synth.Scan(noise=6))), 300)


@pytest.mark.parametrize("angle, scale, quarter_turn", [
    (7.0, 2 / 3, False), (-5.0, 1.0, True), (0.0, 0.5, False), (10.0, 2 / 3, True)])
def test_a_box_is_found_where_the_straightening_put_it(angle: float, scale: float,
                                                       quarter_turn: bool) -> None:
    # Given a page with one black square, turned, scaled and perhaps given a quarter turn
    from PIL import Image

    page = Image.new("L", (1000, 1400), 255)
    page.paste(0, (600, 200, 700, 300))
    out = deskew.rotate(page, angle, scale)
    if quarter_turn:
        out = out.transpose(Image.ROTATE_90)
    # When the square's box is carried over
    x0, y0, x1, y1 = deskew.box_after((600, 200, 700, 300), page.size, angle, scale, quarter_turn)
    # Then it holds the square as drawn, to the pixel
    ys, xs = np.nonzero(np.asarray(out) < 128)
    assert (x0 <= xs.min() <= x0 + 1, y0 <= ys.min() <= y0 + 1) == (True, True)
    assert (x1 - 2 <= xs.max() <= x1, y1 - 2 <= ys.max() <= y1) == (True, True)


def test_a_code_found_on_the_straightened_page_is_placed_on_the_scan() -> None:
    # Given a scan of a page with a Code 128 at a known place, skewed by 8 degrees
    from PIL import Image

    from ingest.page_stages import ReadBarcodes, Straighten
    from ingest.stages import PageWork

    page = Image.new("L", (2480, 3508), 255)
    code = synth.code128("000.00.04.H40-230414-0002", 300)
    page.paste(code, (300, 400))
    drawn = (300, 400, 300 + code.width, 400 + code.height)
    scan = deskew.rotate(page, 8.0)
    text = synth.text_page(synth.corpus_paragraphs()[:6], 300)[0].image  # lines to deskew by
    scan.paste(deskew.rotate(text, 8.0).crop((0, 1200, 2480, 3300)), (0, 1200))
    work = PageWork("test", 0, scan, 300)
    # When it is straightened and its codes read there
    Straighten()(work)
    ReadBarcodes(retry=True)(work)
    # Then the code's box is given on the scan, centred where the code is on it (to 1 mm;
    # the straightened page's box only scaled would be 190 pixels off)
    (found,) = work.facts.barcodes
    x0, y0, x1, y1 = found.box
    ex0, ey0, ex1, ey1 = deskew.box_after(drawn, page.size, 8.0)
    assert abs((x0 + x1) / 2 - (ex0 + ex1) / 2) <= 12 and abs((y0 + y1) / 2 - (ey0 + ey1) / 2) <= 12


@pytest.mark.parametrize("sideways", [False, True])
def test_a_blurred_code_skewed_past_a_scan_line_is_read_at_the_scan_resolution(
        sideways: bool) -> None:
    # Given a 300-dpi receipt scanned skewed by 10 degrees (perhaps fed in sideways), blurred
    # and noisy as the benchmark's: no scan line crosses all its bars, and at 200 dpi its bars
    # run together
    from ingest.page_stages import ReadBarcodes, Straighten
    from ingest.stages import PageWork

    code = "000.00.11.H37-230408-6688"
    page = synth.receipt(code, synth.receipt_fields(3), 300)
    scan = synth.degrade(page, synth.Scan(skew=-10.0, noise=5.0, blur=0.7))
    expected = deskew.box_after(upright_box(page), page.image.size, -10.0)
    if sideways:  # turned a quarter counter-clockwise: (x, y) -> (y, width - x)
        x0, y0, x1, y1 = expected
        scan, expected = scan.rotate(90, expand=True), (y0, scan.width - x1, y1, scan.width - x0)
    work = PageWork("test", 0, scan, 300)
    ReadBarcodes()(work)
    assert work.facts.barcodes == []
    # When it is straightened (to 200 dpi) and its codes looked for again
    Straighten()(work)
    ReadBarcodes(retry=True)(work)
    # Then the code is read, and placed on the scan where the scanner put it (to 1 mm)
    (found,) = work.facts.barcodes
    assert (found.value, found.symbology) == (code, "Code128")
    (ex0, ey0, ex1, ey1), (fx0, fy0, fx1, fy1) = expected, found.box
    assert abs((fx0 + fx1) / 2 - (ex0 + ex1) / 2) <= 12 and abs((fy0 + fy1) / 2 - (ey0 + ey1) / 2) <= 12


@pytest.mark.parametrize("turn", [0, 90, 270])
def test_a_code_the_first_pass_reads_not_is_read_after_the_straightening(turn: int) -> None:
    # Given an unskewed 300-dpi receipt with a QR code, and a Code 128 printed up the page
    # (turn 0), or the receipt fed in sideways (its bars then run across the scan)
    from PIL import Image

    from ingest.page_stages import ReadBarcodes, Straighten
    from ingest.stages import PageWork

    code = "000.00.11.H37-230408-6688"
    page = synth.receipt(code, synth.receipt_fields(3), 300, "qr").image.convert("L")
    bars = synth.code128(code, 300)
    if turn == 0:
        bars = bars.transpose(Image.ROTATE_90)
    page.paste(bars, (2480 - bars.width - 60, 1500))
    scan = page.rotate(turn, expand=True) if turn else page
    work = PageWork("test", 0, scan, 300)
    # When its codes are read as scanned, then once more after it is straightened
    ReadBarcodes()(work)
    first = [b.symbology for b in work.facts.barcodes]
    Straighten()(work)
    ReadBarcodes(retry=True)(work)
    # Then the first pass read the QR code only, and the second added the Code 128 beside it
    assert first == ["QRCode"]
    assert sorted((b.symbology, b.value) for b in work.facts.barcodes)[0] == ("Code128", code)
    assert len(work.facts.barcodes) == 2


def test_a_code_cut_by_the_scans_edge_leaves_the_page_read_without_it() -> None:
    # Given a page skewed 10 degrees whose Code 128 hangs off its top left corner
    from PIL import Image

    from ingest.page_stages import ReadBarcodes, Straighten
    from ingest.stages import PageWork

    page = Image.new("L", (2480, 3508), 255)
    page.paste(synth.code128("000.00.04.H40-230414-0002", 300), (-400, -20))
    text = synth.text_page(synth.corpus_paragraphs()[:6], 300)[0].image.convert("L")
    page.paste(text.crop((0, 1200, 2480, 3300)), (0, 1200))
    work = PageWork("test", 0, deskew.rotate(page, 10.0), 300)
    # When its codes are looked for, before and after it is straightened
    for stage in (ReadBarcodes(), Straighten(), ReadBarcodes(retry=True)):
        stage(work)
    # Then the page is straightened and carries no code: what is left of it reads as nothing
    assert (round(work.facts.skew), work.facts.barcodes) == (10, [])


def upright_box(page: synth.Page) -> tuple[int, int, int, int]:
    """Where the page's code is before the scanner skews it."""
    (found,) = barcodes.read(np.asarray(page.image.convert("L")))
    return found.box


@pytest.mark.parametrize("angle", [-8.0, 3.0])
def test_resampled_near_its_ink_a_page_gives_ocr_the_same_part_to_read(prose_page,
                                                                       angle: float) -> None:
    # Given a prose page at 200 dpi with wide margins, scanned skewed, and a mark in a corner
    from PIL import Image

    from ocr import tesseract

    scan = synth.degrade(prose_page, synth.Scan(skew=angle, noise=6, blur=0.8))
    scan.paste(0, (1500, 2100, 1510, 2110))
    reach = round((tesseract.CROP_MARGIN_MM + 1) * 200 / 25.4)
    # When it is straightened whole, and only within the crop's reach of its ink
    whole = deskew.rotate(scan, -angle)
    near = deskew.rotate(scan, -angle, ink_margin=reach)
    # Then OCR reads the same box in both, the same pixels to OpenCV's rounding, mark included
    (a, at), (b, bt) = tesseract.crop_to_content(whole, 200), tesseract.crop_to_content(near, 200)
    assert at == bt and a.size == b.size
    assert np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max() <= 1
    assert a.size[0] * a.size[1] < 0.9 * scan.width * scan.height  # a crop, not the page
    # And beyond that box the page is plain paper
    outside = np.asarray(near).copy()
    outside[bt[1]:bt[1] + b.height, bt[0]:bt[0] + b.width] = 255
    assert outside.min() >= 200
    assert isinstance(near, Image.Image) and near.size == scan.size


def test_a_page_whose_ink_fills_it_is_resampled_whole() -> None:
    # Given a page covered edge to edge with a dark pattern
    from PIL import Image

    page = Image.fromarray(np.tile(np.array([[0, 255], [255, 0]], np.uint8), (300, 200)))
    # When it is straightened within a margin of its ink
    near, whole = deskew.rotate(page, 4.0, ink_margin=20), deskew.rotate(page, 4.0)
    # Then it is the page turned whole
    assert np.array_equal(np.asarray(near), np.asarray(whole))

"""Decoding what scanners write, and refusing what cannot be digitized with a clear error."""

import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import simplejpeg
from PIL import Image

from ocr.decode import DecodeLimits, open_document, page_weights
from ocr.errors import (
    CorruptPage,
    EmptyDocument,
    EncryptedDocument,
    ImageBomb,
    NotADocument,
    TruncatedDocument,
)


def first_page(path: Path):
    doc = open_document(path)
    try:
        return doc.page_count, doc.page(0)
    finally:
        doc.close()


@pytest.mark.parametrize("name", ["ccitt.pdf", "jbig2.pdf"])
def test_one_bit_scans_are_decoded_from_their_embedded_image(samples: Path, name: str) -> None:
    count, page = first_page(samples / "ocrmypdf" / name)
    assert (count, page.image.mode, page.dpi, page.origin) == (1, "1", 300, "embedded image")
    assert page.image.size == (2550, 3300)


def test_jpeg_pdf_page_keeps_its_pixels(samples: Path) -> None:
    _, page = first_page(samples / "ocrmypdf" / "francais.pdf")
    assert page.image.mode == "L" and page.dpi == 300


def test_non_square_resolution_is_resampled_to_square(samples: Path) -> None:
    _, page = first_page(samples / "ocrmypdf" / "aspect.pdf")
    w_in, h_in = page.image.width / page.dpi, page.image.height / page.dpi
    assert (round(w_in, 2), round(h_in, 2)) == (5.0, 4.0)


def test_extreme_resolution_is_reduced_for_ocr(samples: Path) -> None:
    _, page = first_page(samples / "ocrmypdf" / "2400dpi.pdf")
    assert page.dpi == 300 and page.image.size == (500, 358)


def test_junk_before_the_pdf_header_is_repaired(samples: Path) -> None:
    count, page = first_page(samples / "paperless-ngx" / "invalid_pdf.pdf")
    assert count == 2 and page.image.width > 1000


def test_pdf_with_a_text_layer_is_rasterized_and_flagged(samples: Path) -> None:
    _, page = first_page(samples / "paperless-ngx" / "simple.pdf")
    assert page.has_text_layer and page.origin == "rasterized"


def test_tiff_frames_with_alpha_are_flattened_on_white(samples: Path) -> None:
    doc = open_document(samples / "paperless-ngx" / "patch-code-t-middle-alpha.tiff")
    assert doc.page_count == 3
    img = doc.page(1).image
    assert img.mode in ("RGB", "L") and img.getpixel((5, 5)) in (255, (255, 255, 255))


def test_image_without_dpi_gets_a_fallback(tmp_path: Path) -> None:
    path = tmp_path / "no-dpi.png"
    Image.new("L", (1654, 2339), 255).save(path)  # A4-shaped, so taken as A4: 200 dpi
    assert first_page(path)[1].dpi == 200


def test_small_image_without_dpi_uses_the_configured_fallback(samples: Path) -> None:
    _, page = first_page(samples / "paperless-ngx" / "simple.png")
    assert page.dpi == 300 and page.image.mode == "RGB"


def test_encrypted_pdf_is_refused_as_encrypted(samples: Path) -> None:
    with pytest.raises(EncryptedDocument):
        open_document(samples / "paperless-ngx" / "password-is-test.pdf")


def test_header_only_pdf_is_refused(samples: Path) -> None:
    with pytest.raises(TruncatedDocument):
        open_document(samples / "ocrmypdf" / "invalid.pdf")


def test_empty_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty.pdf").write_bytes(b"")
    with pytest.raises(EmptyDocument):
        open_document(tmp_path / "empty.pdf")


def test_a_file_that_is_not_a_document_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.pdf").write_text("hello, this is not a scan")
    with pytest.raises(NotADocument):
        open_document(tmp_path / "notes.pdf")


def test_truncated_jpeg_is_refused(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.new("L", (800, 800), 128).save(buf, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[:300])
    with pytest.raises(TruncatedDocument):
        first_page(tmp_path / "cut.jpg")


def png_header_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge image: a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) \
        + chunk(b"IEND", b"")


def test_image_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    (tmp_path / "bomb.png").write_bytes(png_header_claiming(100_000, 100_000))
    with pytest.raises(ImageBomb):
        first_page(tmp_path / "bomb.png")


def test_pdf_page_too_large_to_rasterize_is_refused(tmp_path: Path) -> None:
    import pikepdf

    pdf = pikepdf.new()
    pdf.add_blank_page(page_size=(14000, 14000))  # 194 inches square
    pdf.save(tmp_path / "huge.pdf")
    doc = open_document(tmp_path / "huge.pdf", DecodeLimits())
    with pytest.raises(ImageBomb):
        doc.page(0)


def test_pages_are_decoded_one_at_a_time(tmp_path: Path) -> None:
    frames = [Image.new("L", (1000, 1400), v) for v in (10, 120, 250)]
    frames[0].save(tmp_path / "three.tiff", save_all=True, append_images=frames[1:], dpi=(200, 200))
    doc = open_document(tmp_path / "three.tiff")
    assert doc.page_count == 3
    assert [doc.page(i).image.getpixel((0, 0)) for i in (2, 0)] == [250, 10]


def test_flate_image_pdf_is_decoded_losslessly(tmp_path: Path) -> None:
    import img2pdf

    src = Image.new("L", (1654, 2339), 255)
    src.paste(0, (100, 100, 400, 130))
    buf = io.BytesIO()
    src.save(buf, "PNG", dpi=(200, 200))
    (tmp_path / "flate.pdf").write_bytes(img2pdf.convert(buf.getvalue()))
    _, page = first_page(tmp_path / "flate.pdf")
    assert (page.origin, page.dpi) == ("embedded image", 200)
    assert page.image.tobytes() == src.tobytes()


def test_half_written_scan_is_refused_as_truncated(tmp_path: Path) -> None:
    import img2pdf

    pages = []
    for shade in (40, 90, 140):
        buf = io.BytesIO()
        Image.new("L", (1654, 2339), shade).save(buf, "JPEG", dpi=(200, 200))
        pages.append(buf.getvalue())
    whole = img2pdf.convert(pages)
    (tmp_path / "half.pdf").write_bytes(whole[: len(whole) // 2])  # the scanner was still writing
    with pytest.raises(TruncatedDocument):
        open_document(tmp_path / "half.pdf")


def test_dense_pages_weigh_more_than_blank_ones_so_they_start_first() -> None:
    """Given the bundled sample batch (receipts, an ID copy, text pages and a blank backside),
    when pages are weighed for scheduling, then the blank page weighs least and a PDF-less
    input (or a broken one) gets no weights, so it keeps its order."""
    weights = page_weights(Path(__file__).resolve().parents[1] / "examples" / "sample-batch.pdf")
    assert len(weights) == 7
    assert min(weights) == weights[3]  # the blank backside
    assert page_weights(Path(__file__)) == []


def _grey_jpeg_pdf(path: Path, cut: int = 0) -> bytes:
    """A one-page PDF of a grey 200-dpi JPEG scan with a few marks (less `cut` bytes at its end);
    returns the JPEG as written."""
    import img2pdf

    src = Image.new("L", (1654, 2339), 250)
    for y in range(200, 2000, 120):
        src.paste(30, (150, y, 1400, y + 25))
    buf = io.BytesIO()
    src.save(buf, "JPEG", quality=85, dpi=(200, 200))
    jpeg = buf.getvalue()
    path.write_bytes(img2pdf.convert(jpeg[:len(jpeg) - cut] if cut else jpeg))
    return jpeg


def test_a_grey_jpeg_scan_comes_with_its_pixels_as_pillow_decodes_them(tmp_path: Path) -> None:
    # Given a PDF whose page is a grey JPEG scan
    jpeg = _grey_jpeg_pdf(tmp_path / "grey.pdf")
    # When its page is decoded
    _, page = first_page(tmp_path / "grey.pdf")
    # Then the page carries its pixels as an array (the stages read it without a copy), the
    # same pixels as its image and as Pillow's own decoding, and its JPEG as it came
    assert page.pixels is not None and page.jpeg == jpeg
    assert page.pixels.tobytes() == page.image.tobytes() == Image.open(io.BytesIO(jpeg)).tobytes()


def test_a_grey_jpeg_scan_cut_short_fails_as_corrupt_not_drawn_in_part(tmp_path: Path) -> None:
    # Given a PDF whose grey JPEG scan lost its last kilobytes (and its end marker)
    _grey_jpeg_pdf(tmp_path / "cut.pdf", cut=2000)
    # When its page is decoded
    doc = open_document(tmp_path / "cut.pdf")
    try:
        # Then it fails as corrupt, with why: neither decoder makes up its last rows, nor does
        # poppler draw the rows there are as a whole page
        with pytest.raises(CorruptPage, match="DCT stream is cut short"):
            doc.page(0)
    finally:
        doc.close()


def test_a_grey_jpeg_the_fast_decoder_refuses_is_decoded_as_opencv_decodes_it(
        tmp_path: Path) -> None:
    # Given a grey JPEG scan whose data was damaged in its middle (its end marker kept), which
    # simplejpeg refuses outright
    jpeg = bytearray(_grey_jpeg_pdf(tmp_path / "whole.pdf"))
    jpeg[len(jpeg) // 2:len(jpeg) // 2 + 64] = bytes(64)
    with pytest.raises(ValueError):
        simplejpeg.decode_jpeg(bytes(jpeg), colorspace="GRAY")
    import img2pdf

    (tmp_path / "damaged.pdf").write_bytes(img2pdf.convert(bytes(jpeg)))
    # When its page is decoded
    _, page = first_page(tmp_path / "damaged.pdf")
    # Then it comes with the pixels OpenCV makes of it, as before the fast decoder was used
    expected = cv2.imdecode(np.frombuffer(bytes(jpeg), np.uint8), cv2.IMREAD_UNCHANGED)
    assert page.pixels is not None and np.array_equal(page.pixels, expected)


def test_a_colour_jpeg_under_a_grey_colour_space_stays_colour(tmp_path: Path) -> None:
    # Given a PDF that declares DeviceGray for a page whose JPEG has three components
    import pikepdf

    buf = io.BytesIO()
    Image.new("RGB", (600, 800), (200, 40, 40)).save(buf, "JPEG", quality=90)
    pdf = pikepdf.new()
    pdf.add_blank_page(page_size=(288, 384))
    image = pikepdf.Stream(pdf, buf.getvalue(), Type=pikepdf.Name.XObject,
                           Subtype=pikepdf.Name.Image, Width=600, Height=800,
                           ColorSpace=pikepdf.Name.DeviceGray, BitsPerComponent=8,
                           Filter=pikepdf.Name.DCTDecode)
    page = pdf.pages[0]
    page.Resources = pikepdf.Dictionary(XObject=pikepdf.Dictionary(Im0=image))
    page.Contents = pikepdf.Stream(pdf, b"q 288 0 0 384 0 0 cm /Im0 Do Q")
    pdf.save(tmp_path / "mislabelled.pdf")
    # When its page is decoded
    _, decoded = first_page(tmp_path / "mislabelled.pdf")
    # Then it is not made grey on the way (the fast grey decoder is for grey JPEGs only)
    assert decoded.image.mode == "RGB"

"""Open what a scanner wrote (PDF, multi-page TIFF, JPEG, PNG) and hand out one page image at a time.

A 300-page batch must never sit decoded in memory: `Document.page(n)` decodes page n only.
Image-only PDF pages give up their embedded image as is (JPEG, CCITT G4, JBIG2, Flate); anything else
is rasterized by poppler at `raster_dpi`. Every decoded page comes out at a square resolution.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import pikepdf
import simplejpeg
from pdf2image import convert_from_path
from pdf2image.exceptions import PDFPageCountError, PDFPopplerTimeoutError, PDFSyntaxError
from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

from ocr.errors import (
    CorruptPage,
    DocumentError,
    EmptyDocument,
    EncryptedDocument,
    ImageBomb,
    NotADocument,
    PageTooComplex,
    PageTooSmall,
    TooManyPages,
    TruncatedDocument,
)

A4_WIDTH_IN = 8.27


@dataclass(frozen=True)
class DecodeLimits:
    max_pixels: int = 150_000_000  # one page, after decoding; ~ A0 at 300 dpi
    max_page_inches: float = 120.0  # longest side of a PDF page to rasterize
    fallback_dpi: int = 300  # for images that say nothing and do not look like A4
    raster_dpi: int = 300
    max_dpi: int = 400  # above this, pages are reduced to raster_dpi: OCR gains nothing
    min_dpi: int = 150  # below this, pages are enlarged for OCR
    max_pages: int = 2000  # a longer file is refused: it would hold every worker for hours
    render_seconds: float = 60.0  # poppler drawing one page; past it the page fails as too_complex


@dataclass
class PageImage:
    """A decoded page: 'L', 'RGB' or '1' mode, square `dpi`."""

    image: Image.Image
    dpi: int
    origin: str  # how it was obtained: embedded image, rasterized, image file
    has_text_layer: bool = False
    jpeg: bytes | None = None  # the image's own JPEG data, when a PDF can draw it as it came
    pixels: np.ndarray | None = None  # `image`'s own pixels, when decoding gave them (shared)


class Document(Protocol):
    page_count: int

    def page(self, index: int) -> PageImage: ...

    def close(self) -> None: ...


def sniff(head: bytes) -> str:
    """The container format from the first bytes; junk before `%PDF` is tolerated (and repaired)."""
    if not head:
        raise EmptyDocument("the file is empty")
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "tiff"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if b"%PDF-" in head[:1024]:
        return "pdf"
    raise NotADocument("not a PDF, TIFF, JPEG or PNG file")


def open_document(path: Path, limits: DecodeLimits | None = None) -> Document:
    limits = limits or DecodeLimits()
    with path.open("rb") as f:
        kind = sniff(f.read(1024))
    if kind == "pdf":
        return PdfDocument(path, limits)
    return ImageDocument(path, limits)


# ---- shared page normalization ----------------------------------------------------------------


def to_page_mode(img: Image.Image) -> Image.Image:
    """Flatten alpha onto white paper and reduce exotic modes to 1, L or RGB."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(paper, rgba).convert("RGB")
    if img.mode in ("1", "L", "RGB"):
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        return img.point(lambda v: v / 256).convert("L")
    if img.mode == "CMYK":
        return img.convert("RGB")
    if img.mode == "P":
        return img.convert("RGB")
    return img.convert("RGB")


MIN_PAGE_SIDE = 32  # pixels: below this no line of text or code fits (8 pt is ~22 px at 200 dpi)


def check_readable(img: Image.Image, index: int) -> None:
    """Refuses a page too small to read, before any image code chokes on it."""
    if min(img.size) < MIN_PAGE_SIDE:
        raise PageTooSmall(f"page {index} is {img.width}x{img.height} pixels: too small to read")


def normalize_resolution(img: Image.Image, dpi_x: float, dpi_y: float, limits: DecodeLimits
                         ) -> tuple[Image.Image, int]:
    """Square pixels at an OCR-friendly resolution; the physical page size is preserved."""
    target = max(dpi_x, dpi_y)
    if target > limits.max_dpi or target < limits.min_dpi:
        target = limits.raster_dpi
    width = max(1, round(img.width * target / dpi_x))
    height = max(1, round(img.height * target / dpi_y))
    if (width, height) != img.size:
        if width * height > limits.max_pixels:
            raise ImageBomb(f"page would be {width}x{height} pixels at {target:.0f} dpi")
        resample = Image.LANCZOS if img.mode != "1" else Image.NEAREST
        src = img if img.mode != "1" or target < max(dpi_x, dpi_y) else img.convert("L")
        img = src.resize((width, height), resample)
    return img, round(target)


def guess_dpi(img: Image.Image, limits: DecodeLimits) -> tuple[float, float]:
    """The image's own DPI, or a guess: an A4-shaped image is taken as A4, else the fallback."""
    dpi = img.info.get("dpi")
    if dpi and all(isinstance(v, int | float) and v >= 50 for v in dpi[:2]):
        return float(dpi[0]), float(dpi[1])
    w, h = sorted(img.size)
    if 1.30 < h / w < 1.50 and w >= 600:  # A4 / Letter portrait or landscape
        return (w / A4_WIDTH_IN,) * 2
    return (float(limits.fallback_dpi),) * 2


# ---- images -------------------------------------------------------------------------------------


class ImageDocument:
    """TIFF (multi-page, with or without alpha), JPEG, PNG."""

    def __init__(self, path: Path, limits: DecodeLimits) -> None:
        self._limits = limits
        Image.MAX_IMAGE_PIXELS = limits.max_pixels
        try:
            self._img = Image.open(path)
            self.page_count = getattr(self._img, "n_frames", 1)
        except Image.DecompressionBombError as e:
            raise ImageBomb(str(e)) from e
        except (UnidentifiedImageError, OSError, SyntaxError) as e:
            raise TruncatedDocument(f"cannot read the image: {e}") from e

    def page(self, index: int) -> PageImage:
        try:
            self._img.seek(index)
            frame = self._img.copy()
            if frame.width * frame.height > self._limits.max_pixels:
                raise ImageBomb(f"page {index} is {frame.width}x{frame.height} pixels")
            frame = ImageOps.exif_transpose(frame) if index == 0 else frame
            frame.load()
        except Image.DecompressionBombError as e:
            raise ImageBomb(str(e)) from e
        except (OSError, SyntaxError, ValueError) as e:
            raise TruncatedDocument(f"page {index} cannot be decoded: {e}") from e
        dpi_x, dpi_y = guess_dpi(self._img, self._limits)
        img, dpi = normalize_resolution(to_page_mode(frame), dpi_x, dpi_y, self._limits)
        return PageImage(img, dpi, f"{(self._img.format or 'image').lower()} frame")

    def close(self) -> None:
        self._img.close()


# ---- PDF --------------------------------------------------------------------------------------


class PdfDocument:
    """PDF pages: the embedded scan when a page is one image, else a poppler rendering."""

    def __init__(self, path: Path, limits: DecodeLimits) -> None:
        self._limits = limits
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._pdf = self._open(path)
        self.page_count = len(self._pdf.pages)
        if self.page_count == 0:
            raise TruncatedDocument("the PDF has no pages")

    def _open(self, path: Path) -> pikepdf.Pdf:
        try:
            pdf = pikepdf.open(path)
        except pikepdf.PasswordError as e:
            raise EncryptedDocument("the PDF is encrypted with a password") from e
        except pikepdf.PdfError as e:
            reason = str(e).replace(str(path), "").strip(" :")
            raise TruncatedDocument(f"the PDF is damaged beyond repair ({reason})") from e
        if pdf.is_encrypted and not pdf.allow.extract:
            pass  # owner-password-only PDFs open fine; we only read them
        self._path = path
        with path.open("rb") as f:
            if not f.read(5).startswith(b"%PDF-"):  # junk before the header: poppler needs it clean
                self._tmp = tempfile.TemporaryDirectory(prefix="sohoa-repair-")
                self._path = Path(self._tmp.name) / "repaired.pdf"
                pdf.save(self._path)
        return pdf

    def page(self, index: int) -> PageImage:
        page = self._pdf.pages[index]
        has_text = _has_text(page)
        try:
            embedded, trouble = self._embedded_image(page, index), None
        except _DamagedStream as e:
            raise CorruptPage(f"page {index}: {e}") from e
        except _Undecodable as e:
            embedded, trouble = None, str(e)
        if embedded is not None:
            img, pixels, dpi_x, dpi_y = embedded
            page_img, dpi = normalize_resolution(to_page_mode(img), dpi_x, dpi_y, self._limits)
            if page_img is not img:
                return PageImage(page_img, dpi, "embedded image", has_text)
            return PageImage(img, dpi, "embedded image", has_text, _drawable_jpeg(page, img.mode),
                             pixels)
        img = self._rasterize(page, index)
        if trouble and img.convert("L").getextrema()[0] > 200:
            # poppler could not draw the scan either (it paints what it cannot decode white):
            # a failed page with its reason, not a blank one dropped in silence
            raise CorruptPage(f"page {index}: {trouble}")
        return PageImage(img, self._limits.raster_dpi, "rasterized", has_text)

    def _embedded_image(self, page: pikepdf.Page, index: int
                        ) -> tuple[Image.Image, np.ndarray | None, float, float] | None:
        """The page's only image if it covers the page, un-rotated by /Rotate, and its pixels
        as an array when they were decoded into one; None to rasterize."""
        try:
            images = list(page.get_images(recursive=False).values())
            if len(images) != 1 or _has_forms(page):
                return None
            pdfimage = pikepdf.PdfImage(images[0])
            w_px, h_px = pdfimage.width, pdfimage.height
            if w_px * h_px > self._limits.max_pixels:
                raise ImageBomb(f"embedded image is {w_px}x{h_px} pixels")
            box = page.cropbox
            w_in, h_in = float(box[2] - box[0]) / 72, float(box[3] - box[1]) / 72
            if w_in <= 0 or h_in <= 0 or abs((w_px / h_px) / (w_in / h_in) - 1) > 0.03:
                return None
        except ImageBomb:
            raise
        except Exception:  # an odd page structure: poppler draws it
            return None
        filters = _filters(images[0])
        if filters == "CCITT" and (damage := self._ccitt_damage(index)):
            raise _DamagedStream(f"CCITT stream cannot be decoded ({damage})")
        pixels = _grey_jpeg_pixels(images[0], w_px, h_px)
        if pixels is not None:  # Pillow's image over the array: no copy for the stages' arrays
            img = Image.frombuffer("L", (w_px, h_px), pixels, "raw", "L", 0, 1)
        else:
            try:
                img = pdfimage.as_pil_image()
                img.load()  # decode now: PIL decodes lazily, and would fail later, anywhere
            except OSError as e:
                if "truncated" in str(e):  # Pillow ran out of data before the last rows:
                    # poppler would draw the rows there are, and the page pass for whole
                    raise _DamagedStream(f"{filters} stream is cut short (its last rows are "
                                         f"missing)") from e
                raise _Undecodable(f"{filters} stream cannot be decoded ({type(e).__name__})") from e
            except Exception as e:  # codec trouble: poppler gets a try before we give up
                raise _Undecodable(f"{filters} stream cannot be decoded ({type(e).__name__})") from e
        rotate = int(page.obj.get("/Rotate", 0)) % 360
        if rotate:
            img, pixels = img.rotate(-rotate, expand=True), None
        dpi_x, dpi_y = w_px / w_in, h_px / h_in
        if rotate in (90, 270):
            dpi_x, dpi_y = dpi_y, dpi_x
        return img, pixels, dpi_x, dpi_y

    def _ccitt_damage(self, index: int) -> str | None:
        """What poppler finds wrong in the CCITT data of page `index`, or None if nothing.

        Pillow decodes CCITT with libtiff, which stops at damaged data and still reports success
        once it has decoded a row (and says nothing at all when garbage happens to read as an end
        of block): the rows it could not decode come out white, and a garbage scan passes for a
        blank page. Poppler's decoder names every bad code and every row of the wrong length on
        stderr; drawing the page at 2 dpi makes it decode the whole image, in milliseconds."""
        seconds = self._limits.render_seconds
        try:
            drawn = subprocess.run(["pdftoppm", "-r", "2", "-f", str(index + 1), "-l", str(index + 1),
                                    str(self._path)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, timeout=seconds, check=False)
        except subprocess.TimeoutExpired as e:  # run() has killed pdftoppm and waited for it
            raise PageTooComplex(f"page {index} took longer than {seconds:g} s to draw") from e
        for line in drawn.stderr.decode(errors="replace").splitlines():
            if "CCITTFax" in line:  # e.g. "Syntax Error (586): Bad two dim code (0000) in CCITTFax stream"
                return line.split(": ", 1)[-1]
        return None

    def _rasterize(self, page: pikepdf.Page, index: int) -> Image.Image:
        box = page.cropbox
        w_in, h_in = float(box[2] - box[0]) / 72, float(box[3] - box[1]) / 72
        if max(w_in, h_in) > self._limits.max_page_inches:
            raise ImageBomb(f"page {index} is {w_in:.0f}x{h_in:.0f} inches")
        dpi = self._limits.raster_dpi
        if w_in * h_in * dpi * dpi > self._limits.max_pixels:
            raise ImageBomb(f"page {index} would be {w_in * dpi:.0f}x{h_in * dpi:.0f} pixels")
        seconds = self._limits.render_seconds
        try:
            # pdftoppm runs as a child process; past `timeout` pdf2image kills it and waits for it
            pages = convert_from_path(self._path, dpi=dpi, first_page=index + 1,
                                      last_page=index + 1, timeout=seconds)
        except PDFPopplerTimeoutError as e:
            raise PageTooComplex(f"page {index} took longer than {seconds:g} s to draw") from e
        except (PDFPageCountError, PDFSyntaxError) as e:
            raise TruncatedDocument(f"page {index} cannot be rendered: {e}") from e
        if not pages:
            raise TruncatedDocument(f"page {index} cannot be rendered")
        return to_page_mode(pages[0])

    def close(self) -> None:
        self._pdf.close()
        if self._tmp is not None:
            self._tmp.cleanup()


class _Undecodable(Exception):
    """The page's scan did not decode here; poppler may still draw it."""


class _DamagedStream(Exception):
    """Poppler read the scan's data and found it damaged (e.g. bad CCITT codes): drawing it would
    give a few rows of noise, then white paper, so the page fails at once."""


def _drawable_jpeg(page: pikepdf.Page, mode: str) -> bytes | None:
    """The JPEG data of the page's one image when a PDF/A page can draw it unchanged: baseline or
    progressive DCT, grey or RGB, nothing that changes its pixels on the way (no /Decode, mask,
    or turn of the page). The stored page then keeps the scanner's own bytes: no second JPEG
    generation, no encoding time (BENCHMARKS.md)."""
    if int(page.obj.get("/Rotate", 0)) % 360:
        return None
    (image,) = page.get_images(recursive=False).values()
    return bytes(image.read_raw_bytes()) if _plain_jpeg(image, mode) else None


def _plain_jpeg(image: pikepdf.Object, mode: str) -> bool:
    """A JPEG of 8-bit grey ("L") or RGB pixels, drawn as decoded: nothing on the way changes
    them (no /Decode, mask or parameters)."""
    return (image.get("/Filter") == pikepdf.Name.DCTDecode
            and image.get("/ColorSpace") == {"L": pikepdf.Name.DeviceGray,
                                             "RGB": pikepdf.Name.DeviceRGB}.get(mode)
            and image.get("/BitsPerComponent") == 8
            and not any(k in image for k in ("/Decode", "/DecodeParms", "/SMask", "/Mask")))


def _grey_jpeg_pixels(image: pikepdf.Object, width: int, height: int) -> np.ndarray | None:
    """A plain greyscale JPEG (the common scan) decoded straight into an array (the same
    libjpeg-turbo pixels as Pillow's): NumPy reading a Pillow image copies it, as long as
    decoding it (BENCHMARKS.md). By simplejpeg, whose libjpeg-turbo decodes an A4 page at 300
    dpi in 17.5 ms where OpenCV's took 23 (the same pixels; BENCHMARKS.md, "The start, the
    hand-over and the end"); by OpenCV what simplejpeg refuses. None for anything else, or
    what neither can decode: Pillow then decodes it, or says why not."""
    if not _plain_jpeg(image, "L"):
        return None
    raw = bytes(image.read_raw_bytes())
    if not raw.rstrip(b"\0\r\n ").endswith(b"\xff\xd9"):
        return None  # cut short: the decoders would make up the rest, Pillow refuses it (a failed page)
    try:  # a grey JPEG only: it would turn a colour one grey, where the others keep it colour
        if simplejpeg.decode_jpeg_header(raw)[2] != "Gray":
            raise ValueError("not a one-component JPEG")
        pixels = simplejpeg.decode_jpeg(raw, colorspace="GRAY")[:, :, 0]
    except ValueError:  # not one it reads (a 12-bit JPEG, a damaged one, a colour one)
        pixels = cv2.imdecode(np.frombuffer(raw, np.uint8),
                              cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    if pixels is None or pixels.shape != (height, width):  # one component, or Pillow's turn
        return None
    return pixels


def _filters(image: pikepdf.Object) -> str:
    """`DCT`, `JBIG2`, `CCITT`, `Flate`...: the image's compression, as staff and logs read it."""
    found = image.get("/Filter")
    names = [str(f) for f in found] if isinstance(found, pikepdf.Array) else \
        [str(found)] if found is not None else []
    short = (n.lstrip("/").removesuffix("Decode").removesuffix("Fax") for n in names)
    return "+".join(short) or "image"


def _has_forms(page: pikepdf.Page) -> bool:
    xobjects = page.resources.get("/XObject", {})
    return any(x.get("/Subtype") == "/Form" for x in xobjects.values())


def _has_text(page: pikepdf.Page) -> bool:
    with contextlib.suppress(Exception):
        return "/Font" in page.resources and bool(page.resources.Font.keys())
    return False


def count_pages(path: Path, limits: DecodeLimits | None = None) -> int:
    """Opens the file only to validate it and count its pages; raises a DocumentError otherwise."""
    limits = limits or DecodeLimits()
    doc = open_document(path, limits)
    try:
        count = doc.page_count
    finally:
        doc.close()
    if count > limits.max_pages:
        raise TooManyPages(f"the file has {count} pages; at most {limits.max_pages} are taken "
                           "in one batch (SOHOA_MAX_PAGES): split it")
    return count


def page_weights(path: Path) -> list[int]:
    """A cheap guess of each page's work: the compressed size of a PDF page's images (pages of
    dense text compress worst and take OCR longest), 1 for every page of other files. Runners
    start the heaviest pages first, so that no core waits alone on a long page at the end."""
    try:
        with pikepdf.open(path) as pdf:
            return [_image_bytes(page) for page in pdf.pages]
    except (pikepdf.PdfError, pikepdf.PasswordError, OSError, ValueError):
        return []


def _image_bytes(page: pikepdf.Page) -> int:
    try:
        images = page.resources.get("/XObject", {})
        return sum(int(x.get("/Length", 0)) for x in images.values()
                   if x.get("/Subtype") == "/Image") or 1
    except (AttributeError, TypeError, ValueError, pikepdf.PdfError):
        return 1


__all__ = ["DecodeLimits", "Document", "DocumentError", "PageImage", "count_pages", "open_document",
           "page_weights"]


# ---- completeness ----------------------------------------------------------------------------


CUT_TAIL = 4096  # bytes at the end of a file where its end marker must be


# Bytes per value of each TIFF field type (TIFF 6.0, section 2; 16-18: BigTIFF's 8-byte types).
_TIFF_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8,
                    16: 8, 17: 8, 18: 8}


def _tiff_directories_cut(path: Path, size: int) -> str | None:
    """Walks the chain of page directories: each must lie whole inside the file."""
    import struct

    with path.open("rb") as f:
        order = "<" if f.read(2) == b"II" else ">"
        f.seek(4)
        (offset,) = struct.unpack(order + "I", f.read(4))
        seen: set[int] = set()
        page = 0
        while offset and offset not in seen and page < 100_000:
            seen.add(offset)
            page += 1
            if offset + 2 > size:
                return f"a TIFF whose page {page} directory lies past the end"
            f.seek(offset)
            (entries,) = struct.unpack(order + "H", f.read(2))
            if offset + 2 + 12 * entries + 4 > size:
                return f"a TIFF whose page {page} directory is cut short"
            for _ in range(entries):  # values too long for their entry lie elsewhere
                _, kind, count, value = struct.unpack(order + "HHII", f.read(12))
                if count * _TIFF_TYPE_SIZES.get(kind, 1) > 4 and value + count * \
                        _TIFF_TYPE_SIZES.get(kind, 1) > size:
                    return f"a TIFF whose page {page} tag values lie past the end"
            (offset,) = struct.unpack(order + "I", f.read(4))
    return None


def _pdf_head(path: Path) -> bytes:
    """A PDF may have up to 1 KB of junk before its header (PDF 32000, annex H)."""
    with path.open("rb") as f:
        return f.read(1024)


def cut_short(path: Path) -> str | None:
    """Why a file looks cut short by its own structure (a transfer that stopped early can still
    look "complete" to the receiver), or None when it ends as its format says a file ends."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(16)
        f.seek(max(0, size - CUT_TAIL))
        tail = f.read()
    end = tail.rstrip(b"\x00\r\n\t \x1a")
    if head.startswith(b"\xff\xd8\xff"):
        return None if end.endswith(b"\xff\xd9") else "a JPEG without its end (EOI marker)"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return None if b"IEND" in tail[-64:] else "a PNG without its end (IEND chunk)"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return _tiff_cut_short(path, size)
    if b"%PDF-" not in _pdf_head(path):
        return None  # not a scan format: what it is, decoding says
    return None if b"%%EOF" in tail else "a PDF without its end (%%EOF)"


def _tiff_cut_short(path: Path, size: int) -> str | None:
    """A page directory (IFD) that reaches past the end of the file, or a page whose strips (or
    tiles) do, or that has none (a file cut inside the next page's directory still opens)."""
    if why := _tiff_directories_cut(path, size):
        return why
    try:
        with Image.open(path) as img:
            for n, frame in enumerate(ImageSequence.Iterator(img)):
                tags = frame.tag_v2
                offsets = tags.get(273) or tags.get(324) or ()
                counts = tags.get(279) or tags.get(325) or ()
                ends = [o + c for o, c in zip(offsets, counts, strict=False)]
                if not ends:
                    return f"a TIFF whose page {n + 1} has no image data"
                if max(ends) > size:
                    return f"a TIFF whose page {n + 1} lacks {max(ends) - size} bytes"
    except Exception as e:
        return f"a TIFF that cannot be read to its end ({type(e).__name__})"
    return None

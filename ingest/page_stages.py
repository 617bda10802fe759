"""The default page stages: barcodes, blank detection, orientation and deskew, 2-D codes hidden from
OCR, OCR.

Barcodes are read on the page as scanned (the readers find any rotation), before anything can blur
them. OCR decides between upright and upside down: a page read at low confidence is read again
turned 180 degrees and the better reading wins (cheaper than a separate orientation pass).

Each stage is built with what it needs of the settings (the `barcodes` or `ocr` section, or one
value of it); built without, it uses their defaults. `default_page_stages` is the list the
pipeline runs (ingest/services.py builds it from the settings).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from PIL import Image

from ingest.settings import Settings
from ingest.stages import PageStage, PageWork
from ocr import (
    barcodes,
    blank,
    deskew,
    keep_freed_buffers,
    one_thread_per_page,
    paper,
    symbologies,
    tesseract,
)
from ocr.config import BarcodeConfig, OcrConfig
from ocr.decode import DecodeLimits
from storage.records import BarcodeFact, OcrFact

_OCR = OcrConfig()  # the defaults of a stage built without its settings


def _gray(work: PageWork) -> np.ndarray:
    def make(img: Image.Image) -> np.ndarray:
        if img is work.scan.image and work.scan.pixels is not None:
            return work.scan.pixels  # decoded into an array: no copy (ocr/decode.py)
        return np.asarray(img if img.mode == "L" else img.convert("L"))

    return work.derived("gray", make)


INK_DPI = 100  # blank detection and deskew look at a colour page's ink at about this


def _ink(work: PageWork) -> tuple[np.ndarray, int]:
    """Grey in which a colour page's tint, seal and signature are paper (ocr/paper.py), and its
    resolution; a grey page's own pixels. Blank detection and deskew look at 100 dpi: a colour
    page is boxed down to about that first (Pillow, on its own pixels), so that its ink is
    worked on a ninth of the pixels at 300 dpi (BENCHMARKS.md: the office mix's peak memory)."""
    if work.image.mode == "L":
        return _gray(work), work.dpi

    def make(img: Image.Image) -> tuple[np.ndarray, int]:
        factor = max(1, work.dpi // INK_DPI) if img.mode == "RGB" else 1  # bilevel: as it is
        small = img.reduce(factor) if factor > 1 else img
        return paper.ink_gray(small), round(work.dpi / factor)

    return work.derived("ink", make)


def _overview(work: PageWork) -> tuple[np.ndarray, int]:
    """The page's ink at about 100 dpi, light flattened (ocr/paper.py overview): made once for
    blank detection and deskew."""
    return work.derived("overview", lambda _img: paper.overview(*_ink(work)))


class ReadBarcodes:
    """Barcodes as scanned, 1-D ones only as they lie (not turned a quarter: more than half of
    the reading's time on a page without codes); with `retry=True`, 1-D ones once more if none
    were found: where the straightened page shows bars, read on the scan turned upright there,
    at the scan's resolution. That finds the codes the first pass cannot: on a sideways page or
    printed up the page, and on a skewed page (a long 1-D code skewed by a few degrees leaves
    no scan line crossing all its bars). The straightened page itself is at the OCR's (200 dpi),
    where a dossier code's narrowest bars (0.25 mm) blur together: none of the benchmark's
    receipts reads there, even unskewed (BENCHMARKS.md)."""

    def __init__(self, config: BarcodeConfig | None = None, retry: bool = False) -> None:
        self.config = config or BarcodeConfig()
        self.retry = retry
        self.name = "barcodes-straightened" if retry else "barcodes"

    def __call__(self, work: PageWork) -> None:
        formats, engines = tuple(self.config.formats), tuple(self.config.engines)
        if self.retry:  # 2-D codes are found at any angle: only 1-D ones can hide
            formats = symbologies.one_d(formats)
            if not formats or any(not _two_d(b.symbology) for b in work.facts.barcodes):
                return
            found = _read_where_bars(work, engines, formats)
            if not found:
                return
        else:
            found = barcodes.read(_gray(work), engines, formats, turned=False)
            if work.image is not work.scan.image:  # run after Straighten: boxes on the scan
                found = [replace(b, box=_on_scan(work, b.box)) for b in found]
        read = [BarcodeFact.model_validate(b.to_dict()) for b in found]
        if self.retry:  # beside the 2-D codes the first pass read
            read = sorted([*work.facts.barcodes, *read], key=lambda b: (b.box or [0, 0])[1::-1])
        work.facts.barcodes = read
        separators = {s.upper() for s in [*self.config.separators,
                                          *self.config.result_separators]}
        if any(b.value.strip().upper() in separators for b in found):
            work.facts.separator = True
            work.done = True


def _read_where_bars(work: PageWork, engines: tuple[str, ...],
                     formats: tuple[str, ...]) -> list[barcodes.Barcode]:
    """The codes in the straightened page's blocks of bars (ocr.barcodes.bar_blocks), up or
    across the page, each read on its part of the scan turned upright, and given in the scan's
    pixels."""
    angle, quiet = -(work.facts.skew or 0.0), round(4 / 25.4 * work.dpi)  # 4 mm: a quiet zone
    gray = _gray(work)
    blocks = [(x0 - quiet, y0 - quiet // 4, x1 + quiet, y1 + quiet // 4)
              for x0, y0, x1, y1 in barcodes.bar_blocks(gray, work.dpi)]
    blocks += [(x0 - quiet // 4, y0 - quiet, x1 + quiet // 4, y1 + quiet)
               for x0, y0, x1, y1 in barcodes.bar_blocks(gray, work.dpi, across=True)]
    found: list[barcodes.Barcode] = []
    for block in blocks:
        left, top, right, bottom = _on_scan(work, block)
        width, height = work.scan.image.size  # (a crop past the edge would be black there)
        left, top, right, bottom = max(0, left), max(0, top), min(width, right), min(height, bottom)
        if right - left < 2 or bottom - top < 2:
            continue  # a block that falls off the scan: nothing there to read
        part = work.scan.image.crop((left, top, right, bottom))
        upright = deskew.rotate(part if part.mode == "L" else part.convert("L"), angle)
        for code in barcodes.read(np.asarray(upright), engines, formats):
            if any((code.value, code.symbology) == (f.value, f.symbology) for f in found):
                continue
            bx0, by0, bx1, by1 = deskew.box_before(code.box, part.size, angle)
            found.append(replace(code, box=(bx0 + left, by0 + top, bx1 + left, by1 + top)))
    return found


def _on_scan(work: PageWork, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """A box of the straightened page (Straighten's facts) where it lies on the scan."""
    return deskew.box_before(box, work.scan.image.size, -(work.facts.skew or 0.0),
                             work.dpi / work.scan.dpi, (work.facts.rotation or 0) == 90)


def _on_straightened(work: PageWork, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """A box of the scan where it lies on the straightened page."""
    return deskew.box_after(box, work.scan.image.size, -(work.facts.skew or 0.0),
                            work.dpi / work.scan.dpi, (work.facts.rotation or 0) == 90)


class DetectBlank:
    """A page with less ink than `ink_threshold` (the settings' `blank_ink_threshold`) and no
    barcode is blank: dropped, not read."""

    name = "blank"

    def __init__(self, ink_threshold: float = _OCR.blank_ink_threshold) -> None:
        self.ink_threshold = ink_threshold

    def __call__(self, work: PageWork) -> None:
        ink = blank.overview_ink_fraction(*_overview(work))
        work.facts.ink = round(ink, 6)
        is_blank = ink < self.ink_threshold and not work.facts.barcodes
        work.facts.blank = is_blank
        work.done = work.done or is_blank


class Straighten:
    """Quarter turns for sideways pages, then deskew (up to `max_skew_degrees`), at `read_dpi`
    (the settings' `ocr.max_dpi`) when the scan is finer: the stages after it read the page at
    that resolution, and the stored page is the scan turned by its PDF, so the page is resampled
    once, small (BENCHMARKS.md: a third of the non-OCR time of a page)."""

    name = "straighten"

    def __init__(self, max_skew_degrees: float = _OCR.max_skew_degrees,
                 read_dpi: int = _OCR.max_dpi) -> None:
        self.max_skew_degrees = max_skew_degrees
        self.read_dpi = read_dpi

    def __call__(self, work: PageWork) -> None:
        skew = deskew.detect_overview(_overview(work)[0], self.max_skew_degrees)
        scale = min(1.0, self.read_dpi / work.dpi) if self.read_dpi else 1.0
        pixels = _gray(work) if work.image.mode == "L" else None
        # Resampled only where OCR will read (its crop's margin and a millimetre): half the
        # page on the benchmark's pages, and the costliest step of a page in this process.
        reach = round((tesseract.CROP_MARGIN_MM + 1) * work.dpi * scale / 25.4)
        image = deskew.rotate(work.image, -skew.angle, scale, pixels, ink_margin=reach)
        rotation = 0
        if skew.sideways:  # a quarter turn after the deskew about the centre: the same page
            image = image.transpose(Image.ROTATE_90)
            rotation = 90
        work.image, work.dpi = image, round(work.dpi * scale)
        work.facts.rotation, work.facts.skew = rotation, round(skew.angle, 3)


class HideCodes:
    """The page's 2-D codes (QR, DataMatrix...) painted over with its paper before OCR:
    Tesseract reads their modules as lines of garbage in the text layer (on the benchmark's
    receipts, 3-5 % of a receipt's characters; BENCHMARKS.md), and spends time on them. The
    codes are read already (their values are in the facts), and the stored page still shows
    them: only the copy OCR reads is changed. 1-D codes are left: Tesseract reads no bars, and
    the number printed under them is text."""

    name = "hide-codes"
    margin_mm = 1.0  # beyond the corners zxing gives: the quiet zone, a blurred edge

    def __call__(self, work: PageWork) -> None:
        boxes = [b.box for b in work.facts.barcodes if _two_d(b.symbology)]  # on the scan
        if not boxes:
            return
        pixels = np.array(work.image)  # a copy: the stages before may share these pixels
        fill, margin = paper.colour(work.image), round(self.margin_mm / 25.4 * work.dpi)
        for box in boxes:
            x0, y0, x1, y1 = _on_straightened(work, box)
            pixels[max(0, y0 - margin):y1 + margin, max(0, x0 - margin):x1 + margin] = fill
        work.image = Image.fromarray(pixels)


def _two_d(symbology: str) -> bool:
    try:
        return symbologies.lookup(symbology).two_d
    except symbologies.UnknownSymbology:
        return False  # a name only pyzbar knows: left as it is


class Recognize:
    """Tesseract OCR in up to three readings, each only when the one before is weak:
    1. `ocr_languages` (vie): Vietnamese pages read best and fastest with vie alone;
    2. the same turned 180 degrees, below `upside_down_check_below` (fixes 180 and 90/270);
    3. `ocr_second_languages` (vie+eng), below `ocr_second_reading_below`: English pages.
    The reading with the highest confidence wins. BENCHMARKS.md has the measurements."""

    name = "ocr"

    def __init__(self, config: OcrConfig | None = None, readers: int = 1) -> None:
        self.config = config or OcrConfig()
        self.readers = readers  # pages read at once: the Tesseract children worth starting ahead

    def prepare(self) -> None:
        """Tesseract's children started, their language data loading, before the first page
        reaches them (ingest/stages.py, "Preparing")."""
        if self.config.engine == "library":
            tesseract.start_ahead(self.config.languages, self.readers)

    def release(self) -> None:
        """Tesseract's children ended once a batch's pages are read (ingest/stages.py,
        "Preparing"): the dossiers are assembled without their memory beside them."""
        tesseract.stop_readers()

    def __call__(self, work: PageWork) -> None:
        ocr = self.config
        readings: list[dict[str, object]] = []  # what ran, for the facts (BENCHMARKS.md counts them)

        def read(img: Image.Image, languages: str, turned: int = 0) -> tesseract.OcrResult:
            out = tesseract.run(img, work.dpi, languages, ocr.timeout_s, ocr.max_dpi,
                                ocr.engine, box_dpi=work.scan.dpi)
            readings.append({"languages": languages, "turned": turned,
                             "confidence": round(out.mean_confidence / 100, 3)})
            return out

        result = read(work.image, ocr.languages)
        languages = ocr.languages
        if result.mean_confidence < ocr.upside_down_check_below:
            turned = work.image.transpose(Image.ROTATE_180)
            other = read(turned, ocr.languages, 180)
            if other.mean_confidence > result.mean_confidence + 5:
                work.image, result = turned, other
                work.facts.rotation = ((work.facts.rotation or 0) + 180) % 360
        if ocr.second_languages and result.mean_confidence < ocr.second_reading_below:
            other = read(work.image, ocr.second_languages)
            if other.mean_confidence > result.mean_confidence:
                result, languages = other, ocr.second_languages
        line_conf = [0.0] * len(result.lines)
        counts = [0] * len(result.lines)
        for w in result.words:
            line_conf[w.line] += w.confidence
            counts[w.line] += 1
        work.facts.ocr = OcrFact(
            lines=result.lines,
            line_confidence=[round(c / n / 100, 3) if n else 0.0
                             for c, n in zip(line_conf, counts, strict=True)],
            confidence=round(result.mean_confidence / 100, 3),
            languages=languages,
            readings=readings,
            words=[w.to_dict() for w in result.words],
        )
        work.text_pdf = result.text_pdf


def page_stages(settings: Settings) -> list[PageStage]:
    """The page stages, each with its section (`ocr`, `barcodes`), for pages read in parallel
    over the cores (`workers`)."""
    one_thread_per_page()
    keep_freed_buffers()
    return default_page_stages(settings.ocr, settings.barcodes, settings.workers)


def decode_limits(config: OcrConfig) -> DecodeLimits:
    """What a page read may cost, from the `ocr` section."""
    return DecodeLimits(max_pixels=config.max_page_pixels, max_pages=config.max_pages,
                        fallback_dpi=config.fallback_dpi, render_seconds=config.render_seconds)


def default_page_stages(ocr: OcrConfig, barcode: BarcodeConfig,
                        workers: int = 1) -> list[PageStage]:
    """The page stages the pipeline runs, in their order, for `workers` pages at once."""
    return [ReadBarcodes(barcode), DetectBlank(ocr.blank_ink_threshold),
            Straighten(ocr.max_skew_degrees, ocr.max_dpi), ReadBarcodes(barcode, retry=True),
            HideCodes(), Recognize(ocr, workers)]

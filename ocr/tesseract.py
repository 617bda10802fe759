"""Tesseract behind one call: the page's words with boxes and confidences, and an invisible-text PDF
page (text-only PDF) to lay over the image. Two engines give the same result: libtesseract kept
loaded in a child process of the worker (ocr/tesseract_child.py, the default) or the `tesseract`
program run per page (through pytesseract; its TSV output).

Scans finer than `max_dpi` are read from a downscaled copy: Tesseract's page layout analysis costs in
proportion to the pixels, while its line recognizer rescales every text line to a fixed height anyway
(BENCHMARKS.md: 300 -> 200 dpi takes a quarter off OCR time, same accuracy down to 6 pt print). Word
boxes are given back in the input image's pixels, and the text PDF page has the same size in points.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ocr import paper, tesseract_child
from ocr import pdf as pdfmod
from ocr.errors import ToolError
from ocr.text import clean_line, nfc

# OpenMP threads make tesseract several times slower on few cores: we parallelize over pages.
os.environ.setdefault("OMP_THREAD_LIMIT", "1")


@dataclass(frozen=True)
class Word:
    text: str
    confidence: float  # 0..100
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the pixels of the image given to run()
    line: int  # index into OcrResult.lines

    def to_dict(self) -> dict[str, object]:
        return {"text": self.text, "conf": round(self.confidence, 1), "box": list(self.box),
                "line": self.line}


@dataclass
class OcrResult:
    words: list[Word]
    lines: list[str]
    text_pdf: bytes  # one page, invisible text only, sized from the image and its dpi

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @cached_property
    def mean_confidence(self) -> float:
        """Mean word confidence weighted by word length; 0 for a page without words. Asked up
        to four times a page, worked out once."""
        total = sum(len(w.text) for w in self.words)
        if not total:
            return 0.0
        return sum(w.confidence * len(w.text) for w in self.words) / total


# tessedit_do_invert=0: Tesseract 5 otherwise reads every weak line again as white-on-black.
VARIABLES = {"tessedit_do_invert": "0"}
CONFIG = "--psm 3 -c tessedit_create_tsv=1 -c textonly_pdf=1 " + " ".join(
    f"-c {k}={v}" for k, v in VARIABLES.items())
ENGINES = ("library", "cli")


def run(img: Image.Image, dpi: int, languages: str = "vie+eng", timeout: float = 300,
        max_dpi: int = 0, engine: str = "library", box_dpi: int | None = None) -> OcrResult:
    """Reads `img` (at `dpi`); with `max_dpi`, from a copy downscaled to it when the scan is finer.
    Word boxes come in the pixels of `img`, or of the same page at `box_dpi` (the scan's, when
    `img` is a smaller copy). `engine`: "library", libtesseract kept loaded
    (ocr/tesseract_child.py), or "cli", one `tesseract` program run per call. Both give the same
    result."""
    src_img, scale = downscale(img, dpi, max_dpi)
    ocr_dpi = max_dpi if scale != 1 else dpi
    pixels = paper.for_reading(src_img, ocr_dpi)  # seal, tint, shadow, uneven light: paper
    full_size = (pixels.shape[1], pixels.shape[0])
    box = content_box(pixels, ocr_dpi) if pixels.ndim == 2 else None
    dx, dy = box[:2] if box else (0, 0)
    if box:
        pixels = pixels[box[1]:box[3], box[0]:box[2]]
    if engine == "library":
        raw, text_pdf = tesseract_child.reader().read(languages, pixels, ocr_dpi, VARIABLES,
                                                      timeout)
        rows: Iterable[Row] = ((w.line, w.text, w.confidence, w.box) for w in raw)
    elif engine == "cli":
        with tempfile.TemporaryDirectory(prefix="sohoa-ocr-") as tmp:
            src, base = Path(tmp) / "page.pnm", Path(tmp) / "out"
            write_pnm(Image.fromarray(pixels), src)  # uncompressed: the cheapest hand-over
            _run_program(src, base, languages, ocr_dpi, timeout)
            rows = tsv_rows(base.with_suffix(".tsv").read_text(encoding="utf-8"))
            text_pdf = base.with_suffix(".pdf").read_bytes()
    else:
        raise ValueError(f"unknown tesseract engine {engine!r}; one of {ENGINES}")
    if box:
        rows = ((key, text, conf, (x0 + dx, y0 + dy, x1 + dx, y1 + dy))
                for key, text, conf, (x0, y0, x1, y1) in rows)
        text_pdf = pdfmod.place_text_page(text_pdf, full_size, box, ocr_dpi)
    words, lines = group_lines(rows, (box_dpi or dpi) / ocr_dpi)
    return OcrResult(words, lines, text_pdf)


CROP_MIN_SAVING = 0.1  # of the page's area; below it the text page is not worth rewriting
CROP_MARGIN_MM = 3.0


def start_ahead(languages: str, count: int) -> None:
    """`count` library readers started ahead of the pages (ocr/tesseract_child.py)."""
    tesseract_child.start_ahead(languages, count)


def stop_readers() -> None:
    """The library readers' children ended (ocr/tesseract_child.py)."""
    tesseract_child.stop_all()


def crop_to_content(img: Image.Image, dpi: int) -> tuple[Image.Image, tuple[int, int]]:
    """The part of a grey page that holds its ink, with a margin, and its offset (x, y)
    (content_box)."""
    box = content_box(np.asarray(img), dpi) if img.mode == "L" else None
    return (img.crop(box), box[:2]) if box else (img, (0, 0))


def content_box(pixels: np.ndarray, dpi: int) -> tuple[int, int, int, int] | None:
    """The box (x0, y0, x1, y1) of a grey page's pixels that holds its ink, with a margin; None
    when it would not save enough to be worth it. Tesseract's layout analysis costs by the pixel,
    blank margins included (BENCHMARKS.md: 4.6 % of OCR time on the benchmark mix, the same
    words read). A speck is not ink: a row or column counts when it holds at least two dark
    pixels."""
    _, dark = cv2.threshold(pixels, paper.DARK, 1, cv2.THRESH_BINARY_INV)
    # Dark pixels counted per row and column by OpenCV: NumPy's count_nonzero along an axis
    # took ten times as long (6 ms of a 200-dpi page).
    rows = np.flatnonzero(cv2.reduce(dark, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel() >= 2)
    cols = np.flatnonzero(cv2.reduce(dark, 0, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel() >= 2)
    if not len(rows) or not len(cols):
        return None
    height, width = pixels.shape[:2]
    pad = round(CROP_MARGIN_MM * dpi / 25.4)
    x0, y0 = max(0, int(cols[0]) - pad), max(0, int(rows[0]) - pad)
    x1, y1 = min(width, int(cols[-1]) + 1 + pad), min(height, int(rows[-1]) + 1 + pad)
    if (x1 - x0) * (y1 - y0) > (1 - CROP_MIN_SAVING) * width * height:
        return None
    return x0, y0, x1, y1


def _run_program(src: Path, base: Path, languages: str, dpi: int, timeout: float) -> None:
    import pytesseract  # only here: it costs 60 ms of start-up (packaging), the library needs none

    try:
        pytesseract.pytesseract.run_tesseract(str(src), str(base), "pdf tsv", languages,
                                              f"--dpi {dpi} {CONFIG}", timeout=timeout)
    except pytesseract.TesseractNotFoundError as e:
        raise ToolError("tesseract", "not installed (see README: make run installs it)") from e
    except (pytesseract.TesseractError, RuntimeError) as e:
        raise ToolError("tesseract", str(e)) from e


def _gray_or_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("L", "RGB"):
        return img
    return img.convert("RGB" if img.mode in ("RGBA", "P", "CMYK") else "L")


def write_pnm(img: Image.Image, path: Path) -> None:
    """Greyscale (P5) or colour (P6) PNM in one write: PIL's encoder takes ~35 ms for an A4 page."""
    img = _gray_or_rgb(img)
    arr = np.asarray(img)
    magic = b"P5" if img.mode == "L" else b"P6"
    with path.open("wb") as f:
        f.write(b"%s\n%d %d\n255\n" % (magic, img.width, img.height))
        f.write(arr.tobytes())


def downscale(img: Image.Image, dpi: int, max_dpi: int) -> tuple[Image.Image, float]:
    """`img` at `max_dpi` (area-averaged, bilevel pages become grey) if it is finer; and the scale."""
    if not max_dpi or dpi <= max_dpi:
        return img, 1.0
    scale = max_dpi / dpi
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    arr = np.asarray(img.convert("L") if img.mode == "1" else img)
    return Image.fromarray(cv2.resize(arr, size, interpolation=cv2.INTER_AREA)), scale


Row = tuple[object, str, float, tuple[int, int, int, int]]  # line key, text, confidence, box


def tsv_rows(tsv: str) -> Iterator[Row]:
    """The words (level 5 rows) of Tesseract's TSV output, keyed by their line."""
    for row in csv.DictReader(io.StringIO(tsv), delimiter="\t", quoting=csv.QUOTE_NONE):
        if row.get("level") != "5":
            continue
        x, y, w, h = (int(row[k]) for k in ("left", "top", "width", "height"))
        yield ((row["block_num"], row["par_num"], row["line_num"]), row.get("text") or "",
               float(row["conf"]), (x, y, x + w, y + h))


def group_lines(rows: Iterable[Row], box_scale: float = 1.0) -> tuple[list[Word], list[str]]:
    """Words grouped into lines in reading order, text NFC-normalized, empty words dropped; boxes
    multiplied by `box_scale`."""
    words: list[Word] = []
    lines: list[str] = []
    current: object = None
    parts: list[str] = []
    for key, raw_text, conf, box in rows:
        if not raw_text.strip():
            continue
        if key != current:
            if parts:
                lines.append(clean_line(" ".join(parts)))
            current, parts = key, []
        text = nfc(raw_text.strip())
        parts.append(text)
        x0, y0, x1, y1 = (round(v * box_scale) for v in box)
        words.append(Word(text, max(0.0, conf), (x0, y0, x1, y1), len(lines)))
    if parts:
        lines.append(clean_line(" ".join(parts)))
    return words, lines

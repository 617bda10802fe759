"""Barcode reading behind one interface, with two engines: zxing-cpp and pyzbar.

BENCHMARKS.md compares them on the shared samples and generated pages: zxing-cpp reads everything
pyzbar reads and more (small rescanned QR codes, skewed codes at 200 dpi), in a third of the time,
so the default chain is zxing-cpp alone; pyzbar can be added as a second try in settings.
Formats are a setting too: each extra format costs time on every page (DataMatrix and PDF417
quadruple it), so the default is what dossiers carry: Code 128, Code 39, QR.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import zxingcpp

from ocr.symbologies import DEFAULT_FORMATS, from_zbar, from_zxing, lookup
from ocr.text import nfc


@dataclass(frozen=True)
class Barcode:
    value: str
    symbology: str  # Code128, Code39, QRCode, ...
    engine: str  # zxing-cpp | pyzbar
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the image's pixels

    def to_dict(self) -> dict[str, object]:
        return {"value": self.value, "symbology": self.symbology, "engine": self.engine,
                "box": list(self.box)}


def read_zxing(gray: np.ndarray, formats: tuple[str, ...] = DEFAULT_FORMATS,
               turned: bool = True) -> list[Barcode]:
    """Names of ocr/symbologies.py in, names out; UnknownSymbology for a name it lacks.
    `turned=False` reads 1-D codes only as they lie (bars up and down, either way round): the
    quarter-turned pass is more than half the time on a page without codes (BENCHMARKS.md)."""
    found = []
    wanted = zxingcpp.barcode_formats_from_str(",".join(lookup(f).zxing for f in formats))
    # Not again on downscaled copies of the page: at the resolutions scans come in, the same
    # codes are found without them, in 60 % of the time (BENCHMARKS.md, "The start, the
    # hand-over and the end").
    for r in zxingcpp.read_barcodes(gray, formats=wanted, text_mode=zxingcpp.TextMode.Plain,
                                    try_invert=False, try_rotate=turned, try_downscale=False):
        p = r.position
        xs = [p.top_left.x, p.top_right.x, p.bottom_left.x, p.bottom_right.x]
        ys = [p.top_left.y, p.top_right.y, p.bottom_left.y, p.bottom_right.y]
        found.append(Barcode(nfc(r.text), _zxing_name(r.format), "zxing-cpp",
                             (min(xs), min(ys), max(xs), max(ys))))
    return found


def _zxing_name(fmt: object) -> str:
    member = getattr(fmt, "name", None) or str(fmt).rsplit(".", 1)[-1]
    return from_zxing(member) or str(fmt).rsplit(".", 1)[-1].replace(" ", "")


def read_pyzbar(gray: np.ndarray, formats: tuple[str, ...] = DEFAULT_FORMATS,
                turned: bool = True) -> list[Barcode]:
    """The formats zbar cannot read (ocr/symbologies.py: no zbar symbol) are left to zxing-cpp.
    zbar scans both ways round whatever `turned` says. Imported here: zbar is not in the default
    chain, and loading it (ldconfig run to find the library) was on every command's start."""
    from pyzbar import pyzbar

    symbols = [getattr(pyzbar.ZBarSymbol, zbar) for f in formats if (zbar := lookup(f).zbar)]
    if not symbols:  # none it can read (an empty list would ask zbar for every type)
        return []
    found = []
    for r in pyzbar.decode(gray, symbols=symbols):
        x, y, w, h = r.rect
        found.append(Barcode(nfc(_zbar_text(r.data)), from_zbar(r.type) or r.type, "pyzbar",
                             (x, y, x + w, y + h)))
    return found


def _zbar_text(data: bytes) -> str:
    """zbar re-encodes QR bytes it guessed to be Latin-1/Shift-JIS; undo that for UTF-8 payloads."""
    text = data.decode("utf-8", errors="replace")
    for legacy in ("latin-1", "shift_jis"):
        try:
            return text.encode(legacy).decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            continue
    return text


ENGINES = {"zxing-cpp": read_zxing, "pyzbar": read_pyzbar}


def read(gray: np.ndarray, engines: tuple[str, ...] = ("zxing-cpp",),
         formats: tuple[str, ...] = DEFAULT_FORMATS, turned: bool = True) -> list[Barcode]:
    """Barcodes of a page, top to bottom; each engine in order until one finds something.
    `turned=False`: 1-D codes only as they lie (read_zxing)."""
    for name in engines:
        found = ENGINES[name](gray, formats, turned)
        if found:
            return sorted(_unique(found), key=lambda b: (b.box[1], b.box[0]))
    return []


BAR_MM = 4.0  # a 1-D code's bars are taller than this; a line of text's strokes are not
_BLOCK_MM = (10.0, 60.0)  # a block narrower is no code; one taller is a shadow or a frame
BAR_DPI = 100  # where blocks are looked for: a code's thin bars may blur there, its block stays


def bar_blocks(gray: np.ndarray, dpi: int, across: bool = False) -> list[tuple[int, int, int, int]]:
    """Boxes (x0, y0, x1, y1) of an upright page's blocks of vertical bars: where its 1-D codes
    can be, so that they can be read there at another resolution (ingest/page_stages.py). A
    photo or a heading's thick strokes make blocks too (reading them finds nothing). Cheap: at
    BAR_DPI, a threshold and one erosion (a millisecond or two a page). `across`: blocks of
    horizontal bars, a code printed up the page."""
    scale = min(1.0, BAR_DPI / dpi)
    small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) \
        if scale < 1 else gray
    if across:
        small = np.ascontiguousarray(small.T)
    found = [(round(x0 / scale), round(y0 / scale), round(x1 / scale), round(y1 / scale))
             for x0, y0, x1, y1 in _blocks(small, dpi * scale)]
    if across:
        found = [(y0, x0, y1, x1) for x0, y0, x1, y1 in found]
    return sorted(found, key=lambda b: (b[1], b[0]))


def _blocks(gray: np.ndarray, dpi: float) -> list[tuple[int, int, int, int]]:
    mm = dpi / 25.4
    tall = max(3, round(BAR_MM * mm))
    _, ink = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    # What is left of ink eroded by a vertical line: the middle of runs at least `tall` high.
    cores = cv2.erode(ink, cv2.getStructuringElement(cv2.MORPH_RECT, (1, tall)))
    # Bars a code apart (a quiet zone is wider) join into one block on a grid of 1 mm cells:
    # a cell holds bars when any of its pixels is a core (its mean is not 0).
    cell = max(1, round(mm))
    rows, cols = -(-gray.shape[0] // cell), -(-gray.shape[1] // cell)
    padded = cv2.copyMakeBorder(cores, 0, rows * cell - gray.shape[0], 0,
                                cols * cell - gray.shape[1], cv2.BORDER_CONSTANT, value=0)
    grid = (cv2.resize(padded, (cols, rows), interpolation=cv2.INTER_AREA) > 0).astype(np.uint8)
    grid = cv2.dilate(grid, np.ones((1, 3), np.uint8))
    _, _, stats, _ = cv2.connectedComponentsWithStats(grid, connectivity=8)
    blocks = []
    for x, y, w, h, _ in stats[1:]:
        height = (h * cell + tall) / mm
        if w - 2 >= _BLOCK_MM[0] and height <= _BLOCK_MM[1]:  # w counts the dilation's 2 cells
            blocks.append((int(x + 1) * cell, int(y) * cell - tall // 2,
                           int(x + w - 1) * cell, int(y + h) * cell + tall // 2))
    return blocks


def _unique(found: list[Barcode]) -> list[Barcode]:
    seen: set[tuple[str, str]] = set()
    out = []
    for b in found:
        if (b.value, b.symbology) not in seen:
            seen.add((b.value, b.symbology))
            out.append(b)
    return out

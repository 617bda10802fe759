"""Barcode reading behind one interface, with two engines: zxing-cpp and pyzbar.

BENCHMARKS.md compares them on the shared samples and generated pages: zxing-cpp reads everything
pyzbar reads and more (small rescanned QR codes, skewed codes at 200 dpi), in a third of the time,
so the default chain is zxing-cpp alone; pyzbar can be added as a second try in settings.
Formats are a setting too: each extra format costs time on every page (DataMatrix and PDF417
quadruple it), so the default is what dossiers carry: Code 128, Code 39, QR.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import zxingcpp
from pyzbar import pyzbar

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


def read_zxing(gray: np.ndarray, formats: tuple[str, ...] = DEFAULT_FORMATS) -> list[Barcode]:
    """Names of ocr/symbologies.py in, names out; UnknownSymbology for a name it lacks."""
    found = []
    wanted = zxingcpp.barcode_formats_from_str(",".join(lookup(f).zxing for f in formats))
    for r in zxingcpp.read_barcodes(gray, formats=wanted, text_mode=zxingcpp.TextMode.Plain,
                                    try_invert=False):
        p = r.position
        xs = [p.top_left.x, p.top_right.x, p.bottom_left.x, p.bottom_right.x]
        ys = [p.top_left.y, p.top_right.y, p.bottom_left.y, p.bottom_right.y]
        found.append(Barcode(nfc(r.text), _zxing_name(r.format), "zxing-cpp",
                             (min(xs), min(ys), max(xs), max(ys))))
    return found


def _zxing_name(fmt: object) -> str:
    member = getattr(fmt, "name", None) or str(fmt).rsplit(".", 1)[-1]
    return from_zxing(member) or str(fmt).rsplit(".", 1)[-1].replace(" ", "")


def read_pyzbar(gray: np.ndarray, formats: tuple[str, ...] = DEFAULT_FORMATS) -> list[Barcode]:
    """The formats zbar cannot read (ocr/symbologies.py: no zbar symbol) are left to zxing-cpp."""
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
         formats: tuple[str, ...] = DEFAULT_FORMATS) -> list[Barcode]:
    """Barcodes of a page, top to bottom; each engine in order until one finds something."""
    for name in engines:
        found = ENGINES[name](gray, formats)
        if found:
            return sorted(_unique(found), key=lambda b: (b.box[1], b.box[0]))
    return []


def _unique(found: list[Barcode]) -> list[Barcode]:
    seen: set[tuple[str, str]] = set()
    out = []
    for b in found:
        if (b.value, b.symbology) not in seen:
            seen.add((b.value, b.symbology))
            out.append(b)
    return out

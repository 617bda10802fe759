"""The one table of barcode symbologies: the name settings and page facts use, what zxing-cpp and
zbar call it, and whether it is 1-D or 2-D.

Adding a symbology is one row. The settings validator (`barcode_formats`, ingest/settings.py)
accepts the names of this table only, so a typo stops the program at start-up with the list of
known names instead of failing every page. The readers (ocr/barcodes.py) translate names to each
engine's formats and the engines' answers back to names through it; the straightened-page retry
(ingest/page_stages.py) reads only the 1-D ones again. Pure data: importing it loads no engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Symbology:
    name: str  # as in settings and in a page's facts: Code128, QRCode, ...
    zxing: str  # zxing-cpp's BarcodeFormat member asked for
    zbar: str | None  # pyzbar's ZBarSymbol member; None: zbar cannot read it
    kind: Literal["1-D", "2-D"]
    # Other BarcodeFormat members zxing-cpp may answer for it (variants of the one asked for).
    zxing_variants: tuple[str, ...] = ()

    @property
    def two_d(self) -> bool:
        return self.kind == "2-D"


SYMBOLOGIES: tuple[Symbology, ...] = (
    Symbology("Code128", "Code128", "CODE128", "1-D"),
    Symbology("Code39", "Code39", "CODE39", "1-D", ("Code39Std", "Code39Ext")),
    Symbology("Code93", "Code93", "CODE93", "1-D"),
    Symbology("ITF", "ITF", "I25", "1-D"),
    Symbology("Codabar", "Codabar", "CODABAR", "1-D"),
    Symbology("EAN13", "EAN13", "EAN13", "1-D"),
    Symbology("EAN8", "EAN8", "EAN8", "1-D"),
    Symbology("UPCA", "UPCA", "UPCA", "1-D"),
    Symbology("UPCE", "UPCE", "UPCE", "1-D"),
    Symbology("QRCode", "QRCode", "QRCODE", "2-D", ("QRCodeModel1", "QRCodeModel2")),
    Symbology("MicroQRCode", "MicroQRCode", None, "2-D"),
    Symbology("rMQRCode", "RMQRCode", None, "2-D"),
    Symbology("DataMatrix", "DataMatrix", None, "2-D"),
    Symbology("Aztec", "Aztec", None, "2-D"),
    Symbology("PDF417", "PDF417", "PDF417", "2-D"),
)

BY_NAME = {s.name: s for s in SYMBOLOGIES}
DEFAULT_FORMATS = ("Code128", "Code39", "QRCode")  # what dossiers carry (ocr/barcodes.py)

_FOLDED = {s.name.casefold(): s for s in SYMBOLOGIES}
_BY_ZXING = {z: s for s in SYMBOLOGIES for z in (s.zxing, *s.zxing_variants)}
_BY_ZBAR = {s.zbar: s for s in SYMBOLOGIES if s.zbar}


class UnknownSymbology(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown barcode format {name!r}; known: "
                         f"{', '.join(s.name for s in SYMBOLOGIES)}")
        self.name = name


def lookup(name: str) -> Symbology:
    """The row of `name` (any case: "code128" is Code128); UnknownSymbology names the known ones."""
    found = BY_NAME.get(name) or _FOLDED.get(name.strip().casefold())
    if found is None:
        raise UnknownSymbology(name)
    return found


def one_d(names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The 1-D ones of `names`, in order."""
    return tuple(n for n in names if not lookup(n).two_d)


def from_zxing(member: str) -> str | None:
    """The name of a BarcodeFormat member zxing-cpp answered; None if the table lacks it."""
    found = _BY_ZXING.get(member)
    return found.name if found else None


def from_zbar(symbol: str) -> str | None:
    """The name of a zbar symbol type (Decoded.type); None if the table lacks it."""
    found = _BY_ZBAR.get(symbol)
    return found.name if found else None

"""What the OCR and barcode steps are told by configuration: the `ocr` and `barcodes` sections of
ingest's Settings (flat SOHOA_OCR_LANGUAGES, SOHOA_BARCODE_FORMATS... as documented in README).

Owned here so that the OCR layer states its own options and their limits; ingest composes them."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from ocr.dossier_code import STRICT, TOLERANT
from ocr.symbologies import SYMBOLOGIES, lookup


class OcrConfig(BaseModel):
    # Tesseract languages: vie first; pages it reads below the threshold get a vie+eng reading.
    languages: str = "vie"
    second_languages: str = "vie+eng"  # "" disables the second reading
    second_reading_below: float = 90.0
    timeout_s: int = 300
    # "library": libtesseract loaded once per worker (saves ~0.2 s of model loading per page);
    # "cli": one `tesseract` program run per page. Same results (BENCHMARKS.md).
    engine: Literal["library", "cli"] = "library"
    # Scans finer than this are OCR'd from a copy downscaled to it (0: as scanned); the stored page
    # keeps its resolution. 200 dpi reads as well as 300 in a quarter less time (BENCHMARKS.md).
    max_dpi: int = Field(default=200, ge=0)
    # OCR confidence (0..100) under which an upright page is also tried upside down.
    upside_down_check_below: float = 80.0
    max_skew_degrees: float = 15.0
    blank_ink_threshold: float = 0.0001
    max_page_pixels: int = 150_000_000
    max_pages: int = Field(default=2000, ge=1)  # longer files fail as too_many_pages
    # Seconds poppler may spend drawing one PDF page (300,000 vector strokes take minutes); past
    # them the drawing is stopped and the page fails as too_complex.
    render_seconds: float = Field(default=60.0, gt=0)
    fallback_dpi: int = 300
    jpeg_quality: int = Field(default=80, ge=30, le=95)  # page images in the dossier PDFs


class BarcodeConfig(BaseModel):
    # zxing-cpp reads more than pyzbar, faster (BENCHMARKS.md); add "pyzbar" for a second try.
    engines: list[str] = Field(default_factory=lambda: ["zxing-cpp"])
    formats: list[str] = Field(default_factory=lambda: ["Code128", "Code39", "QRCode"])
    separators: list[str] = Field(default_factory=lambda: ["PATCHT"])
    # the "KẾT QUẢ" sheet: the pages after it, up to the next separator sheet, are the result
    # of the dossier whose code they carry (ingest/split.py)
    result_separators: list[str] = Field(default_factory=lambda: ["SOHOA-RESULT"])
    # Dossier-code grammar: "tolerant" (DOMAIN.md), "strict", or a regular expression of your own
    # with named groups agency, date and seq.
    dossier_code_grammar: str = "tolerant"

    @field_validator("dossier_code_grammar")
    @classmethod
    def _known_or_regex(cls, v: str) -> str:
        pattern = {"tolerant": TOLERANT, "strict": STRICT}.get(v, v)
        try:
            compiled = re.compile(pattern)
        except re.error as e:
            raise ValueError(f"not a regular expression: {e}") from e
        if not {"agency", "date", "seq"} <= set(compiled.groupindex):
            raise ValueError("the grammar needs named groups agency, date and seq")
        return v

    @field_validator("engines")
    @classmethod
    def _known_engines(cls, v: list[str]) -> list[str]:
        unknown = set(v) - {"zxing-cpp", "pyzbar"}
        if unknown or not v:
            raise ValueError(f"barcode engines are zxing-cpp and/or pyzbar, not {sorted(unknown)}")
        return v

    @field_validator("formats")
    @classmethod
    def _known_formats(cls, v: list[str]) -> list[str]:
        """Names of ocr/symbologies.py's table (any case, stored as the table spells them): a typo
        stops the start with the known names instead of failing every page."""
        if not v:  # zxing-cpp would read every format, zbar none
            raise ValueError("barcode formats: name at least one; known: "
                             + ", ".join(s.name for s in SYMBOLOGIES))
        return list(dict.fromkeys(lookup(name).name for name in v))

    @property
    def dossier_code_pattern(self) -> str:
        return {"tolerant": TOLERANT, "strict": STRICT}.get(self.dossier_code_grammar,
                                                            self.dossier_code_grammar)

"""Tesseract's own library (libtesseract, its C API through ctypes), one engine per language set and
process, kept for the life of the worker.

Why: every `tesseract` program run spends ~0.2 s of CPU before it reads a pixel (loading the
language model and, in the Debian build, parsing its table of character ambiguities), a fifth of a
page's OCR time at 200 dpi. The library reads a page exactly as the program does (same code, same
renderers: TSV and the text-only PDF page; tests/test_ocr.py compares the two byte for byte), but
loads the model once. BENCHMARKS.md has the measurement.

The library ships with the `tesseract-ocr` package (libtesseract5); no compiler, no extra wheel.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from pathlib import Path

from ocr.errors import ToolError

PSM_AUTO = 3  # TessPageSegMode: fully automatic page segmentation, no OSD (the program's --psm 3)

_lib: ctypes.CDLL | None = None
_lib_error: str | None = None
_local = threading.local()  # engines are not shared between threads


def _load() -> ctypes.CDLL:
    """The library with the C API's signatures declared; ToolError if it is not installed."""
    global _lib, _lib_error
    if _lib is not None:
        return _lib
    if _lib_error is None:
        os.environ.setdefault("OMP_THREAD_LIMIT", "1")  # before libgomp reads it
        name = ctypes.util.find_library("tesseract") or "libtesseract.so.5"
        try:
            lib = ctypes.CDLL(name)
        except OSError as e:
            _lib_error = f"libtesseract not found ({e}); install tesseract-ocr or set SOHOA_OCR_ENGINE=cli"
        else:
            _declare(lib)
            _lib = lib
            return lib
    raise ToolError("tesseract", _lib_error)


def _declare(lib: ctypes.CDLL) -> None:
    p, s, i = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
    for name, res, args in [
        ("TessBaseAPICreate", p, []),
        ("TessBaseAPIDelete", None, [p]),
        ("TessBaseAPIInit3", i, [p, s, s]),
        ("TessBaseAPISetVariable", i, [p, s, s]),
        ("TessBaseAPISetPageSegMode", None, [p, i]),
        ("TessBaseAPIGetDatapath", s, [p]),
        ("TessBaseAPIProcessPages", i, [p, s, s, i, p]),
        ("TessBaseAPIClear", None, [p]),
        ("TessPDFRendererCreate", p, [s, s, i]),
        ("TessTsvRendererCreate", p, [s]),
        ("TessResultRendererInsert", None, [p, p]),
        ("TessDeleteResultRenderer", None, [p]),
    ]:
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args


class Engine:
    """One initialized TessBaseAPI for one language set (`vie`, `vie+eng`)."""

    def __init__(self, languages: str) -> None:
        self.lib = _load()
        self.languages = languages
        self.handle = self.lib.TessBaseAPICreate()
        if self.lib.TessBaseAPIInit3(self.handle, None, languages.encode()) != 0:
            self.lib.TessBaseAPIDelete(self.handle)
            raise ToolError("tesseract", f"cannot load the language data for {languages!r} "
                                         "(is tesseract-ocr-vie installed?)")
        self.datapath = self.lib.TessBaseAPIGetDatapath(self.handle)
        self.lib.TessBaseAPISetPageSegMode(self.handle, PSM_AUTO)
        # Its messages ("Detected 12 diacritics") would go to the worker's stderr, once per page.
        self.set("debug_file", os.devnull)

    def set(self, name: str, value: str) -> None:
        if not self.lib.TessBaseAPISetVariable(self.handle, name.encode(), value.encode()):
            raise ToolError("tesseract", f"unknown variable {name}")

    def read(self, image: Path, out_base: Path, dpi: int, variables: dict[str, str],
             timeout_s: float) -> None:
        """Writes `out_base`.tsv and `out_base`.pdf (text only) for the image file, as
        `tesseract IMAGE OUT_BASE --dpi DPI -c textonly_pdf=1 pdf tsv` does."""
        self.set("user_defined_dpi", str(dpi))
        for name, value in variables.items():
            self.set(name, value)
        base = str(out_base).encode()
        renderer = self.lib.TessPDFRendererCreate(base, self.datapath, 1)
        self.lib.TessResultRendererInsert(renderer, self.lib.TessTsvRendererCreate(base))
        try:
            ok = self.lib.TessBaseAPIProcessPages(self.handle, str(image).encode(), None,
                                                  int(timeout_s * 1000), renderer)
        finally:
            self.lib.TessDeleteResultRenderer(renderer)  # closes (flushes) both output files
            self.lib.TessBaseAPIClear(self.handle)
        if not ok:
            raise ToolError("tesseract", f"could not read the page (timeout {timeout_s:g} s or "
                                         "an image it cannot open)")

    def close(self) -> None:
        self.lib.TessBaseAPIDelete(self.handle)


def engine(languages: str) -> Engine:
    """This thread's engine for `languages`, created at first use. A forked child makes its own:
    an engine copied from the parent shares nothing safely."""
    engines: dict[tuple[int, str], Engine] = _local.__dict__.setdefault("engines", {})
    key = (os.getpid(), languages)
    if key not in engines:
        engines[key] = Engine(languages)
    return engines[key]

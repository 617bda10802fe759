"""Tesseract's own library (libtesseract, its C API through ctypes): one engine per language set,
loaded once and kept (in a child process of the worker: ocr/tesseract_child.py says why).

Why: every `tesseract` program run spends ~0.2 s of CPU before it reads a pixel (loading the
language model and, in the Debian build, parsing its table of character ambiguities), a fifth of a
page's OCR time at 200 dpi. The library also takes the page from memory (the program reads its
input file byte by byte) and gives the words through its result iterator (the TSV writer walks each
text line again for every word). Same code, same result: tests/test_tesseract_engines.py compares
the words and the text layer with the program's. BENCHMARKS.md has the measurements.

The library ships with the `tesseract-ocr` package (libtesseract5); no compiler, no extra wheel.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ocr.errors import ToolError

PSM_AUTO = 3  # TessPageSegMode: fully automatic page segmentation, no OSD (the program's --psm 3)
RIL_TEXTLINE, RIL_WORD = 2, 3  # TessPageIteratorLevel

_lib: ctypes.CDLL | None = None
_lib_error: str | None = None


@dataclass(frozen=True)
class RawWord:
    text: str
    confidence: float  # 0..100, as the TSV output prints it
    box: tuple[int, int, int, int]  # x0, y0, x1, y1
    line: tuple[int, int, int, int]  # the box of its text line: words of one line share it


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
    p, s, i, f = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_float
    ip = ctypes.POINTER(ctypes.c_int)
    for name, res, args in [
        ("TessBaseAPICreate", p, []),
        ("TessBaseAPIDelete", None, [p]),
        ("TessBaseAPIInit3", i, [p, s, s]),
        ("TessBaseAPISetVariable", i, [p, s, s]),
        ("TessBaseAPISetPageSegMode", None, [p, i]),
        ("TessBaseAPIGetDatapath", s, [p]),
        ("TessBaseAPISetImage", None, [p, p, i, i, i, i]),
        ("TessBaseAPISetSourceResolution", None, [p, i]),
        ("TessBaseAPIRecognize", i, [p, p]),
        ("TessBaseAPIClear", None, [p]),
        ("TessBaseAPIGetIterator", p, [p]),
        ("TessResultIteratorDelete", None, [p]),
        ("TessResultIteratorNext", i, [p, i]),
        ("TessResultIteratorGetUTF8Text", p, [p, i]),
        ("TessResultIteratorConfidence", f, [p, i]),
        ("TessResultIteratorGetPageIterator", p, [p]),
        ("TessPageIteratorBoundingBox", i, [p, i, ip, ip, ip, ip]),
        ("TessDeleteText", None, [p]),
        ("TessMonitorCreate", p, []),
        ("TessMonitorDelete", None, [p]),
        ("TessMonitorSetDeadlineMSecs", None, [p, i]),
        ("TessPDFRendererCreate", p, [s, s, i]),
        ("TessResultRendererBeginDocument", i, [p, s]),
        ("TessResultRendererAddImage", i, [p, p]),
        ("TessResultRendererEndDocument", i, [p]),
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

    def read(self, pixels: bytes, shape: tuple[int, ...], dpi: int, variables: dict[str, str],
             timeout_s: float) -> tuple[list[RawWord], bytes]:
        """The words of a greyscale (`shape` H x W) or RGB (H x W x 3) page, its rows of 8-bit
        pixels one after the other in `pixels`, and its text-only PDF page, as `tesseract PAGE OUT
        --dpi DPI -c textonly_pdf=1 pdf tsv` gives them. Bytes, not an array: the child that
        reads pages starts without NumPy (0.08 s of CPU each, at a batch's start)."""
        lib, handle = self.lib, self.handle
        height, width = shape[:2]
        depth = 1 if len(shape) == 2 else shape[2]
        if len(pixels) != width * height * depth:
            raise ValueError(f"{len(pixels)} bytes for a page of shape {shape}")
        self.set("user_defined_dpi", str(dpi))
        for name, value in variables.items():
            self.set(name, value)
        lib.TessBaseAPISetImage(handle, pixels, width, height, depth, width * depth)
        lib.TessBaseAPISetSourceResolution(handle, dpi)
        monitor = lib.TessMonitorCreate()
        try:
            lib.TessMonitorSetDeadlineMSecs(monitor, max(1, int(timeout_s * 1000)))
            if lib.TessBaseAPIRecognize(handle, monitor) != 0:
                raise ToolError("tesseract", f"could not read the page (over its time limit of "
                                             f"{timeout_s:g} s, or an image it cannot use)")
            return self._words(), self._text_pdf()
        finally:
            lib.TessMonitorDelete(monitor)
            lib.TessBaseAPIClear(handle)

    def _words(self) -> list[RawWord]:
        lib = self.lib
        words: list[RawWord] = []
        it = lib.TessBaseAPIGetIterator(self.handle)
        if not it:  # nothing on the page
            return words
        page_it = lib.TessResultIteratorGetPageIterator(it)
        box = [ctypes.c_int() for _ in range(4)]
        try:
            while True:
                text_p = lib.TessResultIteratorGetUTF8Text(it, RIL_WORD)
                if text_p:
                    text = ctypes.string_at(text_p).decode("utf-8", "replace")
                    lib.TessDeleteText(text_p)
                    conf = float(f"{lib.TessResultIteratorConfidence(it, RIL_WORD):.6f}")
                    lib.TessPageIteratorBoundingBox(page_it, RIL_WORD, *box)
                    word_box = tuple(b.value for b in box)
                    lib.TessPageIteratorBoundingBox(page_it, RIL_TEXTLINE, *box)
                    words.append(RawWord(text, conf, word_box, tuple(b.value for b in box)))
                if not lib.TessResultIteratorNext(it, RIL_WORD):
                    return words
        finally:
            lib.TessResultIteratorDelete(it)

    def _text_pdf(self) -> bytes:
        """Tesseract's own invisible-text PDF page (its renderer writes only to a file)."""
        lib = self.lib
        with tempfile.TemporaryDirectory(prefix="sohoa-ocr-") as tmp:
            base = Path(tmp) / "page"
            renderer = lib.TessPDFRendererCreate(str(base).encode(), self.datapath, 1)
            try:
                ok = (lib.TessResultRendererBeginDocument(renderer, b"")
                      and lib.TessResultRendererAddImage(renderer, self.handle)
                      and lib.TessResultRendererEndDocument(renderer))
            finally:
                lib.TessDeleteResultRenderer(renderer)  # closes (flushes) the file
            if not ok:
                raise ToolError("tesseract", "could not write the text layer")
            return base.with_suffix(".pdf").read_bytes()


"""The digitization note: a few lines of real text (DOMAIN.md "Digitization that counts") printed at
the top right of page 1 of an electronic copy before the agency signs it.

The text is set in DejaVu Sans, embedded as a subset (Type0 / CIDFontType2, Identity-H, with a
ToUnicode map), so the file stays PDF/A-2b and the note is searchable and extractable
(`pdftotext`). Pure PDF work: this module imports nothing else of sohoa.
"""

from __future__ import annotations

import io
import unicodedata
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import pikepdf

if TYPE_CHECKING:  # fontTools is loaded when a note is set: an agency without a signer never does
    from fontTools.ttLib import TTFont

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")  # Debian: fonts-dejavu-core
SIZE = 6.5  # points: small type, still legible when printed
MARGIN = 14.0  # points from the top and right edges


class NoteError(ValueError):
    """The note cannot be set: the font is missing or lacks a character of the text."""


@cache
def _font() -> TTFont:
    from fontTools.ttLib import TTFont

    if not FONT.exists():
        raise NoteError(f"font {FONT} not found (install fonts-dejavu-core)")
    return TTFont(str(FONT))


def add_note(pdf: bytes, lines: list[str], producer: str | None = None) -> bytes:
    """`pdf` with `lines` printed right-aligned at the top right of its first page (as displayed,
    whatever its /Rotate). The rest of the document is kept as it is, but for `producer`, when
    given, written alike into the document info and the XMP metadata (PDF/A wants them equal:
    a signer that names itself there must find them so)."""
    lines = [unicodedata.normalize("NFC", line) for line in lines if line]
    font = _font()
    cmap = font.getBestCmap()
    scale = 1000 / font["head"].unitsPerEm
    missing = sorted({c for line in lines for c in line if ord(c) not in cmap})
    if missing:
        raise NoteError(f"the note font has no glyph for {''.join(missing)!r}")
    gids = {c: font.getGlyphID(cmap[ord(c)]) for line in lines for c in line}
    widths = {gid: round(font["hmtx"][font.getGlyphName(gid)][0] * scale) for gid in gids.values()}
    with pikepdf.open(io.BytesIO(pdf)) as doc:
        page = doc.pages[0]
        font_ref = _embed_font(doc, gids, widths)
        name = _free_name(page)
        resources = page.obj.get("/Resources")
        if resources is None:
            page.obj.Resources = resources = pikepdf.Dictionary()
        if "/Font" not in resources:
            resources.Font = pikepdf.Dictionary()
        resources.Font[name] = font_ref
        # The page's own drawing in q/Q, so its matrix and text state (tesseract leaves a
        # horizontal scaling and invisible rendering set) do not reach the note.
        if producer is not None:
            with doc.open_metadata(set_pikepdf_as_editor=False, update_docinfo=True) as meta:
                meta["pdf:Producer"] = producer
        page.contents_add(doc.make_stream(b"q\n"), prepend=True)
        page.contents_add(doc.make_stream(b"\nQ" + _content(page, name, lines, gids, widths)),
                          prepend=False)
        out = io.BytesIO()
        doc.save(out, deterministic_id=True, compress_streams=True,
                 object_stream_mode=pikepdf.ObjectStreamMode.generate, min_version="1.7")
        return out.getvalue()


def _content(page: pikepdf.Page, name: str, lines: list[str], gids: dict[str, int],
             widths: dict[int, int]) -> bytes:
    """The drawing: saved graphics state, a matrix from display space (what a reader sees, rotated)
    to the page's space, then each line right-aligned."""
    x0, y0, x1, y1 = (float(v) for v in page.mediabox)
    w, h = x1 - x0, y1 - y0
    rotate = int(page.obj.get("/Rotate", 0)) % 360
    matrix = {0: (1, 0, 0, 1, x0, y0), 90: (0, 1, -1, 0, x0 + w, y0),
              180: (-1, 0, 0, -1, x0 + w, y0 + h), 270: (0, -1, 1, 0, x0, y0 + h)}[rotate]
    shown_w, shown_h = (h, w) if rotate in (90, 270) else (w, h)
    ops = [b"q", " ".join(_num(v) for v in matrix).encode() + b" cm", b"BT",
           f"/{name.lstrip('/')} {_num(SIZE)} Tf".encode(), b"0 Tr 100 Tz 0 Tc 0 Tw 0 Ts 0 g"]
    leading = SIZE * 1.3
    for i, line in enumerate(lines):
        width = sum(widths[gids[c]] for c in line) * SIZE / 1000
        x = shown_w - MARGIN - width
        y = shown_h - MARGIN - SIZE - i * leading
        ops.append(f"1 0 0 1 {_num(x)} {_num(y)} Tm".encode())
        ops.append(b"<" + "".join(f"{gids[c]:04X}" for c in line).encode() + b"> Tj")
    ops += [b"ET", b"Q"]
    return b"\n" + b"\n".join(ops) + b"\n"


def _num(v: float) -> str:
    return f"{v:.3f}".rstrip("0").rstrip(".")


def _free_name(page: pikepdf.Page) -> str:
    fonts = (page.obj.get("/Resources") or {}).get("/Font") or {}
    n = 0
    while f"/SohoaNote{n}" in fonts:
        n += 1
    return f"/SohoaNote{n}"


def _embed_font(doc: pikepdf.Pdf, gids: dict[str, int], widths: dict[int, int]) -> pikepdf.Object:
    """A Type0 font of the glyphs used, glyph ids kept (CIDToGIDMap /Identity)."""
    font = _font()
    data = _subset(frozenset(gids) | _ALWAYS)
    scale = 1000 / font["head"].unitsPerEm
    head, hhea = font["head"], font["hhea"]
    base = "AAAAAA+DejaVuSans"  # a subset's tag; one fixed tag suffices within one page
    file2 = doc.make_stream(data)
    file2.Length1 = len(data)
    descriptor = doc.make_indirect(pikepdf.Dictionary(
        Type=pikepdf.Name.FontDescriptor, FontName=pikepdf.Name("/" + base), Flags=32,
        FontBBox=[round(v * scale) for v in (head.xMin, head.yMin, head.xMax, head.yMax)],
        ItalicAngle=0, Ascent=round(hhea.ascent * scale), Descent=round(hhea.descent * scale),
        CapHeight=round(getattr(font["OS/2"], "sCapHeight", 0) * scale or 729), StemV=80, FontFile2=file2))
    w_array = pikepdf.Array()
    for gid in sorted(widths):
        w_array.extend([gid, pikepdf.Array([widths[gid]])])
    cid = doc.make_indirect(pikepdf.Dictionary(
        Type=pikepdf.Name.Font, Subtype=pikepdf.Name.CIDFontType2,
        BaseFont=pikepdf.Name("/" + base),
        CIDSystemInfo=pikepdf.Dictionary(Registry=pikepdf.String("Adobe"),
                                         Ordering=pikepdf.String("Identity"), Supplement=0),
        FontDescriptor=descriptor, DW=1000, W=w_array, CIDToGIDMap=pikepdf.Name.Identity))
    return doc.make_indirect(pikepdf.Dictionary(
        Type=pikepdf.Name.Font, Subtype=pikepdf.Name.Type0, BaseFont=pikepdf.Name("/" + base),
        Encoding=pikepdf.Name("/Identity-H"), DescendantFonts=[cid],
        ToUnicode=doc.make_stream(_to_unicode(gids))))


# The characters of any time stamp: with them in every subset, one agency's notes share one
# subset, made once per process (subsetting takes most of a second).
_ALWAYS = frozenset("0123456789:+-T")


@lru_cache(maxsize=64)
def _subset(chars: frozenset[str]) -> bytes:
    """DejaVu Sans cut down to `chars`, glyph ids kept."""
    from fontTools import subset
    from fontTools.ttLib import TTFont

    options = subset.Options()
    options.retain_gids = True
    options.notdef_outline = True
    options.name_IDs = ["*"]
    options.layout_features = []
    options.drop_tables += ["FFTM"]
    copy = TTFont(str(FONT))
    sub = subset.Subsetter(options)
    sub.populate(unicodes=[ord(c) for c in chars])
    sub.subset(copy)
    buf = io.BytesIO()
    copy.save(buf)
    return buf.getvalue()


def _to_unicode(gids: dict[str, int]) -> bytes:
    entries = sorted((gid, c) for c, gid in gids.items())
    body = [f"<{gid:04X}> <{''.join(f'{u:04X}' for u in _utf16(c))}>" for gid, c in entries]
    chunks = [body[i:i + 100] for i in range(0, len(body), 100)]
    out = ["/CIDInit /ProcSet findresource begin", "12 dict begin", "begincmap",
           "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def",
           "/CMapName /Adobe-Identity-UCS def", "/CMapType 2 def",
           "1 begincodespacerange", "<0000> <FFFF>", "endcodespacerange"]
    for chunk in chunks:
        out += [f"{len(chunk)} beginbfchar", *chunk, "endbfchar"]
    out += ["endcmap", "CMapName currentdict /CMap defineresource pop", "end", "end"]
    return "\n".join(out).encode()


def _utf16(c: str) -> list[int]:
    data = c.encode("utf-16-be")
    return [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]

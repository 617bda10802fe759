"""Searchable PDF pages and PDF/A-2b dossiers, built with pikepdf.

A page is the cleaned scan as one image with tesseract's invisible text drawn over it (the text copies
and pastes as Vietnamese). A dossier is its pages concatenated, plus what PDF/A-2b asks for: XMP
metadata (with the dossier code, agency and procedure in a declared extension schema), an sRGB output
intent and a document ID. Output is deterministic: same pages and metadata, same bytes, same SHA-256.
"""

from __future__ import annotations

import hashlib
import io
import math
import zlib
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from xml.sax.saxutils import escape

import pikepdf
from PIL import Image, ImageCms

from ocr import paper

JPEG_QUALITY = 80
# qpdf's stand-in document ID (`static_id`), as it writes it: saved() puts a digest in its place.
_STAND_IN = b"<" + b"31415926535897932384626433832795" + b">"
# The trailer, and so the ID, is in the file's last bytes: qpdf writes it after the last object
# (measured: 186 bytes from the end of a 10-page dossier, 833 of a 2,000-page one). Past this,
# saved() falls back on qpdf's own deterministic ID.
_TRAILER_BYTES = 1 << 16


def saved(pdf: pikepdf.Pdf, **options: object) -> bytes:
    """`pdf` as bytes, with a document ID that is a digest of them: the same pages and metadata
    give the same file, as qpdf's `deterministic_id` does, which writes the file twice to get
    its digest (half of a dossier's saving time). Saved once with qpdf's stand-in ID, whose
    place in the trailer then takes the SHA-256 of the bytes (its first 16): the length, and
    so every offset, stays. An ID the document already had keeps its first part, as qpdf keeps
    it."""
    out = io.BytesIO()
    pdf.save(out, static_id=True, **options)  # type: ignore[arg-type]
    with out.getbuffer() as data:  # patched in place: a dossier's bytes are copied once
        tail_at = max(0, len(data) - _TRAILER_BYTES)
        tail = bytes(data[tail_at:])
        at = tail.rfind(b"/ID [")
        end = tail.find(b"]", at)
        ours = at >= 0 and _STAND_IN in tail[at:end]
        if ours:
            digest = b"<" + hashlib.sha256(data).hexdigest()[:32].encode() + b">"
            data[tail_at + at:tail_at + end] = tail[at:end].replace(_STAND_IN, digest)
    if not ours:  # not as qpdf writes it: its own way
        out = io.BytesIO()
        pdf.save(out, deterministic_id=True, **options)  # type: ignore[arg-type]
    return out.getvalue()


def encode_image(pdf: pikepdf.Pdf, img: Image.Image, quality: int = JPEG_QUALITY) -> pikepdf.Stream:
    """1-bit pages stay 1-bit (Flate); grey and colour pages become JPEG."""
    if img.mode == "1":
        packed = img.tobytes()  # PIL packs 1-bit rows MSB first, 1 = white
        stream = pikepdf.Stream(pdf, zlib.compress(packed, 6))
        stream.Filter = pikepdf.Name.FlateDecode
        stream.ColorSpace = pikepdf.Name.DeviceGray
        stream.BitsPerComponent = 1
    else:
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=quality, optimize=True)
        stream = pikepdf.Stream(pdf, buf.getvalue())
        stream.Filter = pikepdf.Name.DCTDecode
        stream.ColorSpace = pikepdf.Name.DeviceRGB if img.mode == "RGB" else pikepdf.Name.DeviceGray
        stream.BitsPerComponent = 8
    stream.Type = pikepdf.Name.XObject
    stream.Subtype = pikepdf.Name.Image
    stream.Width, stream.Height = img.width, img.height
    return stream


def page_pdf(img: Image.Image, dpi: int, text_pdf: bytes | None,
             quality: int = JPEG_QUALITY, *, jpeg: bytes | None = None, rotation: int = 0,
             skew: float = 0.0) -> bytes:
    """One PDF page: the scan `img` (at `dpi`) turned upright, Tesseract's invisible text over it.

    The scan is drawn as it came and turned by the page's drawing matrix: `rotation` degrees
    counter-clockwise (quarter turns), then straightened by `skew` degrees (a skew is undone
    clockwise). It is never resampled for the page, and `jpeg`, the scan's own JPEG data, is
    embedded as is: no second JPEG generation, no encoding time. Corners the straightened scan
    leaves uncovered get the paper's colour."""
    w, h = img.width * 72 / dpi, img.height * 72 / dpi
    width, height = (h, w) if rotation % 180 else (w, h)
    pdf = pikepdf.open(io.BytesIO(text_pdf)) if text_pdf else pikepdf.new()
    if text_pdf:
        page = pdf.pages[0]
        page.MediaBox = [0, 0, width, height]  # tesseract rounds; the image decides
    else:
        pdf.add_blank_page(page_size=(width, height))
        page = pdf.pages[0]
    if "/Resources" not in page.obj:
        page.obj.Resources = pikepdf.Dictionary()
    resources = page.obj.Resources
    if "/XObject" not in resources:
        resources.XObject = pikepdf.Dictionary()
    resources.XObject.Im0 = (_jpeg_stream(pdf, jpeg, img) if jpeg
                             else encode_image(pdf, img, quality))
    skew = 0.0 if abs(skew) < 0.01 else skew
    draw = b""
    if skew:
        colour = paper.colour(img)
        fill = "g" if isinstance(colour, int) else "rg"
        values = (colour,) if isinstance(colour, int) else colour
        draw = (" ".join(f"{v / 255:.3f}" for v in values)
                + f" {fill} 0 0 {width:.4f} {height:.4f} re f\n").encode()
    matrix = " ".join(f"{v:.6f}" for v in _turn_matrix(w, h, width, height, rotation - skew))
    draw = b"q " + draw + f"{matrix} cm /Im0 Do Q\n".encode()
    page.contents_add(pikepdf.Stream(pdf, draw), prepend=True)
    return saved(pdf, compress_streams=True)


def _turn_matrix(w: float, h: float, width: float, height: float, degrees: float
                 ) -> tuple[float, ...]:
    """The matrix that draws a `w` x `h` image turned `degrees` counter-clockwise about its centre,
    centred on a `width` x `height` page."""
    a = math.radians(degrees)
    c, s = round(math.cos(a), 12), round(math.sin(a), 12)  # quarter turns exactly
    return (w * c, w * s, -h * s, h * c,
            width / 2 - (c * w - s * h) / 2, height / 2 - (s * w + c * h) / 2)


def _jpeg_stream(pdf: pikepdf.Pdf, jpeg: bytes, img: Image.Image) -> pikepdf.Stream:
    stream = pikepdf.Stream(pdf, jpeg)
    stream.Filter = pikepdf.Name.DCTDecode
    stream.ColorSpace = pikepdf.Name.DeviceRGB if img.mode == "RGB" else pikepdf.Name.DeviceGray
    stream.BitsPerComponent = 8
    stream.Type = pikepdf.Name.XObject
    stream.Subtype = pikepdf.Name.Image
    stream.Width, stream.Height = img.width, img.height
    return stream


def place_text_page(text_pdf: bytes, size: tuple[int, int], part: tuple[int, int, int, int],
                    dpi: int) -> bytes:
    """A text-only page read from a part of an image (`part`: x0, y0, x1, y1 in its pixels),
    set in a page the size of the whole image (`size` pixels): its words where the image has
    them. (Tesseract rounds its page's size, not the places of its words: those follow the
    part's pixels.)"""
    if not text_pdf:
        return text_pdf
    with pikepdf.open(io.BytesIO(text_pdf)) as pdf:
        page = pdf.pages[0]
        width, height = size[0] * 72 / dpi, size[1] * 72 / dpi
        dx, dy = part[0] * 72 / dpi, (size[1] - part[3]) * 72 / dpi
        page.contents_add(pikepdf.Stream(pdf, f"q 1 0 0 1 {dx:.4f} {dy:.4f} cm\n".encode()),
                          prepend=True)
        page.contents_add(pikepdf.Stream(pdf, b"\nQ\n"))
        page.MediaBox = [0, 0, width, height]
        return saved(pdf, compress_streams=True)


@dataclass(frozen=True)
class DossierMetadata:
    dossier_code: str
    agency: str
    procedure: str | None
    created: datetime  # when the source batch was received: keeps the output reproducible
    title: str | None = None
    producer: str = "sohoa"


@cache
def srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def assemble_pdfa(pages: list[bytes], meta: DossierMetadata) -> bytes:
    """Concatenates page PDFs into one PDF/A-2b document."""
    out = pikepdf.new()
    sources = [pikepdf.open(io.BytesIO(p)) for p in pages]
    try:
        for src in sources:
            out.pages.extend(src.pages)
        _add_output_intent(out)
        _set_metadata(out, meta)
        return saved(out, compress_streams=True,
                     object_stream_mode=pikepdf.ObjectStreamMode.generate, min_version="1.7",
                     fix_metadata_version=False)
    finally:
        for src in sources:
            src.close()


def _add_output_intent(pdf: pikepdf.Pdf) -> None:
    icc = pikepdf.Stream(pdf, srgb_profile())
    icc.N = 3
    intent = pikepdf.Dictionary(
        Type=pikepdf.Name.OutputIntent, S=pikepdf.Name.GTS_PDFA1,
        OutputConditionIdentifier=pikepdf.String("sRGB IEC61966-2.1"),
        Info=pikepdf.String("sRGB IEC61966-2.1"), DestOutputProfile=icc)
    pdf.Root.OutputIntents = pikepdf.Array([pdf.make_indirect(intent)])


def _pdf_date(dt: datetime) -> str:
    s = dt.strftime("D:%Y%m%d%H%M%S")
    off = dt.strftime("%z")
    return s + (f"{off[0]}{off[1:3]}'{off[3:5]}'" if off else "Z")


def _set_metadata(pdf: pikepdf.Pdf, meta: DossierMetadata) -> None:
    title = meta.title or f"Hồ sơ {meta.dossier_code}"
    pdf.docinfo = pdf.make_indirect(pikepdf.Dictionary(
        Title=pikepdf.String(title), Producer=pikepdf.String(meta.producer),
        CreationDate=pikepdf.String(_pdf_date(meta.created)),
        ModDate=pikepdf.String(_pdf_date(meta.created))))
    xmp = pikepdf.Stream(pdf, xmp_packet(meta, title).encode("utf-8"))
    xmp.Type, xmp.Subtype = pikepdf.Name.Metadata, pikepdf.Name.XML
    pdf.Root.Metadata = pdf.make_indirect(xmp)


def xmp_packet(meta: DossierMetadata, title: str) -> str:
    when = meta.created.isoformat(timespec="seconds")
    if meta.created.tzinfo is None:
        when += "Z"
    e = escape
    return f"""<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:pdfaid="http://www.aiim.org/pdfa/ns/id/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:pdf="http://ns.adobe.com/pdf/1.3/"
    xmlns:sohoa="https://sohoa.vn/ns/dossier/1.0/"
    xmlns:pdfaExtension="http://www.aiim.org/pdfa/ns/extension/"
    xmlns:pdfaSchema="http://www.aiim.org/pdfa/ns/schema#"
    xmlns:pdfaProperty="http://www.aiim.org/pdfa/ns/property#">
   <pdfaid:part>2</pdfaid:part>
   <pdfaid:conformance>B</pdfaid:conformance>
   <dc:format>application/pdf</dc:format>
   <dc:title><rdf:Alt><rdf:li xml:lang="x-default">{e(title)}</rdf:li></rdf:Alt></dc:title>
   <dc:identifier>{e(meta.dossier_code)}</dc:identifier>
   <dc:language><rdf:Bag><rdf:li>vi</rdf:li></rdf:Bag></dc:language>
   <xmp:CreateDate>{when}</xmp:CreateDate>
   <xmp:ModifyDate>{when}</xmp:ModifyDate>
   <xmp:MetadataDate>{when}</xmp:MetadataDate>
   <xmp:CreatorTool>{e(meta.producer)}</xmp:CreatorTool>
   <pdf:Producer>{e(meta.producer)}</pdf:Producer>
   <sohoa:DossierCode>{e(meta.dossier_code)}</sohoa:DossierCode>
   <sohoa:Agency>{e(meta.agency)}</sohoa:Agency>
   <sohoa:Procedure>{e(meta.procedure or "")}</sohoa:Procedure>
   <pdfaExtension:schemas>
    <rdf:Bag>
     <rdf:li rdf:parseType="Resource">
      <pdfaSchema:schema>sohoa dossier</pdfaSchema:schema>
      <pdfaSchema:namespaceURI>https://sohoa.vn/ns/dossier/1.0/</pdfaSchema:namespaceURI>
      <pdfaSchema:prefix>sohoa</pdfaSchema:prefix>
      <pdfaSchema:property>
       <rdf:Seq>
        {_prop("DossierCode", "Dossier code (mã hồ sơ)")}
        {_prop("Agency", "Agency code owning the dossier")}
        {_prop("Procedure", "Administrative procedure (thủ tục hành chính)")}
       </rdf:Seq>
      </pdfaSchema:property>
     </rdf:li>
    </rdf:Bag>
   </pdfaExtension:schemas>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>"""


def _prop(name: str, description: str) -> str:
    return (f'<rdf:li rdf:parseType="Resource"><pdfaProperty:name>{name}</pdfaProperty:name>'
            "<pdfaProperty:valueType>Text</pdfaProperty:valueType>"
            "<pdfaProperty:category>external</pdfaProperty:category>"
            f"<pdfaProperty:description>{escape(description)}</pdfaProperty:description></rdf:li>")


def page_jpeg(pdf_path: object, index: int, longest_side: int | None = None,
              quality: int = 80) -> bytes:
    """The scan image of one page of a sohoa PDF (its one image) as the page shows it, turned as
    its drawing matrix turns it, optionally shrunk: previews and thumbnails without rendering
    the page."""
    with pikepdf.open(pdf_path) as pdf:  # type: ignore[call-overload]
        page = pdf.pages[index]
        (name, raw), = page.get_images(recursive=False).items()
        img = pikepdf.PdfImage(raw).as_pil_image()
        turn = int(page.obj.get("/Rotate", 0)) % 360
        drawn = image_turn(page, name)
    if img.mode not in ("L", "RGB"):
        img = img.convert("L")
    quarter = round(drawn / 90) * 90
    if quarter % 360:
        img = img.rotate(quarter, expand=True)
    if longest_side:
        img.thumbnail((longest_side, longest_side), Image.LANCZOS)
    if abs(drawn - quarter) >= 0.01:
        img = img.rotate(drawn - quarter, Image.BICUBIC, fillcolor=paper.colour(img))
    if turn:  # as a viewer shows it (PIL turns counter-clockwise)
        img = img.rotate(-turn, expand=True)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()


def image_turn(page: pikepdf.Page, name: str) -> float:
    """Degrees counter-clockwise the page's drawing matrix turns image `name` (0 for a scan drawn
    upright; page_pdf turns the scan it draws)."""
    stack: list[tuple[float, ...]] = []
    ctm: tuple[float, ...] = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)
    for operands, operator in pikepdf.parse_content_stream(page, "q Q cm Do"):
        op = str(operator)
        if op == "q":
            stack.append(ctm)
        elif op == "Q" and stack:
            ctm = stack.pop()
        elif op == "cm" and len(operands) == 6:
            a, b, c, d, e, f = (float(v) for v in operands)
            ctm = (a * ctm[0] + b * ctm[2], a * ctm[1] + b * ctm[3],
                   c * ctm[0] + d * ctm[2], c * ctm[1] + d * ctm[3],
                   e * ctm[0] + f * ctm[2] + ctm[4], e * ctm[1] + f * ctm[3] + ctm[5])
        elif op == "Do" and operands and str(operands[0]) == name:
            return math.degrees(math.atan2(ctm[1], ctm[0]))
    return 0.0


def scan_pdf(pages: list[bytes], dpi: int) -> bytes:
    """The pages a scanner sent, as one PDF original: JPEG pages are embedded byte for byte (no
    re-encoding, so the original loses nothing), other images losslessly. Deterministic: the same
    pages give the same bytes, hence the same batch id, so a scan stored twice is ingested once."""
    pdf = pikepdf.new()
    for data in pages:
        with Image.open(io.BytesIO(data)) as img:
            page_dpi = img.info.get("dpi", (dpi, dpi))[0] or dpi
            page_dpi = round(page_dpi) if 50 <= page_dpi <= 2400 else dpi
            if img.format == "JPEG" and img.mode in ("L", "RGB"):
                stream = pikepdf.Stream(pdf, data)
                stream.Filter = pikepdf.Name.DCTDecode
                stream.ColorSpace = pikepdf.Name.DeviceRGB if img.mode == "RGB" \
                    else pikepdf.Name.DeviceGray
                stream.BitsPerComponent = 8
            else:
                rgb = img.convert("L" if img.mode in ("1", "L", "LA", "I;16") else "RGB")
                stream = pikepdf.Stream(pdf, zlib.compress(rgb.tobytes(), 6))
                stream.Filter = pikepdf.Name.FlateDecode
                stream.ColorSpace = pikepdf.Name.DeviceRGB if rgb.mode == "RGB" \
                    else pikepdf.Name.DeviceGray
                stream.BitsPerComponent = 8
            stream.Type = pikepdf.Name.XObject
            stream.Subtype = pikepdf.Name.Image
            stream.Width, stream.Height = img.width, img.height
            width, height = img.width * 72 / page_dpi, img.height * 72 / page_dpi
        pdf.add_blank_page(page_size=(width, height))
        page = pdf.pages[-1]
        page.obj.Resources = pikepdf.Dictionary(XObject=pikepdf.Dictionary(Im0=stream))
        page.contents_add(pikepdf.Stream(
            pdf, f"q {width:.4f} 0 0 {height:.4f} 0 0 cm /Im0 Do Q\n".encode()))
    return saved(pdf)


def rotated(page: bytes, degrees: int) -> bytes:
    """A one-page PDF turned clockwise for viewing; its image and text layer stay as they are, so
    the text still matches the picture."""
    if degrees % 360 == 0:
        return page
    if degrees % 90:
        raise ValueError("pages turn by quarter turns")
    pdf = pikepdf.open(io.BytesIO(page))
    for p in pdf.pages:
        p.Rotate = (int(p.obj.get("/Rotate", 0)) + degrees) % 360
    return saved(pdf)

"""Scanned-looking test pages with known ground truth.

Renders Vietnamese prose written for these tests (tests/data/van_ban.txt), one-stop-shop receipts
with Code 128 / QR dossier codes, citizen-ID copies with their QR, separator sheets, Code 39 cover
sheets and blank backsides; then degrades them the way a feeder scanner does (skew, upside-down
pages, blur, noise, JPEG or black and white). `office()` and `office_scan()` make office sheets of
them: colour, tinted paper, a red seal over a blue signature, punch holes, the copier lid's shadow,
uneven light. Used by tests and benchmarks. Nothing here needs
anything beside the checkout; `SAMPLES` (other projects' real files, ../shared/samples) is only for
the tests and benchmarks that use them.
"""

from __future__ import annotations

import io
import random
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import barcode
import img2pdf
import numpy as np
import pikepdf
import qrcode
from barcode.writer import ImageWriter
from PIL import Image, ImageDraw, ImageFilter, ImageFont

PROSE = Path(__file__).resolve().parent / "data" / "van_ban.txt"  # one paragraph a line
SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"  # peer samples: optional
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
A4_INCHES = (8.27, 11.69)


def font(size_pt: float, dpi: int, bold: bool = False, serif: bool = True) -> ImageFont.FreeTypeFont:
    name = ("DejaVuSerif" if serif else "DejaVuSans") + ("-Bold" if bold else "") + ".ttf"
    return ImageFont.truetype(str(FONT_DIR / name), round(size_pt * dpi / 72))


def corpus_paragraphs(max_chars: int = 700) -> list[str]:
    """The Vietnamese prose's paragraphs (59, about 17,000 characters: notices, applications and
    reports of a one-stop shop), long ones cut at sentence ends so that any one fits on a page."""
    paragraphs: list[str] = []
    for para in PROSE.read_text(encoding="utf-8").splitlines():
        chunk = ""
        for sentence in re.split(r"(?<=[.;:!?…])\s+", para.strip()):
            if chunk and len(chunk) + len(sentence) > max_chars:
                paragraphs.append(chunk)
                chunk = ""
            chunk = f"{chunk} {sentence}".strip()
        if chunk:
            paragraphs.append(chunk)
    return paragraphs


@dataclass
class Page:
    """One sheet side as printed, with what a perfect reader would get from it."""

    image: Image.Image
    dpi: int
    text: str = ""  # ground-truth text lines, "\n"-joined (empty for blank/separator pages)
    kind: str = "text"  # receipt | text | id_card | separator | blank
    code: str | None = None  # dossier code printed on it
    fields: dict[str, str] = field(default_factory=dict)
    office: bool = False  # printed on tinted paper, stamped, signed, punched (office())


class Canvas:
    """An A4 sheet at a given resolution that lays out text lines top to bottom."""

    def __init__(self, dpi: int = 300, margin_in: float = 0.9,
                 size_in: tuple[float, float] = A4_INCHES) -> None:
        self.dpi = dpi
        self.width, self.height = round(size_in[0] * dpi), round(size_in[1] * dpi)
        self.image = Image.new("L", (self.width, self.height), 255)
        self.draw = ImageDraw.Draw(self.image)
        self.margin = round(margin_in * dpi)
        self.y = self.margin
        self.lines: list[str] = []

    def px(self, inches: float) -> int:
        return round(inches * self.dpi)

    def line(self, text: str, size: float = 12, bold: bool = False, center: bool = False) -> None:
        f = font(size, self.dpi, bold)
        x = self.margin
        if center:
            x = (self.width - self.draw.textlength(text, font=f)) / 2
        self.draw.text((x, self.y), text, font=f, fill=0)
        self.y += round(size * 1.55 * self.dpi / 72)
        self.lines.append(text)

    def paragraph(self, text: str, size: float = 12) -> bool:
        """Wraps a paragraph to the text width; False (and nothing drawn) if it would not fit."""
        f = font(size, self.dpi)
        avg = self.draw.textlength("abcdefghij klmnopqrst", font=f) / 21
        wrapped = textwrap.wrap(text, width=int((self.width - 2 * self.margin) / avg))
        line_h = round(size * 1.55 * self.dpi / 72)
        if self.y + line_h * len(wrapped) > self.height - self.margin:
            return False
        for w in wrapped:
            self.line(w, size)
        self.y += line_h // 3
        return True

    def paste(self, img: Image.Image, x: int, y: int) -> None:
        self.image.paste(img.convert("L"), (x, y))

    def page(self, kind: str, **kw: object) -> Page:
        return Page(self.image, self.dpi, "\n".join(self.lines), kind, **kw)  # type: ignore[arg-type]


def code128(value: str, dpi: int, height_in: float = 0.45) -> Image.Image:
    """A Code 128 at most ~3 inches wide: long codes get narrower bars, as receipt printers do."""
    modules = len(barcode.Code128(value).build()[0])
    opts = {"module_width": min(0.33, 76.0 / modules), "module_height": height_in * 25.4, "quiet_zone": 4.0,
            "write_text": False, "dpi": dpi}
    out = io.BytesIO()
    barcode.Code128(value, writer=ImageWriter()).write(out, options=opts)
    return Image.open(out).convert("L")


def code39(value: str, dpi: int) -> Image.Image:
    opts = {"module_width": 0.4, "module_height": 15.0, "quiet_zone": 6.0, "write_text": False,
            "dpi": dpi}
    out = io.BytesIO()
    barcode.Code39(value, writer=ImageWriter(), add_checksum=False).write(out, options=opts)
    return Image.open(out).convert("L")


def qr(value: str, dpi: int, size_in: float = 1.0) -> Image.Image:
    q = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4)
    q.add_data(value.encode("utf-8"))
    img = q.make_image(fill_color="black", back_color="white").get_image().convert("L")
    side = round(size_in * dpi)
    return img.resize((side, side), Image.NEAREST)


def receipt(code: str, fields: dict[str, str], dpi: int = 300, symbology: str = "code128",
            copy: str = "Liên 1: Lưu", listed: list[tuple[str, str, int]] | None = None,
            listing: str = "lines") -> Page:
    """A Mẫu 01 receipt. `fields` keys: applicant_name address phone email procedure received_at due_at
    (dates as 'HH:MM dd/mm/yyyy'). `listed` (name, form, count) replaces item 1's two default
    documents, printed as numbered lines (`listing="lines"`, wording varied by the row) or as a
    table (`"table"`: TT / Tên loại giấy tờ / Hình thức / Số lượng, ruled)."""
    c = Canvas(dpi)
    c.line("ỦY BAN NHÂN DÂN QUẬN HOÀN KIẾM", 11, bold=True)
    c.line("BỘ PHẬN MỘT CỬA", 11, bold=True)
    c.y += c.px(0.3)
    c.line("GIẤY TIẾP NHẬN HỒ SƠ VÀ HẸN TRẢ KẾT QUẢ", 14, bold=True, center=True)
    c.line(copy, 10, center=True)
    c.y += c.px(0.15)
    bar_top = c.margin
    if symbology in ("code128", "both"):
        b = code128(code, dpi)
        c.paste(b, c.width - c.margin - b.width, bar_top)
        bar_top += b.height + c.px(0.05)
    if symbology in ("qr", "both"):
        q = qr(code, dpi, 0.9)
        c.paste(q, c.width - c.margin - q.width, bar_top)
    rh, rm, rd = _split_dt(fields["received_at"])
    dh, dm, dd = _split_dt(fields["due_at"])
    c.line(f"Mã hồ sơ: {code}", 12, bold=True)
    c.line(f"Tiếp nhận hồ sơ của: {fields['applicant_name']}")
    c.line(f"Địa chỉ: {fields['address']}")
    c.line(f"Số điện thoại: {fields['phone']}    Email: {fields['email']}")
    c.line(f"Nội dung yêu cầu giải quyết: {fields['procedure']}")
    c.line("1. Thành phần hồ sơ nộp gồm:")
    if listed is None:
        c.line("   - Tờ khai theo mẫu (bản chính): 01 bản")
        c.line("   - Bản sao Căn cước công dân: 01 bản")
    elif listing == "table":
        _listing_table(c, listed)
    else:
        for n, (name, form, count) in enumerate(listed, 1):
            c.line(_LISTING_STYLES[n % len(_LISTING_STYLES)].format(
                n=n, name=name, form=form, Form=form[:1].upper() + form[1:], count=count))
    c.line("2. Số lượng hồ sơ: 01 (bộ)")
    c.line("3. Thời gian giải quyết hồ sơ theo quy định là: 05 (ngày làm việc)")
    c.line(f"4. Thời gian nhận hồ sơ: {rh} giờ {rm} phút, ngày {rd[0]} tháng {rd[1]} năm {rd[2]}")
    c.line(f"5. Thời gian trả kết quả giải quyết hồ sơ: {dh} giờ {dm} phút, ngày {dd[0]} tháng "
           f"{dd[1]} năm {dd[2]}")
    c.line("6. Đăng ký nhận kết quả tại: Bộ phận Một cửa")
    c.y += c.px(0.4)
    c.line("NGƯỜI NỘP HỒ SƠ                                  NGƯỜI TIẾP NHẬN HỒ SƠ", 11, bold=True)
    return c.page("receipt", code=code, fields=dict(fields))


_LISTING_STYLES = ["   {n}. {name} ({form}): {count:02d} bản",
                   "   - {name}, {form}, số lượng: {count:02d}",
                   "   {n}) {name} - {Form} - {count:02d} bản",
                   "   - {name}: {count:02d} {form}"]


def _listing_table(c: Canvas, listed: list[tuple[str, str, int]]) -> None:
    """Item 1 as a ruled table, names wrapped in their cell as an office's template does."""
    x = [c.margin, c.margin + c.px(0.45), c.width - c.margin - c.px(2.9),
         c.width - c.margin - c.px(1.0), c.width - c.margin]
    f = font(11, c.dpi)
    line_h = round(11 * 1.5 * c.dpi / 72)
    pad = c.px(0.05)
    rows = [("TT", "Tên loại giấy tờ", "Hình thức", "Số lượng")]
    rows += [(str(n), name, form[:1].upper() + form[1:], f"{count:02d}")
             for n, (name, form, count) in enumerate(listed, 1)]
    for r, row in enumerate(rows):
        avg = c.draw.textlength("abcdefghij klmnopqrst", font=f) / 21
        wrapped = textwrap.wrap(row[1], width=int((x[2] - x[1] - 2 * pad) / avg))
        height = line_h * len(wrapped) + 2 * pad
        top = c.y
        for k, cell in enumerate(row):
            cell_lines = wrapped if k == 1 else [cell]
            for j, text in enumerate(cell_lines):
                c.draw.text((x[k] + pad, top + pad + j * line_h), text,
                            font=font(11, c.dpi, bold=r == 0), fill=0)
        for k in range(4):
            c.draw.rectangle([x[k], top, x[k + 1], top + height], outline=0,
                             width=max(1, c.dpi // 150))
        c.lines.append(" ".join(row))
        c.y = top + height
    c.y += line_h // 2


def _split_dt(value: str) -> tuple[str, str, tuple[str, str, str]]:
    hm, dmy = value.split()
    h, m = hm.split(":")
    d, mo, y = dmy.split("/")
    return h, m, (d, mo, y)


def text_page(paragraphs: list[str], dpi: int = 300, size: float = 12) -> tuple[Page, list[str]]:
    """Fills a page with paragraphs; returns it and the paragraphs that did not fit."""
    c = Canvas(dpi)
    rest = list(paragraphs)
    while rest and c.paragraph(rest[0], size):
        rest.pop(0)
    return c.page("text"), rest


def id_card_copy(payload: str, name: str, dpi: int = 300) -> Page:
    """A photocopy of a chip ID card front: a framed card with its QR at top right."""
    c = Canvas(dpi)
    c.line("BẢN SAO CĂN CƯỚC CÔNG DÂN", 13, bold=True, center=True)
    x0, y0 = c.margin, c.y + c.px(0.2)
    w, h = c.px(3.37 * 1.4), c.px(2.13 * 1.4)
    c.draw.rectangle([x0, y0, x0 + w, y0 + h], outline=0, width=max(2, dpi // 100))
    q = qr(payload, dpi, 0.9)
    c.paste(q, x0 + w - q.width - c.px(0.15), y0 + c.px(0.15))
    ty = y0 + c.px(0.3)
    for label in ("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "CĂN CƯỚC CÔNG DÂN", f"Họ và tên: {name}"):
        c.draw.text((x0 + c.px(0.2), ty), label, font=font(9, dpi, bold=True), fill=0)
        ty += c.px(0.25)
    return Page(c.image, dpi, "", "id_card", fields={"qr": payload})


def separator(dpi: int = 300, symbology: str = "code39") -> Page:
    c = Canvas(dpi)
    img = code39("PATCHT", dpi) if symbology == "code39" else qr("PATCHT", dpi, 1.2)
    c.paste(img, (c.width - img.width) // 2, c.height // 3)
    return Page(c.image, dpi, "", "separator")


def blank(dpi: int = 300, bleed_through: bool = True, seed: int = 0) -> Page:
    """A duplex backside: paper tone, faint bleed-through of the front, a few specks."""
    rng = random.Random(seed)
    c = Canvas(dpi)
    if bleed_through:
        ghost, _ = text_page(corpus_paragraphs()[rng.randrange(5):][:3], dpi)
        faint = ghost.image.transpose(Image.FLIP_LEFT_RIGHT).point(lambda v: 255 - (255 - v) // 9)
        c.image = faint.filter(ImageFilter.GaussianBlur(2))
    draw = ImageDraw.Draw(c.image)
    for _ in range(12):
        x, y = rng.randrange(c.width), rng.randrange(c.height)
        draw.ellipse([x, y, x + 2, y + 2], fill=rng.randrange(60, 160))
    return Page(c.image, dpi, "", "blank")


@dataclass(frozen=True)
class Scan:
    """How the scanner mangles a sheet."""

    skew: float = 0.0  # degrees, counter-clockwise positive
    upside_down: bool = False
    blur: float = 0.0
    noise: float = 0.0  # std-dev of gaussian noise, grey levels
    jpeg_quality: int | None = 85
    seed: int = 0
    bilevel: bool = False  # black and white, written as CCITT G4 (jpeg_quality is then unused)
    shadow: str = ""  # left | right | top | bottom: the copier lid's shadow along that edge
    light: float = 0.0  # uneven light: share of the brightness lost in the darkest corner


def degrade(page: Page, scan: Scan) -> Image.Image:
    """The sheet as the scanner gives it: greyscale, or colour for a colour page (office())."""
    img = page.image if page.image.mode == "RGB" else page.image.convert("L")
    white = (255, 255, 255) if img.mode == "RGB" else 255
    if scan.skew:
        img = img.rotate(scan.skew, resample=Image.BICUBIC, expand=False, fillcolor=white)
    if scan.upside_down:
        img = img.rotate(180)
    if scan.shadow or scan.light:
        img = _lighting(img, scan)
    if scan.blur:
        img = img.filter(ImageFilter.GaussianBlur(scan.blur))
    if scan.noise:
        rng = np.random.default_rng(scan.seed)
        arr = np.asarray(img, dtype=np.float32)
        arr = arr + rng.normal(0, scan.noise, arr.shape).astype(np.float32)
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    if scan.bilevel:
        img = img.convert("1", dither=Image.Dither.NONE)  # a threshold at mid-grey
    return img


def _lighting(img: Image.Image, scan: Scan) -> Image.Image:
    """The glass's light on the sheet: brighter on one side than the other (a low-frequency
    gradient, darkest in the corner opposite the lamp's start), and the copier lid's shadow, a dark
    band along one edge of the glass with a soft inner side (it does not turn with the sheet)."""
    h, w = img.height, img.width
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    gain = np.ones((h, w), np.float32)
    if scan.light:
        ramp = (xs / w + ys / h) / 2  # 0 at the top left, 1 at the bottom right
        gain *= 1 - scan.light * ramp ** 1.5
    if scan.shadow:
        rng = random.Random(scan.seed)
        dist = {"left": xs, "right": w - 1 - xs, "top": ys, "bottom": h - 1 - ys}[scan.shadow]
        dpi = w / A4_INCHES[0]
        band, soft = dpi * rng.uniform(0.15, 0.35), dpi * rng.uniform(0.1, 0.2)
        depth = rng.uniform(0.6, 0.8)  # the band keeps 20-40% of the light
        inside = np.clip((dist - band) / soft, 0, 1)  # 0 in the band, 1 past its soft side
        gain *= 1 - depth * (1 - inside * inside * (3 - 2 * inside))
    arr = np.asarray(img, dtype=np.float32)
    arr = arr * (gain[..., None] if arr.ndim == 3 else gain)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


# ---- office scans: tinted paper, seal and signature, punch holes -----------------------------

SEAL_RED = (200, 32, 48)
SIGNATURE_BLUE = (28, 48, 150)
TINTS = [(250, 242, 214), (236, 244, 250), (252, 236, 232), (240, 248, 230)]  # cream, blue, pink, green


@dataclass(frozen=True)
class Office:
    """How an office sheet differs from a clean print: coloured paper, the agency's red seal
    stamped over a blue signature under the last lines (its upper part over the text), two punch
    holes along the left edge (ISO 838: 6 mm, 80 mm apart, 12 mm in), seen dark."""

    tint: tuple[int, int, int] = TINTS[0]
    seal: bool = True
    signature: bool = True
    punch_holes: bool = True
    seed: int = 0


def office(page: Page, look: Office = Office()) -> Page:
    """`page` printed on tinted paper and handled at the desk: a colour (RGB) page with the same
    ground truth (the seal's and the signature's marks are not text to read). A blank page gets
    the paper and the holes only."""
    rng = random.Random(look.seed)
    gray = np.asarray(page.image.convert("L"), dtype=np.float32) / 255
    rgb = gray[..., None] * np.array(look.tint, np.float32)  # ink multiplies the paper
    dpi, (h, w) = page.dpi, gray.shape
    if page.kind != "blank" and (look.seal or look.signature):
        rows = np.nonzero((gray < 0.5).sum(axis=1) > 2)[0]
        bottom = int(rows[-1]) if len(rows) else h // 2
        cx, cy = round(w * rng.uniform(0.6, 0.68)), bottom + round(dpi * rng.uniform(0.05, 0.2))
        if look.signature:
            # signed in the space under the last line; the seal then covers its left third
            rgb = _ink(rgb, _signature((w, h), (cx + round(dpi * 0.35), bottom + round(dpi * 0.45)),
                                       dpi, rng), SIGNATURE_BLUE)
        if look.seal:
            rgb = _ink(rgb, _seal((w, h), (cx, cy), dpi, rng), SEAL_RED)
    if look.punch_holes:  # a back is the sheet turned over: its holes are on the right
        rgb = _punch_holes(rgb, dpi, right=page.kind == "blank")
    out = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")
    return Page(out, dpi, page.text, page.kind, page.code, dict(page.fields), office=True)


def _ink(rgb: np.ndarray, cover: Image.Image, colour: tuple[int, int, int]) -> np.ndarray:
    """Ink of `colour` where `cover` (L, 0..255) is set, multiplied over what is printed."""
    a = np.asarray(cover, dtype=np.float32)[..., None] / 255
    return rgb * (1 - a * (1 - np.array(colour, np.float32) / 255))


def _seal(size: tuple[int, int], centre: tuple[int, int], dpi: int, rng: random.Random
          ) -> Image.Image:
    """A round agency seal, 38 mm: two rings, the agency's name round the ring, a star, uneven ink."""
    layer = Image.new("L", size, 0)
    draw = ImageDraw.Draw(layer)
    cx, cy = centre
    mm = dpi / 25.4
    for radius, width in ((19 * mm, 0.9 * mm), (14.5 * mm, 0.5 * mm)):
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], outline=255,
                     width=max(1, round(width)))
    name = "ỦY BAN NHÂN DÂN QUẬN HOÀN KIẾM * TP. HÀ NỘI * "
    f = font(7.5, dpi, bold=True, serif=False)
    for k, ch in enumerate(name):
        angle = 2 * np.pi * k / len(name) - np.pi / 2
        glyph = Image.new("L", (round(4 * mm), round(4 * mm)), 0)
        ImageDraw.Draw(glyph).text((glyph.width / 2, glyph.height / 2), ch, font=f, fill=255,
                                   anchor="mm")
        glyph = glyph.rotate(-np.degrees(angle) - 90, resample=Image.BICUBIC)
        r = 16.8 * mm
        x, y = cx + r * np.cos(angle), cy + r * np.sin(angle)
        layer.paste(255, (round(x - glyph.width / 2), round(y - glyph.height / 2)), glyph)
    star = [(cx + (6 if i % 2 == 0 else 2.4) * mm * np.cos(np.pi * i / 5 - np.pi / 2),
             cy + (6 if i % 2 == 0 else 2.4) * mm * np.sin(np.pi * i / 5 - np.pi / 2))
            for i in range(10)]
    draw.polygon(star, fill=255)
    noise = np.random.default_rng(rng.randrange(2**31)).uniform(0.55, 1.0, (size[1], size[0]))
    inked = np.asarray(layer, dtype=np.float32) * noise * rng.uniform(0.8, 0.95)
    return Image.fromarray(inked.astype(np.uint8)).filter(ImageFilter.GaussianBlur(dpi / 250))


def _signature(size: tuple[int, int], start: tuple[int, int], dpi: int, rng: random.Random
               ) -> Image.Image:
    """A ballpoint signature about 45 mm wide: a looped scribble and an underline."""
    layer = Image.new("L", size, 0)
    draw = ImageDraw.Draw(layer)
    mm = dpi / 25.4
    x0, y0 = start
    k1, k2, phase = rng.uniform(3, 5), rng.uniform(7, 11), rng.uniform(0, np.pi)
    t = np.linspace(0, 1, 400)
    xs = x0 - 20 * mm + 45 * mm * t + 4 * mm * np.sin(2 * np.pi * k2 * t)
    ys = y0 + 6 * mm * np.sin(2 * np.pi * k1 * t + phase) * (1 - 0.5 * t) \
        + 3 * mm * np.cos(2 * np.pi * k2 * t)
    width = max(1, round(0.45 * mm))
    draw.line(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=230, width=width, joint="curve")
    draw.line([(x0 - 18 * mm, y0 + 9 * mm), (x0 + 22 * mm, y0 + 7 * mm)], fill=230, width=width)
    return layer.filter(ImageFilter.GaussianBlur(dpi / 300))


def _punch_holes(rgb: np.ndarray, dpi: int, right: bool = False) -> np.ndarray:
    """Two holes as the glass sees them through the sheet: dark discs with a soft rim."""
    h, w = rgb.shape[:2]
    mm = dpi / 25.4
    layer = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(layer)
    for cy in (h / 2 - 40 * mm, h / 2 + 40 * mm):
        cx, r = (w - 12 * mm if right else 12 * mm), 3 * mm
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=215)
    return _ink(rgb, layer.filter(ImageFilter.GaussianBlur(0.3 * mm)), (40, 40, 44))


def office_scan(seed: int = 0, skew: float = 0.0, noise: float = 4.0, blur: float = 0.6,
                upside_down: bool = False) -> Scan:
    """A colour scan of an office sheet: uneven light and the lid's shadow along one edge."""
    rng = random.Random(seed)
    return Scan(skew=skew, upside_down=upside_down, noise=noise, blur=blur, seed=seed,
                shadow=rng.choice(("left", "right", "top", "bottom")),
                light=rng.uniform(0.2, 0.35))


def office_look(seed: int) -> Office:
    return Office(tint=TINTS[seed % len(TINTS)], seed=seed)


def encode(img: Image.Image, dpi: int, scan: Scan) -> bytes:
    out = io.BytesIO()
    if img.mode == "1":
        img.save(out, "TIFF", compression="group4", dpi=(dpi, dpi))
    elif scan.jpeg_quality:
        img.save(out, "JPEG", quality=scan.jpeg_quality, dpi=(dpi, dpi))
    else:
        img.save(out, "PNG", dpi=(dpi, dpi))
    return out.getvalue()


def write_pdf(pages: list[tuple[Page, Scan]], path: Path, reproducible: bool = False) -> Path:
    """An image-only PDF as a scanner writes it: one JPEG (or PNG->Flate, or CCITT G4) per page,
    nothing else. `reproducible`: no creation date and an /ID made from the content, so that the
    same pages give the same bytes (for files kept in the repository)."""
    blobs = [encode(degrade(p, s), p.dpi, s) for p, s in pages]
    data = img2pdf.convert(blobs, nodate=reproducible)
    if reproducible:  # img2pdf 0.6 compares pikepdf versions as strings: its /ID is random with 10.x
        with pikepdf.open(io.BytesIO(data)) as pdf:
            del pdf.trailer["/ID"]  # else qpdf keeps its first half
            out = io.BytesIO()
            pdf.save(out, linearize=True, deterministic_id=True)
            data = out.getvalue()
    path.write_bytes(data)
    return path


# ---- batches with ground truth --------------------------------------------------------------

APPLICANTS = [
    ("Nguyễn Văn An", "Số 12 phố Huế, phường Hàng Bài, quận Hoàn Kiếm, Hà Nội", "0912345678",
     "an.nguyen@example.vn", "Đăng ký khai sinh"),
    ("Trần Thị Bích Ngọc", "Tổ 5, phường Mường Thanh, thành phố Điện Biên Phủ", "0987654321",
     "ngoc.tran@example.vn", "Cấp giấy chứng nhận quyền sử dụng đất"),
    ("Lê Đức Thắng", "Xóm Đồng Tâm, xã Hưng Đạo, thành phố Cao Bằng", "0203851234",
     "thang.le@example.vn", "Đăng ký thành lập hộ kinh doanh"),
    ("Phạm Thị Hồng Nhung", "Số 8 đường Lương Ngọc Quyến, thành phố Thái Nguyên", "0356789012",
     "nhung.pham@example.vn", "Cấp bản sao trích lục hộ tịch"),
    ("Hoàng Minh Quân", "Số 45 đường Trần Phú, phường Điện Biên, quận Ba Đình, Hà Nội", "0868123456",
     "quan.hoang@example.vn", "Chứng thực bản sao từ bản chính"),
]


def receipt_fields(i: int, day: int = 14) -> dict[str, str]:
    name, address, phone, email, procedure = APPLICANTS[i % len(APPLICANTS)]
    return {"applicant_name": name, "address": address, "phone": phone, "email": email,
            "procedure": procedure, "received_at": f"09:30 {day:02d}/04/2023",
            "due_at": f"16:00 {day + 1:02d}/04/2023"}


@dataclass
class Dossier:
    code: str
    pages: list[int]  # 0-based indexes in the batch
    fields: dict[str, str]
    id_card: dict[str, str] | None = None


@dataclass
class Batch:
    pages: list[tuple[Page, Scan]]
    dossiers: list[Dossier]
    dropped: dict[int, str]  # page -> blank|separator
    unmatched: list[int]

    def write_pdf(self, path: Path) -> Path:
        return write_pdf(self.pages, path)


def make_batch(n_dossiers: int = 3, dpi: int = 300, seed: int = 1, text_pages: int = 1,
               skews: tuple[float, ...] = (0.0,), duplex_blanks: bool = False,
               upside_down_every: int = 0, noise: float = 4.0, blur: float = 0.6,
               leading_unmatched: int = 0, symbologies: tuple[str, ...] = ("code128",),
               with_id_card: bool = True, separators: bool = False,
               office_dossiers: tuple[int, ...] = ()) -> Batch:
    """A feeder stack of dossiers, each: receipt, ID-card copy, `text_pages` prose pages.
    The dossiers numbered in `office_dossiers` (0-based) come as office scans (office(), office_scan():
    colour, tinted paper, seal and signature, punch holes, lid shadow, uneven light), their
    receipt followed by its back, blank but for the holes and the shadow."""
    rng = random.Random(seed)
    paragraphs = corpus_paragraphs()
    pages: list[tuple[Page, Scan]] = []
    dossiers: list[Dossier] = []
    dropped: dict[int, str] = {}
    unmatched: list[int] = []
    counter = 0

    in_office = False  # the dossier being laid out is an office one

    def scan() -> Scan:
        nonlocal counter
        counter += 1
        up = bool(upside_down_every) and counter % upside_down_every == 0
        if in_office:
            return office_scan(seed * 1000 + counter, skews[counter % len(skews)], noise, blur, up)
        return Scan(skew=skews[counter % len(skews)], upside_down=up, blur=blur, noise=noise,
                    seed=seed * 1000 + counter)

    def sheet(page: Page) -> Page:
        return office(page, office_look(seed * 1000 + counter)) if in_office else page

    def add(page: Page, back: bool = False) -> int:
        pages.append((sheet(page), scan()))
        if duplex_blanks or back:
            pages.append((sheet(blank(dpi, seed=seed + len(pages))), scan()))
            dropped[len(pages) - 1] = "blank"
        return len(pages) - 2 if duplex_blanks or back else len(pages) - 1

    cursor = rng.randrange(len(paragraphs))

    def prose() -> Page:
        nonlocal cursor
        chunk = [paragraphs[(cursor + i) % len(paragraphs)] for i in range(8)]
        page, rest = text_page(chunk, dpi)
        cursor += len(chunk) - len(rest)
        return page

    for _ in range(leading_unmatched):
        unmatched.append(add(prose()))
    for i in range(n_dossiers):
        if separators and i:
            pages.append((separator(dpi), scan()))
            dropped[len(pages) - 1] = "separator"
        day = 1 + rng.randrange(27)
        code = (f"000.00.{rng.randrange(10, 99)}.H{rng.randrange(10, 99)}-2304{day:02d}"
                f"-{rng.randrange(1, 9999):04d}")
        fields = receipt_fields(seed + i, day)
        name, address = fields["applicant_name"], fields["address"]
        sym = symbologies[i % len(symbologies)]
        in_office = i in office_dossiers
        own = [add(receipt(code, fields, dpi, sym), back=in_office)]
        card = None
        if with_id_card:
            cid = f"0010{90 + i:02d}{rng.randrange(10**6):06d}"
            card = {"citizen_id": cid, "full_name": name, "date_of_birth": "1990-03-15",
                    "sex": "Nam", "permanent_address": address, "id_issue_date": "2021-04-20"}
            payload = f"{cid}||{name}|15031990|Nam|{address}|20042021"
            own.append(add(id_card_copy(payload, name, dpi)))
        for _ in range(text_pages):
            own.append(add(prose()))
        dossiers.append(Dossier(code, own, fields, card))
    return Batch(pages, dossiers, dropped, unmatched)


# ---- scans kept in the repository ------------------------------------------------------------

DATA = PROSE.parent
RECEIVED_TEXT = DATA / "scan-text.pdf"  # one page of prose, no code (~18 kB)
RECEIVED_RECEIPT = DATA / "scan-receipt.pdf"  # a receipt with its Code 128 (~37 kB)
RECEIVED_PHOTO = DATA / "scan-photo.jpg"  # a page of prose as a JPEG (~44 kB)


def write_received_scans() -> None:
    """(Re)writes the small scans above that the push-receiver tests send as a scanner would:
    `python -c "from tests import synth; synth.write_received_scans()"`."""
    lossless = Scan(jpeg_quality=None)
    text, _ = text_page(corpus_paragraphs()[:2], 100)
    write_pdf([(text, lossless)], RECEIVED_TEXT)
    write_pdf([(receipt("000.00.04.H40-230414-0123", receipt_fields(0), 120), lossless)],
              RECEIVED_RECEIPT)
    RECEIVED_PHOTO.write_bytes(encode(text.image, 100, Scan(jpeg_quality=50)))


ASN_BATCH = DATA / "asn-batch.pdf"  # 10 pages, Code 39 ASN00123..ASN00127 on 0, 2, 3, 6, 8 (~40 kB)
ASN_CODES = {0: "ASN00123", 2: "ASN00124", 3: "ASN00125", 6: "ASN00126", 8: "ASN00127"}
A4_300 = (2481, 3508)  # A4 (595.28 x 841.89 pt) at 300 dpi in whole pixels, rounded up as poppler does


def asn_sheet(code: str, dpi: int = 300) -> Page:
    """A cover sheet of one dossier: a heading, a line saying which code it carries, and that code
    as a Code 39 with its human-readable text under the bars."""
    c = Canvas(dpi)
    c.line(f"Tờ bìa hồ sơ {code}", 11)
    c.y += c.px(0.2)
    c.line(f"Trang này mang mã vạch Code 39 của hồ sơ “{code}”.", 11)
    c.y += c.px(0.3)
    bars = code39(code, dpi)
    c.paste(bars, c.margin, c.y)
    value = font(16, dpi, serif=False)
    c.draw.text((c.margin + (bars.width - c.draw.textlength(code, font=value)) / 2,
                 c.y + bars.height), code, font=value, fill=0)
    c.lines.append(code)
    return c.page("text", code=code)


def asn_batch(path: Path = ASN_BATCH) -> Batch:
    """A 10-page batch like paperless-ngx's split-by-asn-1.pdf, made here: five dossier cover
    sheets with Code 39 codes ASN00123..ASN00127 on pages 0, 2, 3, 6 and 8, the other five pages
    blank backsides; image-only A4 at 300 dpi, lightly skewed and blurred, scanned black and white
    (CCITT G4: the bleed-through falls under the threshold, specks stay). With the grammar
    `^(?P<agency>ASN)(?P<date>)(?P<seq>\\d{5})$` it splits into five one-page dossiers, the blanks
    dropped, as the peer file does. Written the same bytes each time:
    `python -c "from tests import synth; synth.asn_batch()"`."""
    pages: list[tuple[Page, Scan]] = []
    dossiers: list[Dossier] = []
    dropped: dict[int, str] = {}
    for index in range(10):
        code = ASN_CODES.get(index)
        page = asn_sheet(code) if code else blank(seed=index)
        sheet = Image.new("L", A4_300, 255)
        sheet.paste(page.image, (0, 0))
        page.image = sheet
        pages.append((page, Scan(skew=(0.3, -0.4, 0.2)[index % 3], blur=0.5, bilevel=True,
                                 seed=index)))
        if code:
            dossiers.append(Dossier(code, [index], {}))
        else:
            dropped[index] = "blank"
    write_pdf(pages, path, reproducible=True)
    return Batch(pages, dossiers, dropped, [])


# ---- dossiers with known components (thành phần hồ sơ) -------------------------------------

A5_LANDSCAPE = (8.27, 5.83)
A3_LANDSCAPE = (16.54, 11.69)


@dataclass(frozen=True)
class DocumentKind:
    """A document an applicant submits: the names a receipt may give it, its title as printed,
    its component type, form, how many pages and on what paper."""

    names: tuple[str, ...]  # wordings on receipts; the first is the usual one
    title: tuple[str, ...]  # all-caps title lines ((): an ID-card copy)
    type: str
    form: str = "bản chính"
    pages: tuple[int, int] = (1, 1)  # fewest, most
    sizes: tuple[tuple[float, float], ...] = (A4_INCHES,)
    motto: bool = True
    agency: str = ""  # issuer's name above the motto (decisions, certificates)


DOCUMENT_KINDS = [
    DocumentKind(("Bản sao Căn cước công dân", "Căn cước công dân của người nộp hồ sơ",
                  "Bản sao CCCD người yêu cầu"), (), "id_card", "bản sao", (1, 2)),
    DocumentKind(("Tờ khai đăng ký khai sinh", "Tờ khai đăng ký khai sinh theo mẫu",
                  "Tờ khai khai sinh"), ("TỜ KHAI ĐĂNG KÝ KHAI SINH",), "form", pages=(1, 2)),
    DocumentKind(("Đơn đề nghị cấp bản sao trích lục hộ tịch",
                  "Đơn đề nghị cấp trích lục hộ tịch"),
                 ("ĐƠN ĐỀ NGHỊ CẤP BẢN SAO", "TRÍCH LỤC HỘ TỊCH"), "form"),
    DocumentKind(("Đơn đăng ký cấp giấy chứng nhận quyền sử dụng đất",
                  "Đơn đăng ký, cấp Giấy chứng nhận QSDĐ theo mẫu 04a/ĐK"),
                 ("ĐƠN ĐĂNG KÝ, CẤP GIẤY CHỨNG NHẬN", "QUYỀN SỬ DỤNG ĐẤT"), "form", pages=(1, 2)),
    DocumentKind(("Giấy chứng nhận quyền sử dụng đất",
                  "Giấy chứng nhận quyền sử dụng đất, quyền sở hữu nhà ở",
                  "Giấy chứng nhận QSD đất đã cấp"),
                 ("GIẤY CHỨNG NHẬN", "QUYỀN SỬ DỤNG ĐẤT, QUYỀN SỞ HỮU NHÀ Ở"), "certificate",
                 "bản sao chứng thực", (1, 3), (A4_INCHES, A3_LANDSCAPE)),
    DocumentKind(("Giấy chứng nhận kết hôn", "Giấy chứng nhận đăng ký kết hôn của cha, mẹ"),
                 ("GIẤY CHỨNG NHẬN KẾT HÔN",), "certificate", "bản sao chứng thực",
                 sizes=(A4_INCHES, A5_LANDSCAPE)),
    DocumentKind(("Giấy khai sinh", "Bản sao Giấy khai sinh của người được cấp"),
                 ("GIẤY KHAI SINH",), "certificate", "bản sao", sizes=(A4_INCHES, A5_LANDSCAPE)),
    DocumentKind(("Quyết định giao đất", "Quyết định giao đất, cho thuê đất của UBND"),
                 ("QUYẾT ĐỊNH", "VỀ VIỆC GIAO ĐẤT CHO HỘ GIA ĐÌNH"), "decision",
                 "bản sao chứng thực", (1, 2), agency="ỦY BAN NHÂN DÂN HUYỆN ĐÔNG ANH"),
    DocumentKind(("Biên bản xác định ranh giới, mốc giới thửa đất",
                  "Biên bản xác định ranh giới thửa đất"),
                 ("BIÊN BẢN XÁC ĐỊNH RANH GIỚI, MỐC GIỚI", "THỬA ĐẤT"), "minutes", pages=(1, 2)),
    DocumentKind(("Sơ đồ thửa đất", "Sơ đồ thửa đất, bản vẽ hiện trạng"), ("SƠ ĐỒ THỬA ĐẤT",),
                 "plan", sizes=(A4_INCHES, A3_LANDSCAPE), motto=False),
    DocumentKind(("Hợp đồng chuyển nhượng quyền sử dụng đất",
                  "Hợp đồng chuyển nhượng QSDĐ đã công chứng"),
                 ("HỢP ĐỒNG CHUYỂN NHƯỢNG", "QUYỀN SỬ DỤNG ĐẤT"), "contract", "bản chính",
                 (2, 3)),
    DocumentKind(("Đơn đề nghị đăng ký hộ kinh doanh", "Giấy đề nghị đăng ký hộ kinh doanh"),
                 ("ĐƠN ĐỀ NGHỊ ĐĂNG KÝ HỘ KINH DOANH",), "form"),
    DocumentKind(("Giấy ủy quyền", "Văn bản ủy quyền nộp hồ sơ"), ("GIẤY ỦY QUYỀN",), "other"),
]


@dataclass
class ComponentTruth:
    type: str
    title: str  # as printed, joined
    listed_as: str  # the receipt's name of it ("" for the receipt)
    pages: list[int]  # batch page indexes, blank backs left out (the pipeline drops them)


@dataclass
class ComponentDossier:
    code: str
    pages: list[int]  # kept pages, blank backs left out
    listed: list[tuple[str, str, int]]  # the receipt's item 1: name, form, count
    components: list[ComponentTruth]
    missing: list[str]  # listed names with no pages
    listing: str  # lines | table


@dataclass
class ComponentBatch:
    pages: list[tuple[Page, Scan]]
    dossiers: list[ComponentDossier]
    dropped: list[int]  # blank backs

    def write_pdf(self, path: Path) -> Path:
        return write_pdf(self.pages, path)


def document_page(kind: DocumentKind, paragraphs: list[str], dpi: int = 200,
                  size_in: tuple[float, float] = A4_INCHES, first: bool = True,
                  heading: str = "") -> Page:
    """One page of a submitted document: the first with the issuer, the motto block and the
    all-caps title near the top; a continuation with at most a numbered heading, then prose."""
    c = Canvas(dpi, margin_in=0.7, size_in=size_in)
    if first:
        if kind.agency:
            c.line(kind.agency, 11, bold=True, center=True)
        if kind.motto:
            c.line("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", 12, bold=True, center=True)
            c.line("Độc lập - Tự do - Hạnh phúc", 12, bold=True, center=True)
            c.y += c.px(0.2)
        for line in kind.title:
            c.line(line, 14, bold=True, center=True)
        c.y += c.px(0.15)
        if kind.type == "plan":
            c.draw.polygon([(c.width * 0.3, c.y + c.px(0.3)), (c.width * 0.7, c.y + c.px(0.1)),
                            (c.width * 0.65, c.y + c.px(2.0)), (c.width * 0.35, c.y + c.px(1.8))],
                           outline=0, width=max(2, dpi // 100))
            c.y += c.px(2.3)
    elif heading:
        c.line(heading, 12, bold=True)
    for para in paragraphs:
        if not c.paragraph(para, 11):
            break
    return c.page("text")


def id_card_back(dpi: int = 200) -> Page:
    """The back of an ID-card copy: a framed card with its features and issuer, no title."""
    c = Canvas(dpi)
    x0, y0 = c.margin, c.margin + c.px(0.4)
    w, h = c.px(3.37 * 1.4), c.px(2.13 * 1.4)
    c.draw.rectangle([x0, y0, x0 + w, y0 + h], outline=0, width=max(2, dpi // 100))
    ty = y0 + c.px(0.3)
    for label in ("Đặc điểm nhân dạng: Nốt ruồi cách 2 cm trên đầu lông mày phải",
                  "Ngày, tháng, năm: 20/04/2021", "Ngón trỏ trái      Ngón trỏ phải"):
        c.draw.text((x0 + c.px(0.2), ty), label, font=font(8, dpi), fill=0)
        ty += c.px(0.3)
    return Page(c.image, dpi, "", "id_card")


def make_component_batch(n_dossiers: int = 3, seed: int = 1, dpi: int = 200,
                         listed_range: tuple[int, int] = (4, 8), missing_rate: float = 0.25,
                         blank_rate: float = 0.25, noise: float = 3.0, blur: float = 0.4,
                         skews: tuple[float, ...] = (0.0, 0.4, -0.6)) -> ComponentBatch:
    """A feeder stack of dossiers with known components: each a receipt whose item 1 lists
    4-8 documents (numbered lines or a table, wording varied), then those documents in the
    order listed: ID-card copies with the citizen QR (sometimes with their back), forms with
    the motto block and an all-caps title, certificates, decisions, plans, contracts, some of
    several pages, some on A5 or A3 landscape paper, with blank backs here and there; sometimes
    one listed document is left out (the receipt lists it, the stack lacks it)."""
    rng = random.Random(seed)
    # Body text only: the prose's own headings (all caps, short) would be titles of their own.
    paragraphs = [p for p in corpus_paragraphs(450) if len(p) > 80]
    pages: list[tuple[Page, Scan]] = []
    dossiers: list[ComponentDossier] = []
    dropped: list[int] = []
    cursor = rng.randrange(len(paragraphs))

    def add(page: Page) -> int:
        pages.append((page, Scan(skew=rng.choice(skews), blur=blur, noise=noise,
                                 seed=seed * 1000 + len(pages))))
        return len(pages) - 1

    def prose(k: int) -> list[str]:
        nonlocal cursor
        chunk = [paragraphs[(cursor + i) % len(paragraphs)] for i in range(k)]
        cursor += k
        return chunk

    for d in range(n_dossiers):
        day = 1 + rng.randrange(27)
        code = (f"000.00.{rng.randrange(10, 99)}.H{rng.randrange(10, 99)}-2304{day:02d}"
                f"-{rng.randrange(1, 9999):04d}")
        fields = receipt_fields(seed + d, day)
        n_listed = rng.randint(*listed_range)
        kinds = [DOCUMENT_KINDS[0], *rng.sample(DOCUMENT_KINDS[1:], n_listed - 1)]
        rng.shuffle(kinds)
        names = [rng.choice(k.names) for k in kinds]
        listed = [(name, k.form, rng.choice((1, 1, 1, 2))) for name, k in zip(names, kinds,
                                                                                strict=True)]
        listing = rng.choice(("lines", "table"))
        skip = rng.randrange(n_listed) if rng.random() < missing_rate else -1
        receipt_page = add(receipt(code, fields, dpi, listed=listed, listing=listing))
        components = [ComponentTruth("receipt", "GIẤY TIẾP NHẬN HỒ SƠ VÀ HẸN TRẢ KẾT QUẢ", "",
                                     [receipt_page])]
        kept = [receipt_page]
        if rng.random() < blank_rate:
            dropped.append(add(blank(dpi, seed=len(pages))))
        for k, (kind, name) in enumerate(zip(kinds, names, strict=True)):
            if k == skip:
                continue
            own: list[int] = []
            if kind.type == "id_card":
                cid = f"0010{90 + d % 10:02d}{rng.randrange(10**6):06d}"
                person = fields["applicant_name"]
                payload = f"{cid}||{person}|15031990|Nam|{fields['address']}|20042021"
                own.append(add(id_card_copy(payload, person, dpi)))
                if rng.random() < 0.5:
                    own.append(add(id_card_back(dpi)))
            else:
                size = rng.choice(kind.sizes)
                count = rng.randint(*kind.pages)
                for p in range(count):
                    heading = rng.choice(("", "", "II. NỘI DUNG KÊ KHAI", "III. GHI CHÚ"))
                    own.append(add(document_page(kind, prose(2 if p == 0 else 3), dpi, size,
                                                 first=p == 0, heading=heading)))
            if rng.random() < blank_rate:
                dropped.append(add(blank(dpi, seed=len(pages))))
            kept += own
            components.append(ComponentTruth(kind.type, " ".join(kind.title), name, own))
        missing = [names[skip]] if skip >= 0 else []
        dossiers.append(ComponentDossier(code, kept, listed, components, missing, listing))
    return ComponentBatch(pages, dossiers, dropped)


if __name__ == "__main__":  # python -m tests.synth OUT.pdf: the bundled sample batch
    import sys

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "examples/sample-batch.pdf")
    out.parent.mkdir(parents=True, exist_ok=True)
    sample = make_batch(n_dossiers=2, dpi=200, seed=7, text_pages=1, skews=(0.0, 3.0, -4.5),
                        upside_down_every=5, duplex_blanks=False, leading_unmatched=0)
    sample.pages.insert(3, (blank(200, seed=3), Scan(seed=3)))
    write_pdf(sample.pages, out)
    print(out, len(sample.pages), "pages:", ", ".join(d.code for d in sample.dossiers))

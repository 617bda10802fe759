"""Printable sheets that staff put into a stack: a separator sheet (PATCH-T by default) between
dossiers without a receipt barcode, and the "KẾT QUẢ" sheet in front of result documents.

Each is one A4 page, a barcode (Code 39, read at any resolution sohoa scans at, and in the
straightened second look) with its meaning printed large for the person feeding the scanner. The
barcode value is the setting's (`SOHOA_SEPARATOR_BARCODES`, `SOHOA_RESULT_SEPARATOR_BARCODES`),
so a sheet printed here is the one the splitter looks for.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zxingcpp
from PIL import Image, ImageDraw, ImageFont

DPI = 200
A4 = (round(8.27 * DPI), round(11.69 * DPI))
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")


@dataclass(frozen=True)
class Sheet:
    title: str  # printed large: what the sheet means
    lines: tuple[str, ...]  # printed below: how to use it
    value: str  # the barcode's content


def result_sheet(value: str = "SOHOA-RESULT") -> Sheet:
    return Sheet("KẾT QUẢ", ("Các trang sau tờ này là kết quả giải quyết hồ sơ",
                             "(quyết định, giấy chứng nhận, giấy phép …), đến tờ phân cách kế tiếp.",
                             "Mỗi kết quả mang mã hồ sơ của nó."), value)


def separator_sheet(value: str = "PATCHT") -> Sheet:
    return Sheet("TỜ PHÂN CÁCH", ("Hồ sơ mới bắt đầu sau tờ này.",), value)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.truetype(str(FONT), size) if FONT.exists() else ImageFont.load_default()


def _barcode(value: str, width: int, height: int) -> Image.Image:
    code = zxingcpp.create_barcode(value, zxingcpp.BarcodeFormat.Code39)
    bars = Image.fromarray(np.asarray(zxingcpp.write_barcode_to_image(code, scale=1)))
    return bars.resize((width, height), Image.Resampling.NEAREST)


def render(sheet: Sheet) -> Image.Image:
    """The sheet as a 1-bit A4 page at 200 dpi."""
    page = Image.new("L", A4, 255)
    draw = ImageDraw.Draw(page)
    x, y = DPI, DPI
    draw.text((A4[0] // 2, y), sheet.title, font=_font(DPI // 2), fill=0, anchor="mt")
    y += DPI * 3 // 4
    for line in sheet.lines:
        draw.text((A4[0] // 2, y), line, font=_font(DPI // 9), fill=0, anchor="mt")
        y += DPI // 5
    bars = _barcode(sheet.value, A4[0] - 2 * x, DPI)
    page.paste(bars, (x, y + DPI // 3))
    draw.text((A4[0] // 2, y + DPI // 3 + DPI + DPI // 10), sheet.value, font=_font(DPI // 8),
              fill=0, anchor="mt")
    return page.convert("1")


def sheet_pdf(sheet: Sheet) -> bytes:
    out = io.BytesIO()
    render(sheet).save(out, "PDF", resolution=DPI)
    return out.getvalue()

"""Tesseract reads the part of a page that holds its ink: the words, their boxes and the text
layer come out where they are on the whole page."""

from __future__ import annotations

import re
import subprocess

import numpy as np
from PIL import Image, ImageDraw

from ocr import pdf as pdfmod
from ocr import tesseract
from tests import synth


def _page_with_text_at(x: int, y: int, dpi: int = 200) -> Image.Image:
    """An A4 page, white but for two lines of print at (x, y) pixels."""
    img = Image.new("L", (round(8.27 * dpi), round(11.69 * dpi)), 255)
    draw = ImageDraw.Draw(img)
    f = synth.font(12, dpi)
    draw.text((x, y), "Cộng hòa xã hội chủ nghĩa Việt Nam", font=f, fill=0)
    draw.text((x, y + 60), "Độc lập Tự do Hạnh phúc", font=f, fill=0)
    return img


def test_a_page_with_wide_margins_is_read_from_its_inked_part() -> None:
    """Given print in the lower right of a page, when cropped for reading, then the part holds
    all the ink with a margin and starts where the ink does."""
    img = _page_with_text_at(700, 1500)
    part, (x0, y0) = tesseract.crop_to_content(img, 200)
    ink = np.argwhere(np.asarray(img) < 128)
    assert part.width * part.height < 0.2 * img.width * img.height
    assert x0 <= ink[:, 1].min() and y0 <= ink[:, 0].min()
    assert x0 + part.width > ink[:, 1].max() and y0 + part.height > ink[:, 0].max()


def test_specks_in_the_margin_do_not_stop_the_crop() -> None:
    """Given single dark pixels (dust) in the corners, then the part is still the print's."""
    img = _page_with_text_at(700, 1500)
    for xy in ((3, 3), (img.width - 4, 5), (6, img.height - 3)):
        img.putpixel(xy, 0)
    _, (x0, y0) = tesseract.crop_to_content(img, 200)
    assert (x0, y0) > (600, 1400)


def test_a_page_inked_to_its_edges_is_read_whole() -> None:
    """Given a frame drawn along the page's edges, then nothing is cut."""
    img = _page_with_text_at(700, 1500)
    ImageDraw.Draw(img).rectangle((2, 2, img.width - 3, img.height - 3), outline=0, width=3)
    part, offset = tesseract.crop_to_content(img, 200)
    assert (part.size, offset) == (img.size, (0, 0))


def test_words_read_from_the_part_keep_their_places_on_the_page() -> None:
    """Given print in the lower right, when read, then the words are those printed, their boxes
    in the whole page's pixels, and the text layer puts each word at its box (pdftotext)."""
    img = _page_with_text_at(700, 1500)
    result = tesseract.run(img, 200, "vie")
    assert "Cộng hòa xã hội chủ nghĩa Việt Nam" in result.text
    first = result.words[0]
    assert abs(first.box[0] - 700) < 15 and abs(first.box[1] - 1500) < 40
    page = pdfmod.page_pdf(img, 200, result.text_pdf)
    words = subprocess.run(["pdftotext", "-bbox", "-", "-"], input=page, capture_output=True,
                           check=True).stdout.decode()
    x_min, y_min = (float(v) for v in re.search(r'xMin="([\d.]+)" yMin="([\d.]+)"', words).groups())
    assert abs(x_min - first.box[0] * 72 / 200) < 3 and abs(y_min - first.box[1] * 72 / 200) < 6

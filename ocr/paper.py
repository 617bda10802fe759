"""The paper under the ink: what an office scan adds that is not content.

Office sheets come on tinted paper, with the agency's red seal stamped over a blue signature,
punch holes along an edge, the copier lid's shadow along another, and light that fades across the
glass. None of it is text, and all of it fools a reader that thresholds one grey image:

- `ink_gray`: a colour page's grey in which only dark, colourless ink is dark. Luminance makes a
  red seal as dark as text (a seal over the last lines hides them from Tesseract); here a pixel's
  grey is its brightest channel plus its chroma beyond the paper's own tint, so red seal ink and
  blue signature ink come out (nearly) as paper while black print stays black, also where it lies
  under the seal (ink over ink is darker in every channel). The price: text printed in colour is
  dropped too.
- `flatten`: divides the page by its paper's brightness, estimated at ~25 dpi by a grey closing
  (what is darker than its surroundings over less than ~9 mm is ink; what is wider is the light),
  so that uneven light and soft shadows stop looking like ink. A page lit evenly (the usual case)
  is returned as it is, after a check that costs about a millisecond.
- `for_reading`: what Tesseract reads: the ink grey, flattened, and on a page with coloured ink
  that ink, its JPEG rim and the black spots where the signature crosses the seal made paper (else
  Tesseract reads them as stray letters and punctuation).
- `edge_marks`: which dark blobs are punch holes (round, 4-10 mm, near an edge) or the lid's shadow
  (a band along the border), for blank detection to leave out.

Greyscale pages skip `ink_gray` entirely; `flatten` only acts when the check triggers, so the
clean-page path costs what it did (BENCHMARKS.md, "Office scans").
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

BACKGROUND_DPI = 25  # one pixel ~ 1 mm: the gaps between text lines are still pure paper
CLOSING_MM = 9.0  # dark features narrower than this are ink (text, holes), wider ones the light
EVEN_LIGHT = 0.88  # darkest paper / brightest paper above this: lit evenly, nothing to do
DARK = 127  # a pixel darker than this is ink to OCR's crop (tesseract.crop_to_content)
MARK_CHROMA = 40  # coloured ink differs from grey by more than this (print on tint: < 40)


def components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels and stats of the 8-connected blobs of a 0/1 mask: OpenCV's BBDT finds the same
    ones, labelled alike, as its default, in a third of the time on one thread."""
    _n, labels, stats, _ = cv2.connectedComponentsWithStatsWithAlgorithm(
        mask, 8, cv2.CV_32S, cv2.CCL_BBDT)
    return labels, stats


def percentile(pixels: np.ndarray, q: float) -> float:
    """`np.percentile(pixels, q)` of 8-bit pixels, the same value (linear between the two nearest
    ranks), counted from their histogram instead of partitioning a copy of the page: a fortieth
    of the time on a page at 100 dpi."""
    if pixels.dtype != np.uint8 or pixels.size == 0 or pixels.size >= 1 << 24:
        return float(np.percentile(pixels, q))  # beyond float32's exact counts: numpy's way
    below = np.cumsum(cv2.calcHist([pixels], [0], None, [256], [0, 256]).ravel())
    rank = (pixels.size - 1) * (q / 100)
    k = int(np.floor(rank))
    lo = float(np.searchsorted(below, k, side="right"))
    hi = float(np.searchsorted(below, min(k + 1, pixels.size - 1), side="right"))
    t = rank - k
    return hi - (hi - lo) * (1 - t) if t >= 0.5 else lo + (hi - lo) * t  # as numpy's lerp


def colour(img: Image.Image) -> tuple[int, ...] | int:
    """The brightest common colour of a scan: its paper, usually white (a grey level for a grey
    scan). Turned pages fill the corners they uncover with it."""
    step = max(1, min(img.size) // 200)  # a grid of pixels, not the page: no copy of it all
    small = img.resize((max(1, img.width // step), max(1, img.height // step)), Image.NEAREST)
    sample = np.asarray(small.convert("L") if small.mode == "1" else small)
    if sample.ndim == 2:
        return int(percentile(sample, 90))
    return tuple(int(percentile(np.ascontiguousarray(sample[..., c]), 90))
                 for c in range(sample.shape[-1]))


def ink_gray(img: Image.Image) -> np.ndarray:
    """The page as grey pixels in which only colourless ink is dark (see the module docstring).
    Greyscale pages are returned as they are (no copy); bilevel ones as 0/255. A colour page
    is worked in bands of rows: whole, its temporaries took ten times the page's grey size
    (80 MB at 300 dpi, BENCHMARKS.md), for the same pixels."""
    if img.mode == "L":
        return np.asarray(img)
    if img.mode != "RGB":
        return np.asarray(img.convert("L"))
    rgb = np.asarray(img)
    # the paper's own tint is not ink's colour: counted, it would lift the paper to white where
    # it is bright and hide uneven light from flatten()
    step = max(1, min(rgb.shape[:2]) // 200)
    *_, sample_b, sample_c = _channels(rgb[::step, ::step])
    tint = sample_c[sample_b >= np.percentile(sample_b, 60)]
    tint_level = int(np.median(tint)) if tint.size else 0
    out = np.empty(rgb.shape[:2], np.uint8)
    for top in range(0, rgb.shape[0], _BAND):
        bottom = min(rgb.shape[0], top + _BAND)
        lo, hi = max(0, top - 1), min(rgb.shape[0], bottom + 1)  # a row more for the 3 x 3 look
        out[top:bottom] = _ink_band(rgb[lo:hi], tint_level)[top - lo:top - lo + bottom - top]
    return out


_BAND = 256  # rows of a colour page worked at once by ink_gray()


def _channels(rgb: np.ndarray) -> tuple[np.ndarray, ...]:
    """r, g, b, the brightest of them, and the chroma (brightest minus darkest) of each pixel."""
    r, g, b = cv2.split(np.ascontiguousarray(rgb))
    brightest = cv2.max(cv2.max(r, g), b)
    return r, g, b, brightest, cv2.subtract(brightest, cv2.min(cv2.min(r, g), b))


def _ink_band(rgb: np.ndarray, tint: int) -> np.ndarray:
    *_, brightest, chroma = _channels(rgb)
    chroma = cv2.subtract(chroma, tint)
    # JPEG keeps colour at half resolution: a coloured stroke's rim comes out darker than its
    # colour says. A pixel that is not dark takes the strongest chroma around it, if that is ink's.
    around = cv2.dilate(chroma, np.ones((3, 3), np.uint8))
    rim = cv2.bitwise_and(cv2.compare(around, 2 * MARK_CHROMA, cv2.CMP_GT),
                          cv2.compare(brightest, 80, cv2.CMP_GT))
    chroma = cv2.max(chroma, cv2.bitwise_and(around, rim))
    return cv2.add(brightest, chroma)  # saturates at 255


def _background(gray: np.ndarray, dpi: int) -> np.ndarray:
    """The paper's brightness at BACKGROUND_DPI: the page shrunk, then closed (max then min) over
    CLOSING_MM, then smoothed."""
    scale = min(1.0, BACKGROUND_DPI / dpi)
    small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) \
        if scale < 1 else gray
    side = max(3, round(CLOSING_MM / 25.4 * dpi * scale) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (side, side))
    closed = cv2.morphologyEx(small, cv2.MORPH_CLOSE, kernel, borderType=cv2.BORDER_REPLICATE)
    return cv2.blur(closed, (3, 3))


def lit_evenly(background: np.ndarray) -> bool:
    """True when the darkest paper is nearly as bright as the brightest (2nd and 99th centiles)."""
    lo, hi = percentile(background, 2), percentile(background, 99)
    return bool(hi <= 0 or lo / hi >= EVEN_LIGHT)


def flatten(gray: np.ndarray, dpi: int) -> np.ndarray:
    """`gray` with its paper brought to white where the light was uneven or shadowed; `gray`
    itself (no copy) when the page was lit evenly."""
    if gray.size == 0:
        return gray
    background = _background(gray, dpi)
    if lit_evenly(background):
        return gray
    full = cv2.resize(background, (gray.shape[1], gray.shape[0]), interpolation=cv2.INTER_LINEAR)
    return cv2.divide(gray, cv2.max(full, 1), scale=255)


OVERVIEW_DPI = 100  # what blank detection and deskew look at


def overview(gray: np.ndarray, dpi: int) -> tuple[np.ndarray, int]:
    """The page as blank detection and deskew look at it, and its resolution: area-averaged down
    to OVERVIEW_DPI when finer, its uneven light flattened. A page stage makes it once for both
    (ingest/page_stages.py): the two took it each, a sixth of their time."""
    scale = OVERVIEW_DPI / dpi
    small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) \
        if scale < 1 else gray
    return flatten(small, min(dpi, OVERVIEW_DPI)), min(dpi, OVERVIEW_DPI)


def coloured_ink(img: Image.Image) -> np.ndarray | None:
    """Where a colour page carries coloured ink (seal, signature): pixels far more saturated than
    its paper and clearly coloured, labelled by their strongest channel (1 red, 2 green, 3 blue);
    None for a page without any (or not in colour). Worked in bands of rows, as ink_gray()."""
    if img.mode != "RGB":
        return None
    rgb = np.asarray(img)
    step = max(1, min(rgb.shape[:2]) // 200)
    *_, sample_b, sample_c = _channels(rgb[::step, ::step])
    sample_s = cv2.divide(sample_c, cv2.max(sample_b, 1), scale=255)
    paper = sample_s[sample_b >= np.percentile(sample_b, 60)]
    floor = max(90.0, 2 * float(np.median(paper)) if paper.size else 0.0)
    out = np.empty(rgb.shape[:2], np.uint8)
    for top in range(0, rgb.shape[0], _BAND):
        out[top:top + _BAND] = _marks_band(rgb[top:top + _BAND], floor)
    if cv2.countNonZero(out) < out.size * 1e-4:
        return None
    return out


def _marks_band(rgb: np.ndarray, floor: float) -> np.ndarray:
    r, g, _, brightest, chroma = _channels(rgb)
    saturation = cv2.divide(chroma, cv2.max(brightest, 1), scale=255)
    marks = cv2.bitwise_and(cv2.compare(saturation, floor, cv2.CMP_GT),
                            cv2.compare(chroma, MARK_CHROMA, cv2.CMP_GT))
    red = cv2.compare(r, brightest, cv2.CMP_EQ)
    green = cv2.bitwise_and(cv2.compare(g, brightest, cv2.CMP_EQ), cv2.bitwise_not(red))
    labelled = cv2.bitwise_and(marks, cv2.bitwise_or(cv2.bitwise_and(red, 1),
                                                     cv2.bitwise_and(green, 2)))
    blue = cv2.bitwise_and(cv2.compare(labelled, 0, cv2.CMP_EQ), marks)
    return cv2.bitwise_or(labelled, cv2.bitwise_and(blue, 3))


def _clear_marks(gray: np.ndarray, marks: np.ndarray, dpi: int) -> np.ndarray:
    """`gray` with the coloured ink and its light rim made paper, and the places where inks of
    two hues cross whitened: a blue signature over the red seal makes black, which Tesseract
    reads as punctuation or stray letters. Black print stays, also under the seal (it is dark
    and colourless); only where the seal and the signature both lie against it is it lost,
    with the bits of crossing left as blobs of at most 3 x 3 mm lying against coloured ink and
    within 4 pixels of both hues. Works within the marks' bounding box."""
    x, y, w, h = cv2.boundingRect(marks)
    pad = 4
    x0, y0 = max(0, x - pad), max(0, y - pad)
    x1, y1 = min(gray.shape[1], x + w + pad), min(gray.shape[0], y + h + pad)
    out = gray.copy()
    region, marks = out[y0:y1, x0:x1], marks[y0:y1, x0:x1]
    inked = cv2.compare(marks, 0, cv2.CMP_GT)
    # JPEG keeps colour at half resolution: a thin stroke's rim, grey and hardly coloured, is
    # left around the ink; whatever is not dark within 3 pixels of coloured ink goes with it
    rim = cv2.bitwise_and(cv2.dilate(inked, np.ones((7, 7), np.uint8)),
                          cv2.compare(region, 110, cv2.CMP_GT))
    kernel = np.ones((5, 5), np.uint8)
    near = [cv2.dilate(cv2.compare(marks, hue, cv2.CMP_EQ), kernel) for hue in (1, 2, 3)]
    crossing = cv2.bitwise_or(cv2.bitwise_or(cv2.bitwise_and(near[0], near[1]),
                                             cv2.bitwise_and(near[0], near[2])),
                              cv2.bitwise_and(near[1], near[2]))
    cleared = cv2.max(cv2.max(region, inked), cv2.max(rim, crossing))
    dark = cv2.compare(cleared, 128, cv2.CMP_LT)
    labels, stats = components(dark)
    n = len(stats)
    if n > 1:
        ids = labels[dark > 0]
        on = cv2.dilate(inked, kernel)[dark > 0] > 0
        on_ink = np.bincount(ids[on], minlength=n)
        wide = np.ones((9, 9), np.uint8)  # a stroke over the seal's star meets its own ink
        hues = sum((np.bincount(ids[cv2.dilate(cv2.compare(marks, hue, cv2.CMP_EQ), wide)
                                    [dark > 0] > 0], minlength=n) > 0).astype(np.int64)
                   for hue in (1, 2, 3))
        area = stats[:, cv2.CC_STAT_AREA]
        drop = (on_ink >= 0.9 * area) & (hues >= 2) & (area <= (3 * dpi / 25.4) ** 2)
        drop[0] = False
        if drop.any():
            cleared[drop[labels]] = 255
    region[...] = cleared
    return out


def for_reading(img: Image.Image, dpi: int) -> np.ndarray:
    """The pixels Tesseract reads: ink grey, flattened, coloured ink made paper, without the bits
    where coloured inks cross. A clean greyscale page comes back as its own pixels, read from
    the image once (Pillow copies a page each time it is read as an array)."""
    gray = ink_gray(img)
    flat = flatten(gray, dpi)
    if img.mode == "L":
        return flat
    marks = coloured_ink(img)
    return flat if marks is None else _clear_marks(flat, marks, dpi)


def edge_marks(stats: np.ndarray, offset: tuple[int, int], page: tuple[int, int], dpi: int,
               region: tuple[int, int]) -> np.ndarray:
    """Which connected components (rows of cv2.connectedComponentsWithStats' `stats`, found in a
    region of `region` (w, h) pixels at `offset` (x, y) of a page of `page` (w, h) pixels) are
    not content: punch holes (solid round blobs of 4-10 mm whose centre lies within 25 mm of an
    edge, or blobs of at most 10 mm cut by the region's border there) and the lid's shadow (a
    blob touching the region's border, thinner than 15% of the page across and at least three
    times as long along it)."""
    mm = dpi / 25.4
    x, y = stats[:, cv2.CC_STAT_LEFT], stats[:, cv2.CC_STAT_TOP]
    w, h = stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT]
    area = stats[:, cv2.CC_STAT_AREA]
    cx, cy = x + w / 2 + offset[0], y + h / 2 + offset[1]
    near_edge = np.minimum.reduce([cx, page[0] - cx, cy, page[1] - cy]) <= 25 * mm
    size_ok = (np.minimum(w, h) >= 4 * mm) & (np.maximum(w, h) <= 10 * mm)
    round_ = (np.maximum(w, h) <= 1.5 * np.minimum(w, h)) & (area >= 0.5 * w * h)
    left, top = x == 0, y == 0
    right, bottom = x + w >= region[0], y + h >= region[1]
    cut = (left | right | top | bottom) & (np.maximum(w, h) <= 10 * mm)  # a hole half outside
    holes = near_edge & ((size_ok & round_) | cut)
    thin_x = w <= 0.15 * page[0]
    thin_y = h <= 0.15 * page[1]
    vertical_band = (left | right) & thin_x & (h >= 3 * w)
    horizontal_band = (top | bottom) & thin_y & (w >= 3 * h)
    return holes | vertical_band | horizontal_band

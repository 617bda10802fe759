"""Skew and sideways detection by projection profiles of text-sized ink (Postl's method).

Tesseract returns little or nothing for text skewed by about 5 degrees, so every page is straightened
before OCR. Text lines give the sharpest row profile when they are horizontal: we search the angle
that maximizes the profile's energy, coarse then fine, on the ink pixels of text-sized blobs only
(barcodes, frames and photos would pull the estimate).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from ocr import paper

# At 100 dpi, 15,000 points and 1-degree steps the search takes half the time it took at 150 dpi,
# 30,000 points and half-degree steps, for the same orientation and angles within 0.1 degree on 91
# generated pages (prose, receipts, ID cards, office scans; ±15 degrees, a third sideways):
# median error 0.02 degree, worst 0.1 (0.06 before). BENCHMARKS.md, "deskew at 100 dpi".
WORK_DPI = paper.OVERVIEW_DPI  # profile resolution
COARSE_POINTS = 15_000  # ink pixels the coarse search looks at
COARSE_STEP = 1.0  # degrees between the coarse search's angles
STRAIGHT_BELOW = 0.1  # degrees: a page measured under it is straight (an unskewed page: 0.04-0.06)


@dataclass(frozen=True)
class Skew:
    angle: float  # degrees the content is rotated counter-clockwise; rotate by -angle to fix
    sideways: bool  # text lines run vertically: the page needs a quarter turn first
    score: float  # profile sharpness at the best angle, relative to an unstructured page


def ink_mask(gray: np.ndarray) -> np.ndarray:
    """Ink = 1 for dark pixels (Otsu), paper = 0."""
    _, mask = cv2.threshold(gray, 0, 1, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    return mask


def _text_points(gray: np.ndarray) -> np.ndarray:
    """(x, y) of ink pixels belonging to blobs of a character's size, on the page's overview
    (paper.overview: uneven light would sink whole regions into ink)."""
    mask = ink_mask(gray)
    labels, stats = paper.components(mask)
    lo, hi = WORK_DPI * 0.02, WORK_DPI * 0.6  # ~0.5 mm .. 15 mm
    w, h = stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT]
    keep = (h >= lo) & (h <= hi) & (w <= hi * 2)
    keep[0] = False
    ink = cv2.findNonZero(mask)  # (x, y), row by row
    if ink is None:
        return np.empty((2, 0), np.float32)
    ink = ink.reshape(-1, 2)
    # Looked up at the ink pixels only: a lookup over the whole page would copy its labels
    # as 64-bit indices (four times the page at 150 dpi, 17 MB, the deskew's peak memory).
    points = ink[keep[labels[ink[:, 1], ink[:, 0]]]]
    if not len(points):
        return np.empty((2, 0), np.float32)
    if len(points) > 400_000:  # plenty: subsample for speed
        points = points[:: len(points) // 400_000 + 1]
    return points.T.astype(np.float32)


def _energy(points: np.ndarray, angles_deg: np.ndarray) -> np.ndarray:
    """Sum of squared row counts after rotating the points by each angle."""
    xs, ys = points.astype(np.float64)  # float32 times a float64 cosine: cast at every angle
    out = np.empty(len(angles_deg))
    # The same sums as (ys * cos + xs * sin).astype(int), in buffers made once per call, and
    # rows in 32 bits (a page at WORK_DPI has a few thousand): a third less time, same angles.
    along, shift = np.empty_like(ys), np.empty_like(xs)
    rows = np.empty(ys.shape, np.int32)
    for i, a in enumerate(np.deg2rad(angles_deg)):
        np.multiply(ys, np.cos(a), out=along)
        along += np.multiply(xs, np.sin(a), out=shift)
        np.copyto(rows, along, casting="unsafe")  # toward zero, as astype
        rows -= rows.min()
        out[i] = _squared_counts(rows)
    return out


_U16_MAX = int(np.iinfo(np.uint16).max)


def _squared_counts(rows: np.ndarray) -> float:
    """Sum of squared counts of each row number: OpenCV's histogram of 16-bit rows counts in
    a third of np.bincount's time (the same counts, exactly)."""
    if not rows.size:
        return 0.0
    height = int(rows.max()) + 1
    if height > _U16_MAX:
        counts = np.bincount(rows).astype(np.float64)
    else:
        hist = cv2.calcHist([rows.astype(np.uint16).reshape(1, -1)], [0], None, [height],
                            [0, height])
        counts = hist.ravel().astype(np.float64)
    return float(np.dot(counts, counts))


def _refine(points: np.ndarray, best: float) -> float:
    """From the coarse angle down to 0.1 degree on the coarse search's sample, then to 0.02
    degree on every point: the tenth of a degree is found on the sample as on all the points
    (the same angles on the benchmark's 24 pages and 48 generated ones skewed 0-14 degrees;
    BENCHMARKS.md, "The start, the hand-over and the end"), and the search takes a fifth less."""
    sample = points[:, :: max(1, points.shape[1] // COARSE_POINTS)]
    for step, span, on in ((0.1, max(0.5, COARSE_STEP / 2 + 0.1), sample), (0.02, 0.1, points)):
        fine = np.arange(best - span, best + span + 1e-9, step)
        best = float(fine[int(np.argmax(_energy(on, fine)))])
    return best


def detect(gray: np.ndarray, dpi: int, limit: float = 15.0) -> Skew:
    """Skew angle within ±limit degrees, and whether the text runs vertically (detect_overview,
    on the page's overview)."""
    return detect_overview(paper.overview(gray, dpi)[0], limit)


def detect_overview(gray: np.ndarray, limit: float = 15.0) -> Skew:
    """Skew angle within ±limit degrees, and whether the text runs vertically.

    The coarse search (every COARSE_STEP, both ways round) only has to find the right degree
    and which way the lines run: it looks at a sample of COARSE_POINTS ink pixels; the fine
    search then uses them all, from a little more than half a step either side."""
    points = _text_points(gray)
    if points.shape[1] < 200:
        return Skew(0.0, False, 0.0)
    sample = points[:, :: max(1, points.shape[1] // COARSE_POINTS)]
    coarse = np.arange(-limit, limit + 1e-9, COARSE_STEP)
    scores = []
    for turn in (False, True):
        e = _energy(_quarter_turn(sample) if turn else sample, coarse)
        scores.append((float(e.max()) / max(float(np.median(e)), 1.0), float(coarse[int(np.argmax(e))])))
    (score, best), (score_v, best_v) = scores
    sideways = score_v > score * 1.5
    if sideways:
        return Skew(_straight(_refine(_quarter_turn(points), best_v)), True, score_v)
    return Skew(_straight(_refine(points, best)), False, score)


def _straight(angle: float) -> float:
    """0 for an angle under STRAIGHT_BELOW: turning a page by the search's own error would
    resample it for nothing (0.1 degree is half a millimetre across a page)."""
    return angle if abs(angle) >= STRAIGHT_BELOW else 0.0


def _quarter_turn(points: np.ndarray) -> np.ndarray:
    """The same ink, a quarter turn round."""
    return np.stack([points[1], -points[0]])


def rotate(img: Image.Image, angle: float, scale: float = 1.0,
           pixels: np.ndarray | None = None, ink_margin: int | None = None) -> Image.Image:
    """Rotates counter-clockwise by `angle` degrees about the centre, keeping the page (its size
    times `scale`) and filling uncovered corners with the paper's colour. Scaled down, a bilevel
    page comes out grey. Rotating and scaling in one resampling reads better than one after the
    other (a receipt's e-mail address on a page skewed by 0.04 degrees, tests/test_pipeline.py).
    `pixels`, when the caller holds them already: `img` as an array of the same mode (a copy
    of the page fewer). With `ink_margin` (pixels of the result), a grey page is resampled only
    within that distance of its dark pixels and is paper beyond: OCR reads no further
    (tesseract.crop_to_content), and on the benchmark's pages that is half of the page."""
    bilevel = img.mode == "1"
    if bilevel and (abs(angle) >= 0.01 or scale != 1):
        img, pixels = img.convert("L"), None
    arr = np.asarray(img) if pixels is None else pixels
    h, w = arr.shape[:2]
    size = _size((w, h), scale)
    if abs(angle) < 0.01:
        if scale == 1:
            return img
        return Image.fromarray(cv2.resize(arr, size, interpolation=cv2.INTER_AREA))
    m = _matrix((w, h), angle, scale)
    fill = paper.colour(img)
    box = _near_ink(arr, m, size, ink_margin) if ink_margin is not None and arr.ndim == 2 else None
    if box is None:
        out = _warp(arr, m, size, fill)
    else:
        x0, y0, x1, y1 = box
        out = np.full((size[1], size[0]), fill, np.uint8)
        part = m.copy()
        part[:, 2] -= (x0, y0)  # the same resampling, its result starting at (x0, y0)
        out[y0:y1, x0:x1] = _warp(arr, part, (x1 - x0, y1 - y0), fill)
    result = Image.fromarray(out)
    return result.convert("1") if bilevel and scale == 1 else result


def _warp(arr: np.ndarray, m: np.ndarray, size: tuple[int, int], fill: tuple[int, ...] | int
          ) -> np.ndarray:
    return cv2.warpAffine(arr, m, size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=fill)


_BLOCK = 8  # scan pixels a side of the blocks in which rotate() looks for ink


def _near_ink(gray: np.ndarray, m: np.ndarray, size: tuple[int, int], margin: int
              ) -> tuple[int, int, int, int] | None:
    """The box of the rotated page within `margin` of its ink, or None when that is the whole
    page. Ink is counted in blocks of the scan, whose centres are carried through `m`; as in
    tesseract.crop_to_content, a row or column of blocks counts from two dark pixels, so that
    a speck does not stretch the box."""
    _, dark = cv2.threshold(gray, paper.DARK, 255, cv2.THRESH_BINARY_INV)
    bh, bw = gray.shape[0] // _BLOCK, gray.shape[1] // _BLOCK
    if not bh or not bw:
        return None
    # Each block's mean of 0/255 (whole blocks: OpenCV's fast path, a fifth of the time), 255/64
    # for one dark pixel in 64, never 0 where there is one. The scan's last pixels at its right
    # and bottom edges, under a block's width, are its border, not text: not looked at.
    blocks = cv2.resize(dark[:bh * _BLOCK, :bw * _BLOCK], (bw, bh), interpolation=cv2.INTER_AREA)
    by, bx = np.nonzero(blocks)
    if not len(bx):
        return None
    count = blocks[by, bx] * (_BLOCK * _BLOCK / 255)  # dark pixels in each block
    cx, cy = (bx + 0.5) * _BLOCK, (by + 0.5) * _BLOCK  # its centre on the scan
    xs, ys = m[0, 0] * cx + m[0, 1] * cy + m[0, 2], m[1, 0] * cx + m[1, 1] * cy + m[1, 2]
    step = max(1.0, _BLOCK * abs(m[0, 0]) + _BLOCK * abs(m[0, 1]))  # a block's span, rotated
    reach = margin + step  # a block's pixels lie within a step of its centre
    edges = []
    for along, extent in ((xs, size[0]), (ys, size[1])):
        bins = np.clip((along / step).astype(np.int64), 0, None)
        filled = np.flatnonzero(np.bincount(bins, weights=count) >= 2)
        if not len(filled):
            return None
        edges.append((max(0, int(filled[0] * step - reach)),
                      min(extent, int(np.ceil((filled[-1] + 1) * step + reach)))))
    (x0, x1), (y0, y1) = edges
    if x0 >= x1 or y0 >= y1 or (x1 - x0) * (y1 - y0) >= size[0] * size[1]:
        return None
    return x0, y0, x1, y1


def _size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _matrix(size: tuple[int, int], angle: float, scale: float) -> np.ndarray:
    """rotate()'s affine matrix: about the page's centre, which stays the centre."""
    w, h = size
    out_w, out_h = _size(size, scale)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    m[0, 2] += (out_w - w) / 2
    m[1, 2] += (out_h - h) / 2
    return m


def box_after(box: tuple[int, int, int, int], size: tuple[int, int], angle: float,
              scale: float = 1.0, quarter_turn: bool = False) -> tuple[int, int, int, int]:
    """Where `box` (x0, y0, x1, y1) of a page of `size` lies on rotate(page, angle, scale),
    turned a quarter counter-clockwise after it if `quarter_turn` (Image.ROTATE_90): the
    smallest box holding its corners."""
    x0, y0, x1, y1 = box
    corners = np.array([[x, y, 1.0] for x in (x0, x1) for y in (y0, y1)])
    xs, ys = (corners @ _matrix(size, angle, scale).T).T
    if quarter_turn:
        xs, ys = ys, _size(size, scale)[0] - xs
    return _bounds(xs, ys)


def box_before(box: tuple[int, int, int, int], size: tuple[int, int], angle: float,
               scale: float = 1.0, quarter_turn: bool = False) -> tuple[int, int, int, int]:
    """box_after() undone: where a box of the straightened page lies on the page of `size`."""
    x0, y0, x1, y1 = box
    xs, ys = np.array([[x, y] for x in (x0, x1) for y in (y0, y1)], dtype=float).T
    if quarter_turn:
        xs, ys = _size(size, scale)[0] - ys, xs
    back = cv2.invertAffineTransform(_matrix(size, angle, scale))
    xs, ys = (np.stack([xs, ys, np.ones_like(xs)], axis=1) @ back.T).T
    return _bounds(xs, ys)


def _bounds(xs: np.ndarray, ys: np.ndarray) -> tuple[int, int, int, int]:
    """The smallest box of whole pixels holding the points."""
    return (int(np.floor(xs.min())), int(np.floor(ys.min())), int(np.ceil(xs.max())),
            int(np.ceil(ys.max())))

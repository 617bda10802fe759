"""Blank-page detection for duplex backsides: paper, faint bleed-through and specks are not content,
nor are what an office scan adds to a blank back: punch holes, the copier lid's shadow along an
edge, light that fades across the glass (ocr/paper.py)."""

from __future__ import annotations

import cv2
import numpy as np

from ocr import paper


def ink_fraction(gray: np.ndarray, dpi: int) -> float:
    """Share of the page (margins excluded) covered by real marks.

    A mark is clearly darker than the paper around it (bleed-through is not; uneven light and soft
    shadows are flattened away first), bigger than a speck, and neither a punch hole nor the
    shadow's band along the border.
    """
    return overview_ink_fraction(*paper.overview(gray, dpi))


def overview_ink_fraction(small: np.ndarray, dpi: int) -> float:
    """ink_fraction() of the page's overview (paper.overview) at its `dpi`."""
    h, w = small.shape
    my, mx = int(h * 0.04), int(w * 0.04)  # the scanner's own border lives at the very edges
    core = small[my:h - my, mx:w - mx]
    if core.size == 0:
        return 0.0
    level = paper.percentile(core, 95)
    mask = (core < level * 0.6).astype(np.uint8)
    _, stats = paper.components(mask)
    stats = stats[1:]
    keep = stats[:, cv2.CC_STAT_AREA] >= 4  # >= ~0.5 mm x 0.5 mm at 100 dpi
    if keep.any():
        keep &= ~paper.edge_marks(stats, (mx, my), (w, h), dpi, (core.shape[1], core.shape[0]))
    return float(stats[keep, cv2.CC_STAT_AREA].sum()) / core.size


def is_blank(gray: np.ndarray, dpi: int, threshold: float = 0.0001) -> bool:
    return ink_fraction(gray, dpi) < threshold

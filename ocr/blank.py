"""Blank-page detection for duplex backsides: paper, faint bleed-through and specks are not content."""

from __future__ import annotations

import cv2
import numpy as np

WORK_DPI = 100


def ink_fraction(gray: np.ndarray, dpi: int) -> float:
    """Share of the page (margins excluded) covered by real marks.

    A mark is clearly darker than the paper (bleed-through is not) and bigger than a speck.
    """
    scale = WORK_DPI / dpi
    small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 \
        else gray
    h, w = small.shape
    my, mx = int(h * 0.04), int(w * 0.04)  # scanner shadows and punch holes live at the edges
    core = small[my:h - my, mx:w - mx]
    if core.size == 0:
        return 0.0
    paper = float(np.percentile(core, 95))
    mask = (core < paper * 0.6).astype(np.uint8)
    _n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    marks = areas[areas >= 4].sum()  # >= ~0.5 mm x 0.5 mm at 100 dpi
    return float(marks) / core.size


def is_blank(gray: np.ndarray, dpi: int, threshold: float = 0.0001) -> bool:
    return ink_fraction(gray, dpi) < threshold

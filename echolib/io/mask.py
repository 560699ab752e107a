"""Ultrasound sector mask derived from the clip itself.

Burned-in text, ECG traces, scale bars and logos are static or tiny; the sector is the one large region whose
pixels change across frames. The mask is the convex hull of the largest connected region of changing pixels,
optionally intersected with the SequenceOfUltrasoundRegions boxes when those boxes fit inside the image (vendors
often store them in another coordinate frame, e.g. before a resize: such boxes are ignored and the fact recorded).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, Delaunay, QhullError

MIN_CHANGE = 5.0       # grey-level range across frames that counts as "changing" (static text has range 0)
MIN_AREA = 0.02        # a sector smaller than this fraction of the image is not trusted


def sector_mask(frames: np.ndarray, regions=(), min_change: float = MIN_CHANGE) -> tuple[np.ndarray, dict]:
    """Boolean (H, W) mask of the ultrasound sector and a dict describing how it was found.

    `regions`: (x0, y0, x1, y1) boxes from SequenceOfUltrasoundRegions (inclusive pixel coordinates).
    When no trustworthy sector is found (a static clip, fewer than 2 frames), the whole image is kept and
    `info["method"]` says so, so that ingestion can record it instead of blanking the clip.
    """
    frames = np.asarray(frames)
    if frames.ndim == 4:
        grey = frames.astype(np.float32).mean(-1)
    elif frames.ndim == 3:
        grey = frames.astype(np.float32)
    else:
        raise ValueError(f"sector_mask expects (T, H, W[, 3]) frames, got shape {frames.shape}")
    t, h, w = grey.shape
    info = {"method": "motion", "regions_used": 0, "regions_ignored": 0}
    full = np.ones((h, w), dtype=bool)
    if t < 2:
        return full, {**info, "method": "whole image (fewer than 2 frames)", "fraction": 1.0}
    changing = (grey.max(0) - grey.min(0)) >= min_change
    changing = ndimage.binary_opening(changing, structure=np.ones((3, 3), bool))
    labels, n = ndimage.label(changing)
    if n == 0:
        return full, {**info, "method": "whole image (no changing pixels)", "fraction": 1.0}
    sizes = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, n + 1))
    largest = labels == (1 + int(np.argmax(sizes)))
    mask = _convex_fill(largest)
    if mask.mean() < MIN_AREA:
        return full, {**info, "method": "whole image (changing region too small)", "fraction": 1.0}
    boxes = [b for b in regions if _fits(b, h, w)]
    info["regions_ignored"] = len(regions) - len(boxes)
    if boxes:
        allowed = np.zeros((h, w), dtype=bool)
        for x0, y0, x1, y1 in boxes:
            allowed[y0:y1 + 1, x0:x1 + 1] = True
        if (mask & allowed).mean() >= MIN_AREA:
            mask &= allowed
            info["regions_used"] = len(boxes)
    info["fraction"] = float(mask.mean())
    return mask, info


def apply_mask(frames: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Frames with every pixel outside `mask` set to 0 (a copy)."""
    out = np.array(frames, copy=True)
    out[:, ~mask] = 0
    return out


def _fits(box, h: int, w: int) -> bool:
    x0, y0, x1, y1 = box
    return 0 <= x0 < x1 < w and 0 <= y0 < y1 < h


def _convex_fill(region: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(region)
    pts = np.column_stack([xs, ys]).astype(np.float64)
    try:
        hull = ConvexHull(pts)
    except QhullError:  # degenerate (a line): keep the region itself
        return region.copy()
    tri = Delaunay(pts[hull.vertices])
    h, w = region.shape
    yy, xx = np.mgrid[0:h, 0:w]
    inside = tri.find_simplex(np.column_stack([xx.ravel(), yy.ravel()]).astype(np.float64)) >= 0
    return inside.reshape(h, w) | region

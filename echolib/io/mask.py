"""Pixel de-identification of an ultrasound cine: the imaging sector kept, everything burned in removed.

What a frame holds besides the image: names, dates and IDs in the corners, an ECG trace, scale bars, logos,
calipers and text typed inside the sector. The sector is where the picture changes from frame to frame; all the
rest is static (DICOM exports) or static plus a few grey levels of noise (frame-grabbed cines). So:

1. **Statistics streamed over the frames** (at most `SAMPLE_FRAMES`, a chunk at a time, never the whole clip in
   floating point) of each pixel's brightest channel (grey in B-mode; it keeps colour Doppler and palettes from
   cancelling out): its temporal mean, standard deviation and minimum.
2. **Noise floor estimated, not assumed**: the median temporal deviation of the quietest pixels (the
   `QUIET_SHARE` of the image with the lowest deviation: the black surround); a pixel moves when its deviation
   exceeds `NOISE_K` times that floor and at least `MIN_STD` grey levels.
3. **Fan geometry**: the largest moving region, filled, is fitted by a sector (two straight edges meeting at
   the apex, an inner and an outer arc) or, when the edges are parallel, a band. The mask is the fitted shape,
   not the moving pixels, so dim far field stays in and a moving ECG trace beside it stays out. The fit must
   agree with the region (intersection over union >= `MIN_FIT`).
4. **Text and markers inside the kept area**: a stroke detector. Burned-in characters stay bright in every
   frame (high minimum) and are thin (a white top-hat of the minimum image with a window of a few stroke
   widths picks them out); the speckle they sit on decorrelates and has a low minimum. Strokes brighter than
   `TEXT_CONTRAST` over their surround, widened by `TEXT_MARGIN` pixels, are blanked in every frame.

No sector (fewer than `MIN_FRAMES` frames, a frozen clip, a moving region that is too small or not
fan-shaped) or a mask covering more than `MAX_FRACTION` of the frame raises `MaskError` with the reason:
ingestion records the clip as rejected unless the user allows unmasked clips, in which case the whole image is
kept and the text detector still runs on it. Written here rather than taken from a library: the text detectors
that could serve (EAST, CRAFT, OCR engines) need model weights downloaded at run time, which this project does
not do, and read only the scripts they were trained on; burned-in echo text is static, which a stroke detector
can use and a single-image detector cannot.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, Delaunay, QhullError

SAMPLE_FRAMES = 64    # frames the statistics are taken over (evenly spaced); a chunk of CHUNK at a time
CHUNK = 4
MIN_FRAMES = 3        # fewer frames cannot tell the sector from noise
QUIET_SHARE = 0.3     # the quietest share of the image estimates the noise floor
SMOOTH = 5            # the deviation is averaged over SMOOTH x SMOOTH pixels before it is thresholded
NOISE_K = 1.3         # a pixel moves when its (averaged) temporal deviation exceeds NOISE_K x the noise floor ...
MIN_STD = 1.0         # ... plus this many grey levels (a clean export has a floor of 0) ...
SPARSE = 0.5          # ... and its mean above black is at least SPARSE x its deviation (not a passing trace)
OPEN_SHARE = 24       # moving strands thinner than 1/OPEN_SHARE of the image's short side are not the sector
MIN_AREA = 0.02       # a sector smaller than this share of the image is not trusted
MAX_FRACTION = 0.8    # a "sector" covering more of the frame is not one (a 90-degree fan fills about 0.56)
MIN_COVER = 0.9       # the fitted fan holds at least this share of the moving region ...
MIN_FILL = 0.6        # ... and at least this share of the fan moves (dim far field at its flanks may not)
TEXT_CONTRAST = 40.0  # grey levels a stroke stands above its surround in every frame ...
STATIC_STD = 8.0      # ... while changing by at most this many grey levels (plus 3 x the noise floor)
TEXT_MARGIN = 2       # pixels blanked around each group of strokes' bounding box
MAX_STROKE_AREA = 0.02  # a bright static blob larger than this share of the image is not a character


class MaskError(ValueError):
    """The sector could not be found; the message is the reason recorded for the clip."""


@dataclasses.dataclass
class Stats:
    """Per-pixel statistics of a clip, streamed over its frames."""

    mean: np.ndarray     # (H, W) float32: temporal mean of the brightest channel ("grey" below)
    std: np.ndarray      # (H, W) float32: its temporal standard deviation
    low: np.ndarray      # (H, W) float32: its minimum over frames
    n_frames: int        # frames in the clip
    n_used: int          # frames the statistics were taken over


def clip_stats(frames: np.ndarray) -> Stats:
    """Temporal statistics of (T, H, W[, 3]) uint8 frames, a chunk at a time (memory: a few (H, W) planes)."""
    frames = np.asarray(frames)
    if frames.ndim not in (3, 4) or (frames.ndim == 4 and frames.shape[-1] not in (1, 3)):
        raise ValueError(f"expected (T, H, W[, 3]) frames, got shape {frames.shape}")
    t, h, w = frames.shape[:3]
    idx = np.unique(np.linspace(0, t - 1, min(t, SAMPLE_FRAMES)).round().astype(int)) if t else np.array([], int)
    total = np.zeros((h, w), np.float64)
    total_sq = np.zeros((h, w), np.float64)
    low = np.full((h, w), 255.0, np.float32)
    for start in range(0, len(idx), CHUNK):
        chunk = frames[idx[start:start + CHUNK]]
        bright = chunk.max(-1) if chunk.ndim == 4 else chunk  # grey for B-mode; colour (Doppler, palettes) too
        grey = bright.astype(np.float32)
        total += grey.sum(0)
        total_sq += np.square(grey, dtype=np.float64).sum(0)
        np.minimum(low, bright.min(0), out=low)
    n = max(len(idx), 1)
    mean = total / n
    var = np.maximum(total_sq / n - np.square(mean), 0)
    return Stats(mean.astype(np.float32), np.sqrt(var).astype(np.float32), low, t, len(idx))


def noise_floor(std: np.ndarray) -> float:
    """The temporal deviation of the quietest `QUIET_SHARE` of pixels (their median): the black surround's
    electronic or frame-grabber noise, 0 for a clean export."""
    return float(np.median(_quietest(std)))


def _quietest(a: np.ndarray) -> np.ndarray:
    flat = a.ravel()
    k = max(1, int(len(flat) * QUIET_SHARE))
    return np.partition(flat, k - 1)[:k]


def moving(stats: Stats, floor: float) -> np.ndarray:
    """Pixels whose temporal deviation, averaged over SMOOTH x SMOOTH neighbours, stands above the noise floor,
    and that are lit most of the time: a sweeping ECG trace or a blinking marker lights a pixel in a few frames
    (its deviation is large beside its mean); speckle is on most of the time (its mean above black is at least
    about its deviation)."""
    std = ndimage.uniform_filter(stats.std, SMOOTH)
    black = float(np.median(stats.mean.ravel()[np.argpartition(stats.std.ravel(), len(_quietest(stats.std)) - 1)
                                               [:len(_quietest(stats.std))]]))
    lit = np.abs(ndimage.uniform_filter(stats.mean, SMOOTH) - black)  # a palette may put "black" high
    return (std > NOISE_K * floor + MIN_STD) & (lit >= SPARSE * std)


def sector_mask(frames: np.ndarray, regions=(), stats: Stats | None = None) -> tuple[np.ndarray, dict]:
    """Boolean (H, W) mask of the imaging sector and how it was found; MaskError when there is none to trust.

    `regions`: (x0, y0, x1, y1) boxes from SequenceOfUltrasoundRegions (inclusive pixel coordinates); used to
    narrow the mask when they fit inside the image (vendors often store them in another coordinate frame, e.g.
    before a resize: such boxes are ignored and counted).
    """
    s = stats or clip_stats(frames)
    h, w = s.std.shape
    if s.n_frames < MIN_FRAMES:
        raise MaskError(f"too few frames to find the sector ({s.n_frames}; at least {MIN_FRAMES})")
    floor = noise_floor(s.std)
    # an opening wider than a trace or a line of text parts them from the sector before the largest region is taken
    k = max(3, min(h, w) // OPEN_SHARE)
    labels, n = ndimage.label(ndimage.binary_opening(moving(s, floor), structure=np.ones((k, k), bool)))
    if n == 0:
        raise MaskError("nothing in the frame moves above its noise floor (a frozen clip?)")
    sizes = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, n + 1))
    region = _convex_fill(labels == (1 + int(np.argmax(sizes))))
    if region.mean() < MIN_AREA:
        raise MaskError(f"moving region too small for a sector ({region.mean():.1%} of the image)")
    mask, shape = fit_sector(region)
    both = (mask & region).sum()
    cover, fill = both / region.sum(), both / max(mask.sum(), 1)
    if cover < MIN_COVER or fill < MIN_FILL:
        raise MaskError(f"the moving region is not fan-shaped (the best {shape} holds {cover:.0%} of it, at least "
                        f"{MIN_COVER:.0%}, and {fill:.0%} of the {shape} moves, at least {MIN_FILL:.0%})")
    info = {"method": shape, "cover": round(float(cover), 3), "fill": round(float(fill), 3),
            "noise_floor": round(floor, 2), "regions_used": 0, "regions_ignored": 0}
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
    if info["fraction"] > MAX_FRACTION:
        raise MaskError(f"the sector would cover {info['fraction']:.0%} of the frame (at most "
                        f"{MAX_FRACTION:.0%}): nothing outside it to remove, burned-in text may be inside")
    if info["fraction"] < MIN_AREA:
        raise MaskError(f"sector too small ({info['fraction']:.1%} of the image)")
    return mask, info


def fit_sector(region: np.ndarray) -> tuple[np.ndarray, str]:
    """The sector (apex, two straight edges, inner and outer arcs) or band (parallel edges) fitted to a filled
    region: (mask, "sector" | "band")."""
    h, w = region.shape
    rows = np.nonzero(region.any(1))[0]
    if len(rows) < 8:
        return region.copy(), "region"
    left = np.argmax(region[rows], axis=1).astype(np.float64)
    right = (w - 1 - np.argmax(region[rows, ::-1], axis=1)).astype(np.float64)
    widest = rows[int(np.argmax(right - left))]
    top, bottom = rows[0], rows[-1]
    span = max(bottom - top, 1)
    # the straight edges run from the top to where the outer arc begins (the widest row)
    sel = (rows >= top + 0.05 * span) & (rows <= widest - 0.02 * span)
    if sel.sum() < 4:
        sel = rows <= widest
    bl, al = _robust_line(rows[sel].astype(np.float64), left[sel])
    br, ar = _robust_line(rows[sel].astype(np.float64), right[sel])
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    if br - bl < 0.05:  # parallel edges (a linear probe, a cropped export): a band
        mask = (xx >= al + bl * yy) & (xx <= ar + br * yy) & (yy >= top) & (yy <= bottom)
        return mask, "band"
    apex_y = (al - ar) / (br - bl)
    apex_x = al + bl * apex_y
    ang = np.arctan2(xx - apex_x, yy - apex_y)  # 0 straight down, positive to the right
    lo, hi = np.arctan2(bl, 1.0), np.arctan2(br, 1.0)
    radius = np.hypot(xx - apex_x, yy - apex_y)
    inside = (ang >= lo) & (ang <= hi)
    r_in, r_out = _radial_extent(radius[inside], region[inside])
    mask = inside & (radius >= r_in) & (radius <= r_out)
    return mask, "sector"


def _robust_line(y: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    """x = a + b y by least squares, refitted once without the points more than 2.5 robust SDs off."""
    b, a = np.polyfit(y, x, 1)
    res = x - (a + b * y)
    mad = np.median(np.abs(res - np.median(res))) * 1.4826 + 0.5
    keep = np.abs(res) <= 2.5 * mad
    if keep.sum() >= 4:
        b, a = np.polyfit(y[keep], x[keep], 1)
    return float(b), float(a)


def _radial_extent(radius: np.ndarray, in_region: np.ndarray) -> tuple[float, float]:
    """Inner and outer radius of the sector: where at least half of each one-pixel ring between the edges lies
    in the region."""
    bins = np.floor(radius).astype(np.int64)
    count = np.bincount(bins)
    hit = np.bincount(bins, weights=in_region.astype(np.float64), minlength=len(count))
    full = np.nonzero((count > 0) & (hit >= 0.5 * np.maximum(count, 1)))[0]
    if not len(full):
        return 0.0, 0.0
    return float(full[0]), float(full[-1] + 1)


def text_mask(stats: Stats, floor: float | None = None) -> np.ndarray:
    """Burned-in text, calipers and markers to blank: (H, W) bool.

    Strokes are thin, static, bright in every frame and stand at least `TEXT_CONTRAST` grey levels above their
    surround. Strokes closer than about a character's width are grouped into words and lines, and each group's
    whole bounding box (widened by `TEXT_MARGIN`) is blanked: blanking the strokes alone would leave the
    characters readable as dark holes in the speckle."""
    h, w = stats.low.shape
    floor = noise_floor(stats.std) if floor is None else floor
    size = max(7, int(round(min(h, w) / 30)) | 1)  # a few stroke widths at this resolution
    tophat = stats.low - ndimage.grey_opening(stats.low, size=(size, size))
    strokes = (tophat >= max(TEXT_CONTRAST, 8 * floor)) & (stats.std <= STATIC_STD + 3 * floor)
    labels, n = ndimage.label(strokes, structure=np.ones((3, 3), bool))
    if n:
        sizes = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, n + 1))
        too_big = np.concatenate([[False], sizes > MAX_STROKE_AREA * h * w])
        strokes &= ~too_big[labels]
    groups, n = ndimage.label(ndimage.binary_dilation(strokes, structure=np.ones((size // 2 | 1, size), bool)))
    out = np.zeros((h, w), bool)
    for box in ndimage.find_objects(groups):
        ys, xs = box
        out[max(ys.start - TEXT_MARGIN, 0):ys.stop + TEXT_MARGIN, max(xs.start - TEXT_MARGIN, 0):xs.stop + TEXT_MARGIN] = True
    return out


def deidentify(frames: np.ndarray, regions=(), allow_unmasked: bool = False) -> tuple[np.ndarray, dict]:
    """Frames with everything outside the sector and every burned-in stroke set to 0, **in place** (the caller's
    array is changed and returned), and a description. MaskError when no sector is found, unless
    `allow_unmasked`: then the whole image is kept (and said so) and only the strokes are blanked."""
    stats = clip_stats(frames)
    try:
        mask, info = sector_mask(frames, regions, stats)
    except MaskError as e:
        if not allow_unmasked:
            raise
        mask = np.ones(stats.std.shape, bool)
        info = {"method": f"whole image (allowed: {e})", "noise_floor": round(noise_floor(stats.std), 2),
                "regions_used": 0, "regions_ignored": 0, "fraction": 1.0}
    keep = mask & ~text_mask(stats, info["noise_floor"])
    info["text_pixels"] = int((mask & ~keep).sum())
    apply_mask(frames, keep, copy=False)
    return frames, info


def apply_mask(frames: np.ndarray, mask: np.ndarray, copy: bool = True) -> np.ndarray:
    """Frames with every pixel outside `mask` set to 0 (a copy, or in place with copy=False)."""
    out = np.array(frames, copy=True) if copy else frames
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
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1  # only the bounding box can be inside
    yy, xx = np.mgrid[y0:y1, x0:x1]
    inside = tri.find_simplex(np.column_stack([xx.ravel(), yy.ravel()]).astype(np.float64)) >= 0
    out = region.copy()
    out[y0:y1, x0:x1] |= inside.reshape(y1 - y0, x1 - x0)
    return out

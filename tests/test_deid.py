"""Pixel de-identification: frame-grabbed cines with a name and a birth date burned in, in the corner and inside
the sector; after ingestion no planted character can be read in any stored frame.

The reference is independent of the detector: the strokes PIL drew are known exactly, and a character is readable
when its strokes stand out from the pixels around them in the stored frames, brighter (the text kept) or darker
(only the strokes blanked, leaving dark letter-shaped holes in the speckle). `leftover` measures that contrast;
every test first checks that it sees the text in the frames before ingestion.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy import ndimage

from echolib.ingest import PixelOptions, ingest_source
from echolib.io.mask import MaskError, deidentify, sector_mask
from echolib.io.video import read_clip
from tests import dicom_fixtures as F

READABLE = 8.0  # grey levels of stroke contrast (mean over frames) that a reader could see; planted text has >= 80


def leftover(frames: np.ndarray, strokes: np.ndarray) -> float:
    """Contrast of the strokes against a ring of pixels around them, grey, averaged over frames."""
    grey = frames.astype(np.float32).mean(-1).mean(0)
    ring = ndimage.binary_dilation(strokes, iterations=3) & ~ndimage.binary_dilation(strokes, iterations=1)
    return float(grey[strokes].mean() - grey[ring].mean())


def ingest_one(tmp_path, frames: np.ndarray, **options):
    study = F.variant().StudyInstanceUID + ".5"
    F.save(F.with_frames(frames, study=study, patient="P-1"), tmp_path / "src" / "a.dcm")
    (tmp_path / "r.csv").write_text(f"study_key,report_text\n{study},左室拡大なし。\n", encoding="utf-8")
    t = ingest_source("dicom", tmp_path / "src", tmp_path / "out", tmp_path / "salt", tmp_path / "r.csv",
                      workers=1, progress=False, options=PixelOptions(**options))
    stored = [read_clip(tmp_path / "out" / p, n) for p, n in t["videos"].select("path", "n_frames").iter_rows()]
    return t, stored


def planted(noise: float = 2.0, jpeg: int | None = None, ecg: bool = False):
    """The real cine with identifiers burned in: in the top band (outside the sector), white inside the sector,
    dim grey and yellow inside the sector; then frame-grabbed. Returns (frames, [stroke masks])."""
    frames = F.cine().pixel_array
    marks = []
    for text, xy, fill, size in ((F.BURNED, (100, 5), (230, 230, 230), 14),
                                 ("ID ZX81-4711", (118, 118), (230, 230, 230), 14),
                                 ("TARO", (150, 62), (140, 140, 140), 11),
                                 ("1947", (70, 160), (200, 200, 0), 14)):
        frames, g = F.burn(frames, text, xy, fill, size)
        marks.append(g)
    if ecg:
        frames = F.ecg_trace(frames, 204)
    return F.grabbed(frames, noise=noise, jpeg=jpeg) if noise or jpeg else frames, marks


@pytest.mark.parametrize("noise,jpeg,ecg", [(0, None, False), (1, None, False), (2, None, True), (4, None, False),
                                            (2, 80, False), (0, 90, True)])
def test_no_burned_in_character_survives_a_frame_grabbed_cine(tmp_path, noise, jpeg, ecg):
    frames, marks = planted(noise, jpeg, ecg)
    assert all(leftover(frames, g) > 80 for g in marks)  # the measure sees the text before ingestion
    t, stored = ingest_one(tmp_path, frames)
    assert t["rejected"].height == 0, t["rejected"].to_dicts()
    row = t["videos"].row(0, named=True)
    assert row["mask_method"] == "sector" and 0.22 < row["mask_fraction"] < 0.45 and row["text_pixels"] > 0
    for g in marks:
        assert abs(leftover(stored[0], g)) < READABLE, (leftover(stored[0], g), row)
    # the heart is still there: a box well inside the sector (away from the planted text) as it was
    box = np.s_[:, 140:180, 180:230]
    err = np.abs(stored[0][box].astype(np.int16) - frames[box].astype(np.int16)).mean()
    assert err < 8, err


def test_blanking_only_the_strokes_would_leave_them_readable():
    """Why whole boxes are blanked: strokes set to 0 inside the sector read as dark letters."""
    frames, marks = planted(noise=2)
    holes = frames.copy()
    holes[:, marks[1]] = 0
    assert leftover(holes, marks[1]) < -READABLE
    kept, _ = deidentify(frames.copy())
    assert abs(leftover(kept, marks[1])) < READABLE


def cropped(frames: np.ndarray) -> np.ndarray:
    """An export cropped to the middle of the sector and scaled back up: no surround, the picture fills the frame."""
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(f[50:170, 100:260]).resize((320, 240))) for f in frames])


@pytest.mark.parametrize("make,reason", [
    (lambda f: np.repeat(f[:1], 12, axis=0), "nothing in the frame moves above its noise floor (a frozen clip?)"),
    (lambda f: f[:2], "too few frames to find the sector (2; at least 3)"),
    (lambda f: F.grabbed(np.random.default_rng(1).integers(0, 255, f.shape, dtype=np.uint8), noise=1),
     "nothing in the frame moves above its noise floor"),
    (cropped, "the sector would cover 8"),
])
def test_a_clip_without_a_trustworthy_sector_is_a_recorded_reject(tmp_path, make, reason):
    frames, marks = planted(noise=2)
    F.save(F.with_frames(make(frames), study=F.variant().StudyInstanceUID + ".5", patient="P-1"),
           tmp_path / "src" / "bad.dcm")
    t, _ = ingest_one(tmp_path, frames)  # beside a good clip of the same study
    assert t["videos"].height == 1
    (why,) = t["rejected"].filter(pl.col("step") == "pixels")["reason"].to_list()
    assert why.startswith(f"no sector found, so burned-in text cannot be removed: {reason}") and "allow_unmasked" in why


def test_allowed_unmasked_clips_keep_the_image_and_still_lose_the_text(tmp_path):
    frames, marks = planted(noise=2)
    still = np.repeat(frames[:1], 6, axis=0)
    t, stored = ingest_one(tmp_path, still, allow_unmasked=True)
    row = t["videos"].row(0, named=True)
    assert row["mask_method"].startswith("whole image (allowed: nothing in the frame moves") and row["mask_fraction"] == 1.0
    for g in marks:
        assert abs(leftover(stored[0], g)) < READABLE


def test_the_sector_fit_keeps_dim_far_field_and_leaves_a_trace_out():
    """The fan is fitted, not the moving pixels: it reaches the sector's dim flanks under noise, and a sweeping
    ECG trace touching its bottom is not part of it."""
    clean, _ = sector_mask(F.cine().pixel_array)
    for frames in (F.grabbed(F.cine().pixel_array, noise=2),
                   F.grabbed(F.ecg_trace(F.cine().pixel_array, 196), noise=2)):
        mask, info = sector_mask(frames)
        assert (mask & clean).sum() / clean.sum() > 0.8 and (mask & ~clean).sum() / mask.sum() < 0.1, info
        assert not mask[200:, :40].any() and not mask[200:, 280:].any()  # the trace's ends, away from the fan
    with pytest.raises(MaskError):
        sector_mask(np.zeros((5, 64, 64, 3), np.uint8))

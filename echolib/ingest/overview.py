"""What the ingest notebook shows: counts, rejected reasons, a grid of masked frames."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image

from ..io.video import read_clip

KEY = re.compile(r"^[PSV][0-9a-f]{16}$")


def counts(tables: dict[str, pl.DataFrame]) -> dict:
    v, r = tables["videos"], tables["rejected"]
    return {"patients": tables["patients"].height, "studies": tables["studies"].height, "clips": v.height,
            "studies_with_report": int(tables["studies"]["report"].is_not_null().sum()),
            "rejected": r.height, "rejected_by_reason": dict(r.group_by("reason").len().iter_rows()),
            "fps_default": int((v["fps_source"] == "default").sum()) if v.height else 0}


def deid_summary(videos: pl.DataFrame) -> pl.DataFrame:
    """How each clip's pixels were de-identified: clips per mask method, the mean share of the frame kept, and the
    clips in which burned-in text or markers were blanked inside the kept area."""
    if videos.height == 0:
        return pl.DataFrame(schema={"mask method": pl.String, "clips": pl.UInt32})
    return (videos.group_by("mask_method").agg(pl.len().alias("clips"),
                                               pl.col("mask_fraction").mean().round(3).alias("share of frame kept"),
                                               (pl.col("text_pixels") > 0).sum().alias("clips with text blanked"))
            .sort("clips", descending=True).rename({"mask_method": "mask method"}))


def keys_are_hashed(tables: dict[str, pl.DataFrame]) -> bool:
    """Every patient/study/video key is a salted hash (nothing from the source's own identifiers)."""
    cols = [tables["patients"]["patient_id"], tables["studies"]["study_id"], tables["studies"]["patient_id"],
            tables["videos"]["video_id"], tables["videos"]["study_id"]]
    return all(bool(KEY.match(k)) for c in cols for k in c.to_list())


def masked_grid(root: str | Path, videos: pl.DataFrame, n: int = 12, cols: int = 4, height: int = 120,
                seed: int = 0) -> Image.Image:
    """The middle frame of up to `n` ingested (masked) clips, each scaled to `height` pixels, `cols` per row."""
    sub = videos.sample(min(n, videos.height), seed=seed) if videos.height else videos
    tiles = []
    for row in sub.iter_rows(named=True):
        frame = read_clip(Path(root) / row["path"], 1, start=row["n_frames"] // 2)[0]
        img = Image.fromarray(frame)
        tiles.append(np.asarray(img.resize((max(1, round(img.width * height / img.height)), height))))
    if not tiles:
        return Image.new("RGB", (height, height))
    width = max(t.shape[1] for t in tiles)
    tiles = [np.pad(t, ((0, 0), (0, width - t.shape[1]), (0, 0))) for t in tiles]
    tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % cols)
    rows = [np.concatenate(tiles[i:i + cols], axis=1) for i in range(0, len(tiles), cols)]
    return Image.fromarray(np.concatenate(rows, axis=0))

"""What the synthesize notebook shows: frame grids, a systole/diastole strip, counts, distributions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image

from ..io.video import read_clip
from ..vocab import FINDINGS, VIEWS

VIEW_ORDER = (*VIEWS, "OTHER")


def frame_grid(root: str | Path, videos: pl.DataFrame, per_view: int = 4, frame: int = 0, scale: int = 2,
               seed: int = 0) -> Image.Image:
    """One row per view (LAX ... OTHER), `per_view` clips each, one frame of each."""
    rows = []
    for view in VIEW_ORDER:
        sub = videos.filter(pl.col("view") == view)
        if sub.height == 0:
            continue
        sub = sub.sample(min(per_view, sub.height), seed=seed)
        tiles = [read_clip(Path(root) / p, 1, start=frame)[0] for p in sub["path"]]
        while len(tiles) < per_view:
            tiles.append(np.zeros_like(tiles[0]))
        rows.append(np.concatenate(tiles, axis=1))
    img = Image.fromarray(np.concatenate(rows, axis=0))
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST)


def cycle_strip(root: str | Path, video: dict, n: int = 8, scale: int = 2) -> tuple[Image.Image, list[str]]:
    """`n` frames over the clip with each frame's phase label (systole / diastole)."""
    clip = read_clip(Path(root) / video["path"], video["n_frames"])
    idx = np.linspace(0, len(clip) - 1, n).round().astype(int)
    h, w = clip.shape[1:3]
    centre = clip[:, h // 5: 3 * h // 4, w // 4: 3 * w // 4, 0]
    cavity = (centre < 40).mean(axis=(1, 2))[idx]  # dark (blood) share: largest at end-diastole
    labels = [f"{i}" for i in idx]
    labels[int(np.argmax(cavity))] += " ED (diastole)"
    labels[int(np.argmin(cavity))] += " ES (systole)"
    img = Image.fromarray(np.concatenate(list(clip[idx]), axis=1))
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST), labels


def counts_by_view_split(videos: pl.DataFrame, studies: pl.DataFrame, split: pl.DataFrame) -> pl.DataFrame:
    """Table-2-style counts: studies, patients and clips per view for each split."""
    v = videos.join(studies.select("study_id", "patient_id"), on="study_id").join(split, on="patient_id")
    clips = v.pivot(on="view", index="split", values="video_id", aggregate_function="len").fill_null(0)
    per = (studies.join(split, on="patient_id").group_by("split")
           .agg(pl.len().alias("studies"), pl.col("patient_id").n_unique().alias("patients")))
    cols = ["split", "patients", "studies", *[c for c in VIEW_ORDER if c in clips.columns]]
    return per.join(clips, on="split").select(cols).sort(pl.col("split").replace_strict(
        {"train": 0, "valid": 1, "test": 2}, default=3))


def finding_distribution(studies: pl.DataFrame) -> pl.DataFrame:
    """Long table: finding, grade, grade order, count."""
    parts = []
    for f, grades in FINDINGS.items():
        c = studies.group_by(f).len().rename({f: "grade", "len": "count"})
        order = pl.DataFrame({"grade": list(grades), "order": list(range(len(grades)))})
        parts.append(order.join(c, on="grade", how="left").fill_null(0).with_columns(finding=pl.lit(f)))
    return pl.concat(parts).select("finding", "grade", "order", "count")


def report_token_counts(reports: list[str]) -> np.ndarray:
    """MeCab (fugashi + unidic-lite) words per report: the unit the WordPiece tokenizer later splits."""
    import fugashi

    tagger = fugashi.Tagger()
    return np.array([len(tagger(r)) for r in reports])


def stage_metrics(tables: dict[str, pl.DataFrame]) -> dict:
    """metrics/synth.json: counts, the OTHER/poor-quality share, report length and video size."""
    patients, studies, videos = tables["patients"], tables["studies"], tables["videos"]
    other_or_poor = (videos["view"] == "OTHER") | (videos["quality"] < 0.5)
    return {"patients": patients.height, "studies": studies.height, "videos": videos.height,
            "videos_per_view": dict(videos.group_by("view").len().sort("view").iter_rows()),
            "other_or_poor_share": round(float(other_or_poor.mean()), 4),
            "report_chars_median": float(studies["report"].str.len_chars().median()),
            "video_mib": round(videos["bytes"].sum() / 2**20, 1)}


def finding_chart(dist: pl.DataFrame):
    """Bars of `finding_distribution`: one small panel per finding, grades in order of severity."""
    import altair as alt

    return alt.Chart(dist.to_pandas()).mark_bar().encode(
        x=alt.X("count:Q"), y=alt.Y("grade:N", sort=alt.SortField("order")),
        facet=alt.Facet("finding:N", columns=4), tooltip=["finding", "grade", "count"],
    ).properties(width=150, height=70).resolve_scale(y="independent", x="independent")


def length_chart(lengths: pl.DataFrame):
    """Histogram of report length in characters."""
    import altair as alt

    return alt.Chart(lengths.to_pandas()).mark_bar().encode(alt.X("characters:Q", bin=alt.Bin(maxbins=30)),
                                                            y="count()").properties(width=400, height=150)


def beside_real(root: str | Path, videos: pl.DataFrame, seconds: tuple[float, ...] = (0.0, 0.33, 0.67),
                height: int = 160, seed: int = 0) -> Image.Image:
    """pydicom's real apical 4CH cine (top) and a synthetic 4CH clip (below) at the same times after their first
    frame, each frame scaled to `height` pixels: the reference the renderer's appearance is set against."""
    import pydicom
    from pydicom import examples

    ds = pydicom.dcmread(examples.get_path("ybr_color"))
    real, real_fps = ds.pixel_array, 1000.0 / float(ds.get("FrameTime", 33.33))
    clip = videos.filter((pl.col("view") == "4CH") & ~pl.col("doppler") & (pl.col("quality") > 0.6))
    row = clip.sample(1, seed=seed).row(0, named=True)
    synth = read_clip(Path(root) / row["path"], row["n_frames"])

    def strip(frames, fps):
        tiles = [Image.fromarray(frames[min(round(t * fps), len(frames) - 1)]) for t in seconds]
        return np.concatenate([np.asarray(t.resize((round(t.width * height / t.height), height))) for t in tiles], 1)

    top, bottom = strip(real, real_fps), strip(synth, row["fps"])
    width = max(top.shape[1], bottom.shape[1])
    pad = [np.pad(x, ((0, 0), (0, width - x.shape[1]), (0, 0))) for x in (top, bottom)]
    return Image.fromarray(np.concatenate(pad, axis=0))


def check_reports(reports: list[str], style: str) -> None:
    """QC of the generated reports: one sentence per finding (findings style) or the three sections."""
    from ..text import split_findings
    from .reports import FINDING_ORDER

    if style == "findings":
        counts = {len(split_findings(r)) for r in reports}
        assert counts == {len(FINDING_ORDER)}, f"findings reports must hold {len(FINDING_ORDER)} sentences, got {counts}"
        assert not any("【" in r or "\n" in r for r in reports), "findings reports have no sections"
    else:
        assert all(r.startswith("【計測】") and "【所見】" in r and "【結論】" in r for r in reports)

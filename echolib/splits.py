"""Patient-grouped train/valid/test split (the paper: 0.875 / 0.025 / 0.1 of patients).

Patients, never studies or clips, are assigned, so a patient's follow-up studies cannot leak across splits.
"""

from __future__ import annotations

import hashlib

import numpy as np
import polars as pl

SPLITS = ("train", "valid", "test")
PAPER_RATIOS = (0.875, 0.025, 0.1)


def split_patients(patient_ids, ratios=PAPER_RATIOS, seed: int = 0) -> pl.DataFrame:
    """Assign each unique patient to train/valid/test; returns columns patient_id, split.

    Order-independent: a patient's draw depends only on (seed, patient_id), so adding patients never moves
    existing ones; counts follow `ratios` by cumulative cut of the sorted draws.
    """
    ratios = tuple(float(r) for r in ratios)
    if len(ratios) != 3 or any(r < 0 for r in ratios) or abs(sum(ratios) - 1) > 1e-6:
        raise ValueError(f"split ratios must be three non-negative numbers summing to 1, got {ratios}")
    ids = sorted(set(str(p) for p in patient_ids))
    key = np.array([_draw(seed, p) for p in ids])
    order = np.argsort(key, kind="stable")
    n = len(ids)
    cuts = np.round(np.cumsum(ratios) * n).astype(int)
    split = np.empty(n, dtype=object)
    start = 0
    for name, end in zip(SPLITS, cuts, strict=True):
        split[order[start:end]] = name
        start = end
    return pl.DataFrame({"patient_id": ids, "split": split.tolist()})


def _draw(seed: int, patient_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{patient_id}".encode()).digest()[:8], "big")


NO_CLIP = "no clip passed the view filter"


def assign_studies(studies: pl.DataFrame, videos: pl.DataFrame, ratios=PAPER_RATIOS, seed: int = 0) -> pl.DataFrame:
    """One row per study: split (by patient), kept clips per view, has_4ch, eval_4ch and an exclusion reason.

    `videos` holds the filtered clips (video_id, study_id, pred_view or view, kept). Studies with no kept clip
    stay in the table with `excluded` = NO_CLIP, so nothing is silently lost.
    """
    view_col = "pred_view" if "pred_view" in videos.columns else "view"
    kept = videos.filter(pl.col("kept")) if "kept" in videos.columns else videos
    per = (kept.group_by("study_id").agg(pl.len().alias("n_clips"),
                                         (pl.col(view_col) == "4CH").sum().alias("n_4ch")))
    split = split_patients(studies["patient_id"], ratios, seed)
    out = (studies.select("study_id", "patient_id").join(split, on="patient_id", how="left")
           .join(per, on="study_id", how="left").with_columns(pl.col("n_clips", "n_4ch").fill_null(0)))
    return out.with_columns(
        has_4ch=pl.col("n_4ch") > 0,
        excluded=pl.when(pl.col("n_clips") == 0).then(pl.lit(NO_CLIP)).otherwise(pl.lit("")),
    ).with_columns(eval_4ch=(pl.col("split") == "test") & pl.col("has_4ch") & (pl.col("excluded") == ""))


def patients_in_two_splits(assigned: pl.DataFrame) -> int:
    return int((assigned.group_by("patient_id").agg(pl.col("split").n_unique())["split"] > 1).sum())


def table2(assigned: pl.DataFrame, videos: pl.DataFrame, views=("LAX", "SAX", "2CH", "3CH", "4CH")) -> dict:
    """The paper's Table 2: patients, studies and kept clips per view for each split (+ the 4CH test subset)."""
    view_col = "pred_view" if "pred_view" in videos.columns else "view"
    used = assigned.filter(pl.col("excluded") == "")
    kept = videos.filter(pl.col("kept")) if "kept" in videos.columns else videos
    clips = kept.join(used.select("study_id", "split"), on="study_id")
    out = {}
    for s in SPLITS:
        u = used.filter(pl.col("split") == s)
        c = clips.filter(pl.col("split") == s)
        out[s] = {"patients": u["patient_id"].n_unique(), "studies": u.height,
                  "clips": {v: int((c[view_col] == v).sum()) for v in views}}
    out["test_4ch"] = {"studies": int(used["eval_4ch"].sum()),
                       "patients": used.filter(pl.col("eval_4ch"))["patient_id"].n_unique()}
    return out


def table2_frame(t2: dict) -> pl.DataFrame:
    """`table2` (or metrics/split.json) as the paper's Table 2: one row per split, patients, studies, clips per view."""
    return pl.DataFrame([{"split": s, "patients": t2[s]["patients"], "studies": t2[s]["studies"], **t2[s]["clips"]}
                         for s in SPLITS if s in t2])


def run_split(ctx) -> dict:
    """Stage `split`: patient-level split of the studies (params `split`, base.seed) with the kept clips of
    data/filtered; writes data/split/studies.parquet; returns Table 2 and the exclusions (metrics/split.json)."""
    studies = pl.read_parquet(ctx.raw / "studies.parquet")
    videos = pl.read_parquet(ctx.data / "filtered" / "videos.parquet")
    assigned = assign_studies(studies, videos, ctx.split.ratios, ctx.base.seed)
    if assigned.height != studies.height:
        raise ValueError(f"split: {studies.height} studies in, {assigned.height} assigned")
    valid_4ch = assigned.filter((pl.col("split") == "valid") & pl.col("has_4ch") & (pl.col("excluded") == "")).height
    if valid_4ch < ctx.split.min_valid_4ch:
        raise ValueError(f"split: {valid_4ch} validation studies have a 4CH clip, fewer than split.min_valid_4ch "
                         f"({ctx.split.min_valid_4ch}): raise split.valid or lower split.min_valid_4ch")
    out = ctx.out("split")
    out.mkdir(parents=True, exist_ok=True)
    assigned.write_parquet(out / "studies.parquet")
    excluded = assigned.filter(pl.col("excluded") != "")
    return {**table2(assigned, videos), "patients_in_two_splits": patients_in_two_splits(assigned),
            "excluded_studies": dict(excluded.group_by("excluded").len().iter_rows()),
            "ratios": list(ctx.split.ratios), "valid_4ch": valid_4ch}

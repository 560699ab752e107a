"""What the clips allow: the ranks a perfect reader would reach, computed from the benchmark's ground truth.

A perfect reader of a study's clips knows every finding the clips show (`vocab.VISIBILITY`: a finding is shown by a
clip of one of its views; a colour-Doppler finding by a colour-Doppler clip of one of its views; a regional
wall-motion abnormality by a view that shows its territory) and nothing else. Asked to rank the candidate
reports, it puts every report that disagrees with what it saw below every report that agrees, and orders the
agreeing ones at random: the true report's expected rank is 1 + (k - 1) / 2 among the k agreeing ones, and its
chance to be among the first 10 is min(1, 10 / k). Report -> video is the same question asked the other way: the
studies whose clips show nothing that contradicts the report.

Three readers, as for Table 1: every finding (the reports' own resolution: only identical reports tie), the
study's MultiVideo clips (its five views), and its 4CH clips. Their MCMRR / N and R@10 are the ceilings a
trained model could reach on the same test studies; a model far above them has not learned what the clips show.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from .vocab import FINDINGS, TERRITORY_ARTERY, VIEW_TERRITORIES, VIEWS, VISIBILITY

READERS = {"every finding": None, "MultiVideo clips": VIEWS, "4CH clips": ("4CH",)}


def shown_findings(clips: pl.DataFrame, truth: dict, views) -> set[str]:
    """The findings a study's `clips` show, given its true findings `truth`: the clips a model of `views` embeds
    (chosen by `pred_view` when there is one, as the view filter chose them), each showing what its true `view`
    shows (colour-Doppler findings: its `doppler` flag)."""
    chosen = "pred_view" if "pred_view" in clips.columns else "view"
    clips = clips.filter(pl.col(chosen).is_in(list(views)))
    seen = set(clips["view"].to_list())
    doppler = set(clips.filter(pl.col("doppler"))["view"].to_list()) if "doppler" in clips.columns else set()
    out = set()
    for f, vis in VISIBILITY.items():
        where = doppler if vis["doppler"] else seen
        if f in ("rwma_territory", "rwma_grade") and truth.get("rwma_territory") in TERRITORY_ARTERY:
            artery = TERRITORY_ARTERY[truth["rwma_territory"]]  # an abnormality is seen where its territory is
            if any(artery in VIEW_TERRITORIES[v] for v in where):
                out.add(f)
        elif set(vis["views"]) & where:
            out.add(f)
    return out


def _agree(truth: np.ndarray, shown: np.ndarray) -> np.ndarray:
    """agree[i, j]: the grades study i's clips show all equal report j's (truth: (N, F) codes; shown: (N, F))."""
    same = truth[:, None, :] == truth[None, :, :]  # (N, N, F)
    return (same | ~shown[:, None, :]).all(axis=2)


def ceilings(truth: pl.DataFrame, clips: pl.DataFrame, views=None) -> dict:
    """MCMRR / N and R@10 (%) of the perfect reader of `views` (None: every finding) on the studies of `truth`
    (study_id and the finding columns), both directions; `clips` holds study_id, view (true), doppler and
    optionally pred_view of their kept clips. Also the mean number of reports tied with the true one."""
    findings = [f for f in FINDINGS if f in truth.columns]
    rows = truth.select("study_id", *findings).to_dicts()
    grade = {g: i for i, g in enumerate(sorted({str(r[f]) for r in rows for f in findings}))}
    codes = np.array([[grade[str(r[f])] for f in findings] for r in rows], dtype=np.int64).reshape(len(rows), -1)
    if views is None:
        shown = np.ones(codes.shape, bool)
    else:
        by_study = {s: g for (s,), g in clips.group_by("study_id")}
        empty = clips.clear()
        shown = np.array([[f in seen for f in findings] for seen in
                          (shown_findings(by_study.get(r["study_id"], empty), r, views) for r in rows)], bool)
    agree = _agree(codes, shown)  # rows: what study i's clips show; columns: candidate reports j
    n = len(rows)
    out = {"n": n}
    for d, k in (("v2r", agree.sum(1)), ("r2v", agree.sum(0))):
        out[f"mcmrr_{d}_n"] = float((1 + (k - 1) / 2).mean() / n)
        out[f"r10_{d}_pct"] = float(100 * np.minimum(1.0, 10 / k).mean())
        out[f"tied_{d}"] = float(k.mean())
    return out


def oracle_table(truth: pl.DataFrame, clips: pl.DataFrame) -> dict:
    """Every reader's ceilings on the same studies: {reader: ceilings}."""
    return {name: ceilings(truth, clips, views) for name, views in READERS.items()}

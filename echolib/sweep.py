"""The training budget sweep (stage `budget_sweep`, optional): at which number of epochs has every Table 1 run
converged?

The paper trains every run for the same number of epochs over its own training clips (`train.epochs`), so
MultiVideo takes about five times SingleVideo's steps. Which number is enough is chosen here, on the validation
split only, before any test result is read: each run of `sweep.runs` is trained at every multiple of
`train.epochs` in `sweep.multiples` (each budget with its own cosine schedule, ending at its last step), with every
seed of `sweep.seeds`, and its best validation MCMRR (study level, both directions; the checkpoint Table 1 would
keep) recorded against epochs and against steps.

The rule, written before the sweep was run: a run has converged at the smallest multiple whose validation MCMRR/N
(mean over seeds) is within `sweep.tolerance` of the best over the multiples; the budget recommended is the
largest of those multiples over the runs, so that every run has converged at it. The stage reports the
recommendation; `train.epochs` in params.yaml is what the default runs (a person changes it and says why).
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl


def multiple_label(m: float) -> str:
    return f"x{m:g}"


def sweep_rows(out: Path, runs: list[str], multiples: list[float], base_epochs: float) -> pl.DataFrame:
    """One row per (run, multiple, seed) trained under `out`/x<m>/<run>/seed<s>: the budget and its best
    validation score (MCMRR both directions, and divided by the validation studies)."""
    rows = []
    for m in multiples:
        for r in runs:
            for p in sorted((out / multiple_label(m) / r).glob("seed*/summary.json")):
                s = json.loads(p.read_text())
                n = max(s.get("val_studies") or 0, 1)
                rows.append({"run": r, "multiple": m, "epochs": m * base_epochs, "seed": s["seed"],
                             "steps": s["global_steps"], "epochs_run": s["epochs_run"],
                             "train_clips": s["train_clips"], "val_studies": s["val_studies"],
                             "val_mcmrr": s["best_val_mcmrr"], "val_mcmrr_n": s["best_val_mcmrr"] / n,
                             "train_seconds": s["train_seconds"]})
    return pl.DataFrame(rows)


def choose_budget(rows: pl.DataFrame, tolerance: float) -> dict:
    """The rule of the module docstring: per run, the smallest multiple whose mean validation MCMRR/N is within
    `tolerance` of the run's best mean; the recommended multiple is the largest of these."""
    means = (rows.group_by("run", "multiple").agg(pl.col("val_mcmrr_n").mean().alias("mean"),
                                                  pl.col("val_mcmrr_n").std().alias("sd"), pl.len().alias("seeds"),
                                                  pl.col("steps").mean().alias("steps"))
             .sort("run", "multiple"))
    per_run = {}
    for (r,), g in means.group_by("run", maintain_order=True):
        best = g["mean"].min()
        ok = g.filter(pl.col("mean") <= best + tolerance)
        per_run[r] = {"converged_at": float(ok["multiple"].min()), "best_multiple": float(
            g.filter(pl.col("mean") == best)["multiple"][0]), "best_val_mcmrr_n": float(best)}
    return {"per_run": per_run, "multiple": max(v["converged_at"] for v in per_run.values()),
            "rule": f"smallest multiple within {tolerance} MCMRR/N of each run's best (mean over seeds); "
                    "the largest over runs", "means": means.to_dicts()}


def run_budget_sweep(ctx) -> dict:
    """Stage `budget_sweep`: train every (run, multiple, seed) not yet done in this attempt's folder (an
    interrupted attempt continues), then the table, the recommendation and the times (metrics/budget_sweep.json).
    Skipped (a note) while sweep.multiples is []."""
    cfg, out = ctx.sweep, ctx.out("budget_sweep")
    out.mkdir(parents=True, exist_ok=True)
    if not cfg.multiples:
        why = "sweep.multiples is []: no budget sweep (README, 'Choosing the training budget')"
        (out / "SKIPPED.txt").write_text(why + "\n")
        return {"skipped": why}
    if not ctx.train.epochs:
        raise ValueError("params: 'sweep.multiples' multiplies train.epochs, which is 0 (a budget in steps); set "
                         "train.epochs")
    for m in cfg.multiples:
        for r in cfg.runs:
            for seed in cfg.seeds:
                if not (out / multiple_label(m) / r / f"seed{seed}" / "summary.json").is_file():
                    ctx.run_module("echolib.train", "--run", r, "--seed", str(seed), "--out-root",
                                   out / multiple_label(m), "--epochs", f"{m * ctx.train.epochs:g}",
                                   "--resume-if-possible")
    rows = sweep_rows(out, cfg.runs, cfg.multiples, ctx.train.epochs)
    expected = len(cfg.multiples) * len(cfg.runs) * len(cfg.seeds)
    if rows.height != expected:
        raise RuntimeError(f"budget_sweep: {rows.height} of {expected} (run, multiple, seed) trainings finished")
    choice = choose_budget(rows, cfg.tolerance)
    return {"base_epochs": ctx.train.epochs, "multiples": list(cfg.multiples), "runs": list(cfg.runs),
            "seeds": list(cfg.seeds), "tolerance": cfg.tolerance, "rows": rows.to_dicts(), **choice,
            "recommended_epochs": choice["multiple"] * ctx.train.epochs}


def load_rows(path: str | Path) -> pl.DataFrame:
    m = json.loads(Path(path).read_text()) if Path(path).is_file() else {}
    return pl.DataFrame(m.get("rows", []))

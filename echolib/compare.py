"""Comparing runs: Table 1 with paired-bootstrap CIs over the same test studies, the differences the paper's claims
rest on, per-finding differences, where a multi-view gain comes from, and Fig. 3-style examples.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from .ranking import KS


def bootstrap_ci(ranks: dict[str, pl.DataFrame | list[pl.DataFrame]], n: int = 1000, seed: int = 0,
                 level: float = 0.95, pairs: list[tuple[str, str]] = ()) -> dict:
    """Paired bootstrap over evaluation studies (the same resampled studies for every run) and over seeds.

    `ranks[run]` holds study_id, rank_v2r, rank_r2v on the same studies, or a list of such tables, one per seed.
    A run's value is the mean over its seeds; each resample draws the studies (shared by all runs) and, per run,
    its seeds with replacement, so the interval holds the spread between studies and between seeds. Returns per
    run and per metric {value, lo, hi, seeds, sd} (sd over seeds), and for each (a, b) in `pairs` the CI of
    metric(a) - metric(b)."""
    ranks = {r: (v if isinstance(v, list) else [v]) for r, v in ranks.items()}
    runs = list(ranks)
    base = ranks[runs[0]][0]["study_id"].to_list()
    for r in runs:
        if any(df["study_id"].to_list() != base for df in ranks[r]):
            raise ValueError(f"bootstrap: run {r} was evaluated on different studies than {runs[0]}")
    idx = np.random.default_rng(seed).integers(0, len(base), size=(n, len(base)))
    seed_rng = np.random.default_rng([seed, 1])
    alpha = (1 - level) / 2

    def stats(dfs: list[pl.DataFrame]) -> dict[str, tuple]:
        draw = seed_rng.integers(0, len(dfs), size=(n, len(dfs)))  # seeds drawn with replacement per resample
        out = {}
        for d in ("v2r", "r2v"):
            per_seed = {f"mcmrr_{d}": [df[f"rank_{d}"].to_numpy().astype(float) for df in dfs]}
            for k in KS:
                per_seed[f"r{k}_{d}"] = [(df[f"rank_{d}"].to_numpy() <= k).astype(float) for df in dfs]
            for m, vals in per_seed.items():
                full = np.array([v.mean() for v in vals])
                boot = np.stack([v[idx].mean(axis=1) for v in vals])  # (seeds, n)
                out[m] = (float(full.mean()), boot[draw, np.arange(n)[:, None]].mean(axis=1), full)
        return out

    s = {r: stats(ranks[r]) for r in runs}
    res = {"n_studies": len(base), "n_resamples": n, "level": level, "runs": {}, "differences": {}}
    for r in runs:
        res["runs"][r] = {m: {"value": v, "lo": float(np.quantile(b, alpha)), "hi": float(np.quantile(b, 1 - alpha)),
                              "seeds": len(full), "sd": float(full.std(ddof=1)) if len(full) > 1 else 0.0}
                          for m, (v, b, full) in s[r].items()}
    for a, b in pairs:
        if a in s and b in s:
            res["differences"][f"{a} - {b}"] = {
                m: {"value": s[a][m][0] - s[b][m][0], "lo": float(np.quantile(s[a][m][1] - s[b][m][1], alpha)),
                    "hi": float(np.quantile(s[a][m][1] - s[b][m][1], 1 - alpha))} for m in s[a]}
    return res


TABLE1_ROWS = ("MultiVideo", "MultiVideo-4CH", "MultiVideo-matched", "SingleVideo", "SingleVideo-exposure",
               "SingleImage", "SingleImage-1frame")
#: the differences the paper's claims rest on: video over image, multi-view over single view, no transfer from
#: multi-view training (at equal steps, and at equal exposure to 4CH clips), averaging more clips, frames averaged
TABLE1_PAIRS = (("SingleImage", "SingleVideo"), ("SingleVideo", "MultiVideo"), ("MultiVideo-4CH", "SingleVideo"),
                ("MultiVideo-4CH", "SingleVideo-exposure"), ("SingleVideo", "MultiVideo-matched"),
                ("SingleImage-1frame", "SingleImage"))


def load_ranks(eval_dir: str | Path, seed: str | None = None, name: str = "ranks.parquet",
               all_seeds: bool = False) -> dict[str, pl.DataFrame | list[pl.DataFrame]]:
    """ranks.parquet (or another per-seed table, e.g. findings.parquet) of every evaluated variant,
    eval_dir/<run>/<variant>/<seed>/: the first seed's (or `seed`'s), or with `all_seeds` a list over seeds."""
    out = {}
    for d in sorted(p for p in Path(eval_dir).glob("*/*") if p.is_dir()):
        seeds = sorted(d.glob(f"seed*/{name}"), key=lambda p: int(p.parent.name[4:]))
        pick = [p for p in seeds if seed is None or p.parent.name == seed]
        if pick:
            out[d.name] = [pl.read_parquet(p) for p in pick] if all_seeds else pl.read_parquet(pick[0])
    return out


#: per-finding comparisons: where motion (video vs image) and other views (MultiVideo vs the 4CH runs) should tell
FINDING_PAIRS = (("SingleVideo", "SingleImage"), ("MultiVideo", "SingleVideo"), ("MultiVideo-4CH", "SingleVideo"))


def finding_differences(eval_dir: str | Path, method: str = "probe", pairs=FINDING_PAIRS, n_boot: int = 200,
                        seed: int = 0, level: float = 0.95) -> pl.DataFrame:
    """Per finding and pair of runs (a, b): macro-F1 and accuracy of a minus b with paired bootstrap CIs, from the
    findings.parquet the evaluate stage writes (`method`: "probe" or "zero_shot"), beside where DATA.md says the
    finding can be judged (motion needed, views showing it). Empty when no run has findings (real data)."""
    from .interpret import paired_finding_differences
    from .vocab import FINDINGS, VISIBILITY

    found = {k: v.filter(pl.col("method") == method) for k, v in load_ranks(eval_dir, name="findings.parquet").items()}
    rows = []
    for a, b in pairs:
        if a not in found or b not in found:
            continue
        diff = paired_finding_differences(found[a], found[b], {f: list(g) for f, g in FINDINGS.items()}, n_boot,
                                          seed, level)
        for f, d in diff.items():
            vis = VISIBILITY.get(f, {})
            rows.append({"difference": f"{a} - {b}", "finding": f, "motion": vis.get("motion"),
                         "views": ",".join(vis.get("views", ())), "macro_f1": d["macro_f1"],
                         "lo": d["macro_f1_ci"][0], "hi": d["macro_f1_ci"][1], "accuracy": d["accuracy"],
                         "accuracy_lo": d["accuracy_ci"][0], "accuracy_hi": d["accuracy_ci"][1]})
    return pl.DataFrame(rows)


def retrieval_examples(ranks: dict[str, pl.DataFrame], studies: pl.DataFrame, findings, n: int = 3,
                       seed: int = 0) -> pl.DataFrame:
    """Fig. 3-style examples: for `n` evaluation studies, each run's top retrieved report and the findings in
    which the retrieved study differs from the true one (finding: true -> retrieved)."""
    base = next(iter(ranks.values()))
    picks = base.sample(min(n, base.height), seed=seed)["study_id"].to_list()
    truth = {r["study_id"]: r for r in studies.iter_rows(named=True)}
    rows = []
    for sid in picks:
        for run, df in ranks.items():
            got = df.filter(pl.col("study_id") == sid)["top1_v2r"].item()
            diff = [f"{f}: {truth[sid][f]} → {truth[got][f]}" for f in findings
                    if f in truth[sid] and truth[sid][f] != truth[got][f]]
            rows.append({"study_id": sid, "model": run, "retrieved": got, "correct": got == sid,
                         "differing_findings": "; ".join(diff) or "none", "retrieved_report": truth[got]["report"]})
    return pl.DataFrame(rows)


def format_ci(v: dict, digits: int) -> str:
    """{value, lo, hi} as 'value [lo, hi]'."""
    return f"{v['value']:.{digits}f} [{v['lo']:.{digits}f}, {v['hi']:.{digits}f}]"


def table1_frame(res: dict, normalised: bool = False) -> pl.DataFrame:
    """Table 1 in the paper's layout (MCMRR and R@10, both directions) with CIs, from bootstrap_ci output.

    normalised: MCMRR divided by the number of candidates (the evaluated studies) instead, so that tables over test
    sets of different sizes (the paper's 5,515 studies, ours) can be set side by side; chance is about 0.5."""
    rows = [r for r in TABLE1_ROWS if r in res["runs"]] + [r for r in res["runs"] if r not in TABLE1_ROWS]
    n = res["n_studies"] if normalised else 1

    def mcmrr(v: dict) -> str:
        return format_ci({k: v[k] / n for k in ("value", "lo", "hi")}, 3 if normalised else 1)

    name = "MCMRR/N" if normalised else "MCMRR"
    return pl.DataFrame([{"model": r, f"{name} v→r": mcmrr(res["runs"][r]["mcmrr_v2r"]),
                          "R@10 v→r": format_ci(res["runs"][r]["r10_v2r"], 3),
                          f"{name} r→v": mcmrr(res["runs"][r]["mcmrr_r2v"]),
                          "R@10 r→v": format_ci(res["runs"][r]["r10_r2v"], 3),
                          "seeds": res["runs"][r]["mcmrr_v2r"].get("seeds", 1)} for r in rows])


def differences_frame(res: dict) -> pl.DataFrame:
    """The paired differences of bootstrap_ci output, one row per pair, values with CIs."""
    return pl.DataFrame([{"difference": d, **{k: format_ci(v[k], 3 if k.startswith("r") else 1)
                                              for k in ("mcmrr_v2r", "r10_v2r", "mcmrr_r2v", "r10_r2v")}}
                         for d, v in res["differences"].items()])


def load_table1(table1_json: str | Path) -> dict:
    """Another pipeline's metrics/table1.json (e.g. the control profile's), to show beside this one."""
    path = Path(table1_json)
    if not path.is_file():
        raise FileNotFoundError(f"evaluate.beside: {path} does not exist (run `dvc repro` in that checkout first)")
    res = json.loads(path.read_text())
    if not {"runs", "differences"} <= set(res):
        raise ValueError(f"evaluate.beside: {path} is not a table1.json written by the compare stage")
    return res


def beside_eval_dir(table1_json: str | Path, data_root: str = "data") -> Path:
    """The evaluation folder of the checkout whose metrics/table1.json is shown beside (its per-study predictions)."""
    return Path(table1_json).resolve().parents[1] / data_root / "eval"


def differences_beside(this: pl.DataFrame, other: pl.DataFrame) -> pl.DataFrame:
    """Two `finding_differences` tables (this pipeline's and the one beside) as one: per difference and finding,
    macro-F1 'value [lo, hi]' of each."""
    def fmt(df: pl.DataFrame, name: str) -> pl.DataFrame:
        value = pl.format("{} [{}, {}]", *(pl.col(k).round(3) for k in ("macro_f1", "lo", "hi")))
        return df.select("difference", "finding", "motion", value.alias(name))

    return fmt(this, "this").join(fmt(other, "beside"), on=["difference", "finding", "motion"], how="left")


def averaging_frame(retrieval_dir: str | Path) -> pl.DataFrame:
    """Where a study-level gain comes from: per variant, clips per study, video->report MCMRR and R@10 of single
    clips and of the study mean. A run that only averages more clips of the same information shows the same
    per-clip scores as another and a larger study-level gain."""
    rows = []
    for path in sorted(Path(retrieval_dir).glob("*.json")):
        res = json.loads(path.read_text())
        for name, v in res["variants"].items():
            n, clip, study = res["n_studies"], v["per_clip"], v["study"]
            rows.append({"model": name, "clips per study": round(clip["n_clips"] / max(n, 1), 2),
                         "clip MCMRR v→r": round(clip["mcmrr_v2r"], 1), "study MCMRR v→r": round(study["mcmrr_v2r"], 1),
                         "clip R@10 v→r": round(clip["r10_v2r"], 3), "study R@10 v→r": round(study["r10_v2r"], 3),
                         "R@10 gain from averaging": round(study["r10_v2r"] - clip["r10_v2r"], 3)})
    order = {r: i for i, r in enumerate(TABLE1_ROWS)}
    return pl.DataFrame(rows).sort(pl.col("model").replace_strict(order, default=len(order))) if rows else \
        pl.DataFrame()



def table1_long(res: dict) -> pl.DataFrame:
    """Table 1 as a long table for charts: model, metric, value, lo, hi (rows in Table 1's order)."""
    rows = table1_frame(res)["model"].to_list()
    return pl.DataFrame([{"model": r, "metric": k, **res["runs"][r][k]} for r in rows
                         for k in ("mcmrr_v2r", "mcmrr_r2v", "r10_v2r", "r10_r2v")])


def check_exposure(train_metrics: str | Path) -> None:
    """An exposure-matched run must have been trained against the other run as it was trained: its steps were
    computed from that run's views, steps and batch size (metrics/train/RUN.json records both)."""
    summaries = {p.stem: json.loads(p.read_text()) for p in Path(train_metrics).glob("*.json")}
    for name, s in summaries.items():
        basis = s["per_seed"][0].get("exposure_of")
        if not basis or basis["run"] not in summaries:
            continue
        o = summaries[basis["run"]]["per_seed"][0]
        now = {"views": o["views"], "steps": o["steps"], "batch_size": o["batch_size"]}
        if {k: basis[k] for k in now} != now:
            raise ValueError(f"{name} matched the exposure of {basis['run']} as {basis}, but {basis['run']} was "
                             f"trained with {now}: run `dvc repro -f train@{name}`")


def run_compare(ctx) -> dict:
    """Stage `compare`: Table 1 with paired-bootstrap CIs (evaluate.n_bootstrap, evaluate.level, base.seed) over
    every evaluated run in data/eval, and the paper's differences; returns metrics/table1.json."""
    check_exposure(ctx.root / "metrics" / "train")
    ranks = load_ranks(ctx.data / "eval", all_seeds=True)
    if not ranks:
        raise FileNotFoundError(f"{ctx.data / 'eval'}: no evaluated run (run the evaluate stages first)")
    res = bootstrap_ci(ranks, ctx.evaluate.n_bootstrap, ctx.base.seed, ctx.evaluate.level, list(TABLE1_PAIRS))
    print(f"{res['n_studies']} evaluation studies, runs: {sorted(ranks)}")
    return res


def example_markdown(ranks: dict[str, pl.DataFrame], studies: pl.DataFrame, n: int = 3, seed: int = 0) -> list[str]:
    """Fig. 3-style examples as Markdown: per study, the true report and each run's top retrieved study, with the
    findings in which it differs."""
    from .vocab import FINDINGS

    examples = retrieval_examples(ranks, studies, list(FINDINGS), n=n, seed=seed)
    out = []
    for sid in examples["study_id"].unique(maintain_order=True):
        true_report = studies.filter(pl.col("study_id") == sid)["report"].item()
        lines = [f"### {sid}", "**True report**  ", true_report.replace("\n", "  \n"), ""]
        for r in examples.filter(pl.col("study_id") == sid).iter_rows(named=True):
            mark = "correct" if r["correct"] else f"**differs in:** {r['differing_findings']}"
            lines.append(f"- **{r['model']}** → {r['retrieved']} ({mark})")
        out.append("\n".join(lines))
    return out

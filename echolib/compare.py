"""Comparing runs: Table 1 with paired-bootstrap CIs over the same test studies, the differences the paper's claims
rest on, per-finding differences, where a multi-view gain comes from, and Fig. 3-style examples.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from .ranking import KS
from .stats import ci, resample


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
    idx = resample(len(base), n, seed)
    seed_rng = np.random.default_rng([seed, 1])

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
        res["runs"][r] = {m: {"value": v, **dict(zip(("lo", "hi"), ci(b, level), strict=True)),
                              "seeds": len(full), "sd": float(full.std(ddof=1)) if len(full) > 1 else 0.0}
                          for m, (v, b, full) in s[r].items()}
    for a, b in pairs:
        if a in s and b in s:
            res["differences"][f"{a} - {b}"] = {
                m: {"value": s[a][m][0] - s[b][m][0], **dict(zip(("lo", "hi"), ci(s[a][m][1] - s[b][m][1], level),
                                                               strict=True))} for m in s[a]}
    return res


#: the suffix of the compute-matched twin of a Table 1 run (the same run at train.steps steps: `budget: steps`)
STEPS = "-steps"
_BASES = ("MultiVideo", "SingleVideo", "SingleImage")


def steps_twin(name: str) -> str:
    """The compute-matched twin of a Table 1 run or variant: MultiVideo-4CH -> MultiVideo-steps-4CH."""
    base = next(b for b in _BASES if name == b or name.startswith(f"{b}-"))
    return base + STEPS + name[len(base):]


_ROWS = ("MultiVideo", "MultiVideo-4CH", "MultiVideo-matched", "SingleVideo", "SingleImage", "SingleImage-1frame")
TABLE1_ROWS = (*_ROWS, *map(steps_twin, _ROWS), "SingleVideo-exposure")
#: the headline of an experiment (`dvc exp show`): the paper's four models and the compute-matched twins of the
#: three trained ones, then any other trained run
HEADLINE_ROWS = ("MultiVideo", "MultiVideo-4CH", "SingleVideo", "SingleImage", *map(steps_twin, _BASES))
_PAIRS = (("SingleImage", "SingleVideo"), ("SingleVideo", "MultiVideo"), ("MultiVideo-4CH", "SingleVideo"),
          ("SingleVideo", "MultiVideo-matched"), ("SingleImage-1frame", "SingleImage"))
#: the differences the paper's claims rest on: video over image, multi-view over single view, no transfer from
#: multi-view training, averaging more clips, frames averaged; each under the paper's design (equal epochs) and
#: compute-matched (equal steps, the `-steps` twins), and no transfer at equal exposure to 4CH clips
TABLE1_PAIRS = (*_PAIRS, *((steps_twin(a), steps_twin(b)) for a, b in _PAIRS),
                ("MultiVideo-steps-4CH", "SingleVideo-exposure"), ("MultiVideo-4CH", "SingleVideo-exposure"))


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
    """Per finding and pair of runs (a, b): macro-F1 and accuracy of a minus b, means over every seed of each run,
    with paired bootstrap CIs over studies and seeds, from the findings.parquet the evaluate stage writes
    (`method`: "probe" or "zero_shot"), beside where DATA.md says the finding can be judged (motion needed, views
    showing it). Empty when no run has findings (real data)."""
    from .interpret import paired_finding_differences
    from .vocab import FINDINGS, VISIBILITY

    found = {k: [x.filter(pl.col("method") == method) for x in v]
             for k, v in load_ranks(eval_dir, name="findings.parquet", all_seeds=True).items()}
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
                         "accuracy_lo": d["accuracy_ci"][0], "accuracy_hi": d["accuracy_ci"][1],
                         "seeds": f"{d['seeds'][0]} / {d['seeds'][1]}"})
    return pl.DataFrame(rows)


def probe_scores(eval_dir: str | Path, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> pl.DataFrame:
    """Per evaluated variant and finding, the linear probe's accuracy, macro-F1 and AUROC (any grade vs none), each
    the mean over the run's seeds with a CI over studies and seeds (`interpret.score_over_seeds`, the positive
    control's scoring). Empty when no run has findings (real data)."""
    from .interpret import score_over_seeds

    rows = []
    for variant, frames in load_ranks(eval_dir, name="findings.parquet", all_seeds=True).items():
        probes = [f.filter(pl.col("method") == "probe").with_columns(seed=pl.lit(k)) for k, f in enumerate(frames)]
        if any(f.is_empty() or "p_any" not in f.columns for f in probes):
            continue
        for f, v in score_over_seeds(pl.concat(probes), n_boot, seed, level).items():
            rows.append({"model": variant, "finding": f, "seeds": v["seeds"], "accuracy": v["accuracy"],
                         "accuracy_lo": v["accuracy_ci"][0], "accuracy_hi": v["accuracy_ci"][1],
                         "macro_f1": v["macro_f1"], "macro_f1_lo": v["macro_f1_ci"][0],
                         "macro_f1_hi": v["macro_f1_ci"][1], "majority": v["majority_accuracy"],
                         "auroc_any": v.get("auroc_any"), "auroc_any_lo": (v.get("auroc_any_ci") or [None])[0],
                         "auroc_any_hi": (v.get("auroc_any_ci") or [None, None])[1]})
    return pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame()


def load_probe_scores(findings_json: str | Path) -> pl.DataFrame:
    """metrics/findings.json's probe scores (`probe_scores`) as a frame; empty when there are none."""
    path = Path(findings_json)
    rows = json.loads(path.read_text(encoding="utf-8")).get("probe_scores", []) if path.is_file() else []
    return pl.DataFrame(rows, infer_schema_length=None).with_columns(pl.col("^auroc_any.*$").cast(pl.Float64)) \
        if rows else pl.DataFrame()


def format_ci(v: dict, digits: int, sign: str = "") -> str:
    """{value, lo, hi} as 'value [lo, hi]' (sign "+": every number signed, for differences)."""
    f = f"{sign}.{digits}f"
    return f"{v['value']:{f}} [{v['lo']:{f}}, {v['hi']:{f}}]"


#: Table 1's four cells, in the paper's order
TABLE1_METRICS = ("mcmrr_v2r", "r10_v2r", "mcmrr_r2v", "r10_r2v")
#: their names on the one scale every page, the terminal, the DVC metrics and the plots use
UNITS = {"mcmrr_v2r": "MCMRR/N v→r", "r10_v2r": "R@10 % v→r", "mcmrr_r2v": "MCMRR/N r→v", "r10_r2v": "R@10 % r→v"}


def unit_scale(metric: str, n: int) -> float:
    """The factor from a raw Table 1 value to its unit: MCMRR (a rank among n candidates) divided by n, so that
    test sets of different sizes compare (chance about 0.5); R@10 (a fraction) in percent."""
    return 1 / n if metric.startswith("mcmrr") else 100


def unit_digits(metric: str) -> int:
    """Decimals of a cell in its unit: MCMRR / N 3, R@10 % 1."""
    return 3 if metric.startswith("mcmrr") else 1


def in_units(v: dict, metric: str, n: int) -> dict:
    """{value, lo, hi} of a raw Table 1 value (or a difference of two) in its unit (`unit_scale`)."""
    k = unit_scale(metric, n)
    return {key: v[key] * k for key in ("value", "lo", "hi")}


def table1_scale(res: dict, run: str, m: str) -> tuple[float, float, float]:
    """(value, lo, hi) of a Table 1 cell in its unit (MCMRR / N, R@10 in percent)."""
    v = in_units(res["runs"][run][m], m, res["n_studies"])
    return v["value"], v["lo"], v["hi"]


def table1_frame(res: dict, raw: bool = False) -> pl.DataFrame:
    """Table 1 in the paper's layout (both directions) with CIs, from bootstrap_ci output, in the units every page
    uses: MCMRR / N (chance about 0.5) and R@10 in percent.

    raw: MCMRR as the rank among the N candidates and R@10 as a fraction (the paper's own units, for its
    5,515-study test set), the columns labelled so."""
    rows = [r for r in TABLE1_ROWS if r in res["runs"]] + [r for r in res["runs"] if r not in TABLE1_ROWS]
    n = res["n_studies"]

    def cell(r: str, m: str) -> str:
        v = res["runs"][r][m]
        return format_ci(v, 1 if m.startswith("mcmrr") else 3) if raw else format_ci(in_units(v, m, n),
                                                                                      unit_digits(m))

    names = {m: (f"MCMRR rank of {n} {UNITS[m][-3:]}" if m.startswith("mcmrr") else
                 f"R@10 fraction {UNITS[m][-3:]}") if raw else UNITS[m] for m in TABLE1_METRICS}
    return pl.DataFrame([{"model": r, **{names[m]: cell(r, m) for m in TABLE1_METRICS},
                          "seeds": res["runs"][r]["mcmrr_v2r"].get("seeds", 1)} for r in rows])


def differences_frame(res: dict) -> pl.DataFrame:
    """The paired differences of bootstrap_ci output, one row per pair, with CIs, in Table 1's units (MCMRR / N,
    R@10 in percentage points)."""
    n = res["n_studies"]
    return pl.DataFrame([{"difference": d, **{UNITS[m]: format_ci(in_units(v[m], m, n), unit_digits(m), "+")
                                              for m in TABLE1_METRICS}}
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
    """Table 1 as a long table for charts: model, metric (its unit in the name), value, lo, hi, in Table 1's units
    (rows in Table 1's order)."""
    rows = table1_frame(res)["model"].to_list()
    return pl.DataFrame([{"model": r, "metric": UNITS[k], **in_units(res["runs"][r][k], k, res["n_studies"])}
                         for r in rows for k in ("mcmrr_v2r", "mcmrr_r2v", "r10_v2r", "r10_r2v")])


def view_dropout_frame(run_eval_dir: str | Path, n: int = 1000, seed: int = 0, level: float = 0.95) -> pl.DataFrame:
    """The view-dropout table of a multi-view run (evaluate.view_dropout, every seed): per row of views kept
    (all, without each view, each view alone) MCMRR / N and R@10 % video -> report with CIs over studies and seeds,
    and the paired difference from all views (positive MCMRR / N: worse without; negative R@10: worse). Empty when
    the run has no dropout ranks (a single-view run)."""
    from .evaluate import DROPOUT_FILE

    files = sorted(Path(run_eval_dir).glob(f"*/seed*/{DROPOUT_FILE}"), key=lambda p: int(p.parent.name[4:]))
    if not files:
        return pl.DataFrame()
    tables = [pl.read_parquet(f) for f in files]
    labels = list(dict.fromkeys(tables[0]["views"]))
    ranks = {k: [t.filter(pl.col("views") == k).drop("views") for t in tables] for k in labels}
    res = bootstrap_ci(ranks, n, seed, level, pairs=[(k, "all") for k in labels if k != "all"])
    rows = []
    for k in labels:
        row = {"views": k, "studies": res["n_studies"], "seeds": len(tables)}
        for m in ("mcmrr_v2r", "r10_v2r"):
            v = in_units(res["runs"][k][m], m, res["n_studies"])
            row.update({UNITS[m]: v["value"], f"{UNITS[m]} lo": v["lo"], f"{UNITS[m]} hi": v["hi"]})
            d = res["differences"].get(f"{k} - all")
            dv = in_units(d[m], m, res["n_studies"]) if d else {"value": 0.0, "lo": 0.0, "hi": 0.0}
            row.update({f"{UNITS[m]} - all": dv["value"], f"{UNITS[m]} - all lo": dv["lo"],
                        f"{UNITS[m]} - all hi": dv["hi"]})
        rows.append(row)
    return pl.DataFrame(rows)


def view_dropout_table(drop: pl.DataFrame) -> pl.DataFrame:
    """`view_dropout_frame` for reading: per row of views kept, 'value [lo, hi]' and the signed difference from all
    views, MCMRR / N to 3 decimals and R@10 % to 1."""
    def cells(row: dict, m: str, key: str) -> dict:
        name = "MCMRR/N v→r" if m == "mcmrr_v2r" else "R@10 % v→r"
        v = {"value": row[name], "lo": row[f"{name} lo"], "hi": row[f"{name} hi"]}
        dv = {"value": row[f"{name} - all"], "lo": row[f"{name} - all lo"], "hi": row[f"{name} - all hi"]}
        return {name: format_ci(v, unit_digits(m)),
                f"{key} minus all views": "" if row["views"] == "all" else format_ci(dv, unit_digits(m), "+")}

    return pl.DataFrame([{"views": r["views"], **cells(r, "mcmrr_v2r", "MCMRR/N"), **cells(r, "r10_v2r", "R@10 %")}
                         for r in drop.iter_rows(named=True)])


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
    every evaluated run in data/eval and the paper's differences (metrics/table1.json); for the report, the claims
    in sentences (claims.json), per-finding paired differences (findings.json), Fig. 3-style examples
    (examples.json) and the files dvc.yaml's plots show (metrics/plots/). Returns Table 1."""
    check_exposure(ctx.root / "metrics" / "train")
    ranks = load_ranks(ctx.data / "eval", all_seeds=True)
    if not ranks:
        raise FileNotFoundError(f"{ctx.data / 'eval'}: no evaluated run (run the evaluate stages first)")
    budgets = run_budgets(ctx.root / "metrics" / "train")
    res = bootstrap_ci(ranks, ctx.evaluate.n_bootstrap, ctx.base.seed, ctx.evaluate.level,
                       [*claim_pairs(budgets), *temporal_pairs(ranks)])
    res["budgets"] = budgets
    res["ceilings"] = reader_ceilings(ctx, next(iter(ranks.values()))[0]["study_id"].to_list())
    res["same_patient"] = same_patient_table(ranks, ctx.evaluate.n_bootstrap, ctx.base.seed, ctx.evaluate.level)
    print(f"{res['n_studies']} evaluation studies; runs: {', '.join(sorted(ranks))}")
    ctx.write_metrics("table1", res)
    ctx.write_metrics("claims", {"mcmrr_v2r": claim_sentences(res, "mcmrr_v2r"),
                                 "r10_v2r": claim_sentences(res, "r10_v2r")})
    diffs = finding_differences(ctx.data / "eval", "probe", seed=ctx.base.seed, level=ctx.evaluate.level)
    scores = probe_scores(ctx.data / "eval", ctx.evaluate.n_bootstrap, ctx.base.seed, ctx.evaluate.level)
    ctx.write_metrics("findings", {"probe_differences": diffs.to_dicts(), "probe_scores": scores.to_dicts()})
    studies = pl.read_parquet(ctx.raw / "studies.parquet")
    first = {k: v[0] for k, v in ranks.items()}
    ctx.write_metrics("examples", {"examples": example_records(first, studies, n=3, seed=ctx.base.seed)})
    write_plot_files(ctx.out_root / "metrics" / "plots", res, training_curves_table(ctx.data / "runs"))
    return res


def run_budgets(train_metrics: str | Path) -> dict[str, dict]:
    """Each trained run's budget (echolib.train.run_budget: steps, basis, epochs, train clips) from
    metrics/train/RUN.json; runs trained before budgets were recorded are left out."""
    out = {}
    for p in sorted(Path(train_metrics).glob("*.json")):
        first = (json.loads(p.read_text()).get("per_seed") or [{}])[0]
        if first.get("budget"):
            out[p.stem] = first["budget"]
    return out


def base_run(name: str, runs) -> str:
    """The trained run a variant belongs to: the longest run name that is `name` or `name`'s prefix before '-'."""
    hits = [r for r in runs if name == r or name.startswith(f"{r}-")]
    return max(hits, key=len) if hits else name


def claim_pairs(budgets: dict) -> list[tuple[str, str]]:
    """TABLE1_PAIRS, but an exposure-matched run only beside the run whose exposure it matched."""
    out = []
    for a, b in TABLE1_PAIRS:
        basis = (budgets.get(b) or {}).get("basis", "")
        if basis.startswith("exposure of ") and basis != f"exposure of {base_run(a, budgets)}":
            continue
        out.append((a, b))
    return out


def comparison(a: str, b: str, budgets: dict) -> str | None:
    """What a difference between runs a and b holds equal, in words, from their budgets: equal epochs (the paper's
    design), equal steps (compute-matched), equal exposure to the 4CH clips, or each run's own budget; None for
    two variants of one model or when a budget was not recorded."""
    ra, rb = base_run(a, budgets), base_run(b, budgets)
    x, y = budgets.get(ra), budgets.get(rb)
    if ra == rb or not x or not y:
        return None
    if x["basis"] == y["basis"] == "epochs" and x["epochs"] == y["epochs"]:
        return f"equal epochs ({x['epochs']:g} per run over its own clips; the paper's design)"
    if x["basis"] == y["basis"] == "steps" and x["steps"] == y["steps"]:
        return f"equal steps ({x['steps']} each; compute-matched)"
    if y["basis"] == f"exposure of {ra}" or x["basis"] == f"exposure of {rb}":
        return f"equal exposure to 4CH clips ({ra} {x['steps']} steps, {rb} {y['steps']})"
    return f"{ra} {x['steps']} steps ({x['epochs']:g} epochs), {rb} {y['steps']} steps ({y['epochs']:g} epochs)"


def temporal_pairs(ranks: dict) -> list[tuple[str, str]]:
    """(`<run>-<order>`, run) for every frame-order ablation evaluated (echolib.evaluate.ORDERS)."""
    from .evaluate import ORDERS

    return [(f"{r}-{o}", r) for r in ranks for o in ORDERS if f"{r}-{o}" in ranks]


def same_patient_table(ranks: dict, n: int, seed: int, level: float) -> dict | None:
    """Table 1 again with the other studies of each query's patient left out of the candidates (their reports can
    be the same as the true one, and the paper's definition counts them as misses): how many queries had such
    studies among the candidates, and every run's metrics with CIs (`bootstrap_ci`)."""
    xp = {r: [df.select("study_id", rank_v2r="rank_v2r_xp", rank_r2v="rank_r2v_xp") for df in dfs]
          for r, dfs in ranks.items() if "rank_v2r_xp" in dfs[0].columns}
    if not xp:
        return None
    first = next(iter(ranks.values()))[0]
    return {"queries_with_same_patient_candidates": int((first["same_patient"] > 0).sum()),
            "same_patient_candidates": int(first["same_patient"].sum()), **bootstrap_ci(xp, n, seed, level)}


def reader_ceilings(ctx, study_ids: list[str]) -> dict | None:
    """The perfect readers' ceilings (echolib.oracle) on the evaluation studies, from the ground truth of a
    synthetic benchmark; None for a real archive (no ground-truth findings)."""
    from .oracle import oracle_table
    from .vocab import FINDINGS

    studies = pl.read_parquet(ctx.raw / "studies.parquet")
    if not set(FINDINGS) <= set(studies.columns):
        return None
    truth = pl.DataFrame({"study_id": study_ids}).join(studies, on="study_id", how="left")
    kept = pl.read_parquet(ctx.data / "filtered" / "videos.parquet").filter(pl.col("kept"))
    raw = pl.read_parquet(ctx.raw / "videos.parquet")
    doppler = raw.select("video_id", "doppler") if "doppler" in raw.columns else raw.select(
        "video_id", doppler=pl.lit(False))
    view = "pred_view" if "pred_view" in kept.columns else "view"
    clips = kept.select("video_id", "study_id", "view", view).join(doppler, on="video_id", how="left").with_columns(
        pl.col("doppler").fill_null(False))
    return oracle_table(truth, clips.filter(pl.col("study_id").is_in(study_ids)))


# --- what the report reads: claims in plain words, curves, examples, per-finding results ------------------------

#: the paper's claims, one per pair of TABLE1_PAIRS (a, b; the `-steps` twins share their run's entry): a name,
#: what is expected of a against b ("worse": a ranks the true report lower; "better"; "same": no difference; None:
#: no expectation), where the expectation comes from, and whether the paper itself made the comparison
CLAIMS = {
    ("SingleImage", "SingleVideo"): ("Video over image", "worse",
                                     "the paper: SingleImage MCMRR 1222 vs SingleVideo 676, video about 2x better", True),
    ("SingleVideo", "MultiVideo"): ("Several views over the 4CH view", "worse",
                                    "the paper: SingleVideo MCMRR 676 vs MultiVideo 595, about 1.2x better", True),
    ("MultiVideo-4CH", "SingleVideo"): ("No transfer from training on several views", "same",
                                        "the paper: MultiVideo-4CH 705 vs SingleVideo 676, read as equal", True),
    ("MultiVideo-4CH", "SingleVideo-exposure"): (
        "No transfer, at equal exposure to 4CH clips", "same",
        "our control for training exposure: SingleVideo trained on as many 4CH clips as MultiVideo-steps saw", False),
    ("SingleVideo", "MultiVideo-matched"): (
        "Other views' information, not more clips to average", "worse",
        "our control: MultiVideo averaging only as many clips per study as the study has 4CH clips", False),
    ("SingleImage-1frame", "SingleImage"): ("One frame instead of the mean of a clip's frames", None,
                                            "a check of how the image model is read; no expectation", False),
}


def claim_sentences(res: dict, metric: str = "mcmrr_v2r") -> list[dict]:
    """One plain sentence per difference of bootstrap_ci output that a claim rests on, on `metric` (MCMRR
    video->report by default; lower is better): what was measured, its CI, and how it compares with what the paper
    found (or, for our own controls, with what was expected)."""
    lower_better = metric.startswith("mcmrr")
    unit, d = ("ranks", 1) if lower_better else ("(R@10)", 3)
    out, budgets = [], res.get("budgets") or {}
    for a, b in TABLE1_PAIRS:
        v = res.get("differences", {}).get(f"{a} - {b}", {}).get(metric)
        if v is None:
            continue
        title, expected, source, in_paper = CLAIMS[(a.replace(STEPS, ""), b.replace(STEPS, ""))]
        held = comparison(a, b, budgets)
        value, lo, hi = v["value"], v["lo"], v["hi"]
        if lo > 0 or hi < 0:
            worse = (value > 0) == lower_better
            seen = "worse" if worse else "better"
            what = (f"{a} ranks the true report {'lower' if worse else 'higher'} than {b} " if lower_better else
                    f"{a}'s R@10 is {'lower' if worse else 'higher'} than {b}'s ")
            what += f"by {abs(value):.{d}f} {unit} (95 % CI {lo:.{d}f} to {hi:.{d}f})."
        else:
            seen = "same"
            what = (f"No difference shown between {a} and {b}: {value:+.{d}f} {unit}, and the 95 % CI "
                    f"({lo:.{d}f} to {hi:.{d}f}) includes zero.")
        who = "the paper" if in_paper else "expected"
        if expected is None:
            verdict = None
        elif seen == expected:
            verdict = "Agrees with the paper." if in_paper else "As expected."
        elif seen == "same":
            verdict = ("The paper found a difference here; this run shows none." if in_paper else
                       "A difference was expected; this run shows none.")
        elif expected == "same":
            verdict = ("The paper found none here." if in_paper else "No difference was expected.")
        else:
            verdict = f"Opposite to {who}."
        out.append({"claim": title, "pair": f"{a} - {b}", "comparison": held, "metric": metric, "value": value,
                    "lo": lo, "hi": hi,
                    "observed": seen, "expected": expected, "in_paper": in_paper,
                    "agrees": None if verdict is None else seen == expected,
                    "sentence": (f"At {held}: " if held else "") + what + (f" {verdict}" if verdict else ""),
                    "source": source})
    return out


def training_curves_table(runs_dir: str | Path) -> pl.DataFrame:
    """Every run's and seed's logged curves (dvclive) as one long table: run, seed, metric, step, value; validation
    scores in Table 1's units (`charts.curves_in_units`)."""
    from .charts import curves_in_units, dvclive_curves

    parts = []
    for run in sorted(p for p in Path(runs_dir).iterdir() if p.is_dir()):
        for seed_dir in sorted(run.glob("seed*")):
            if (seed_dir / "dvclive").is_dir():
                parts.append(curves_in_units(dvclive_curves(seed_dir / "dvclive")).with_columns(
                    run=pl.lit(run.name), seed=pl.lit(int(seed_dir.name[4:]))))
    return pl.concat(parts).select("run", "seed", "metric", "step", "value") if parts else pl.DataFrame()


def write_plot_files(out_dir: str | Path, res: dict, curves: pl.DataFrame) -> list[Path]:
    """The files dvc.yaml's `plots:` show: Table 1 (run, metric, value, lo, hi) and per logged curve one
    step-by-run table (run_seed, step, value), CSV."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "table1.csv"]
    table1_long(res).write_csv(written[0])
    names = {"train/loss": "train_loss", "val/mcmrr_n": "val_mcmrr_n", "val/r10_pct_v2r": "val_r10_pct_v2r"}
    for metric, name in names.items():
        part = curves.filter(pl.col("metric") == metric) if not curves.is_empty() else curves
        if part.is_empty():
            continue
        path = out_dir / f"{name}.csv"
        part.select(pl.format("{} seed {}", "run", "seed").alias("run"), "step", pl.col("value").alias(name)) \
            .sort("run", "step").write_csv(path)
        written.append(path)
    return written


def example_records(ranks: dict[str, pl.DataFrame], studies: pl.DataFrame, n: int = 3, seed: int = 0) -> list[dict]:
    """Fig. 3-style examples as data for the report: per study, the true report and each run's top retrieved
    report, with the findings in which the retrieved study differs (finding, true grade, retrieved grade)."""
    from .vocab import FINDINGS

    if not ranks:
        return []
    base = next(iter(ranks.values()))
    picks = base.sample(min(n, base.height), seed=seed)["study_id"].to_list()
    truth = {r["study_id"]: r for r in studies.iter_rows(named=True)}
    out = []
    for sid in picks:
        rec = {"study_id": sid, "report": truth[sid]["report"], "retrieved": [],
               "has_findings": any(f in truth[sid] and truth[sid][f] is not None for f in FINDINGS)}
        for run, df in ranks.items():
            got = df.filter(pl.col("study_id") == sid)["top1_v2r"].item()
            diff = [{"finding": f, "true": truth[sid][f], "retrieved": truth[got][f]} for f in FINDINGS
                    if f in truth[sid] and truth[sid][f] != truth[got][f]]
            rec["retrieved"].append({"model": run, "study_id": got, "correct": got == sid,
                                     "report": truth[got]["report"], "differs": diff})
        out.append(rec)
    return out

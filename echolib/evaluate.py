"""Study-level evaluation of a trained run: embeddings of the test clips, ranks both ways, bootstrap CIs.

A study's video embedding is the mean of its clips' embeddings (re-normalised); every evaluated study's report
is a candidate. Evaluation uses the test studies that have a 4CH clip (the paper's 5,515 of 7,050), so every run
is scored on the same studies; MultiVideo-4CH is the MultiVideo model restricted to 4CH clips at inference.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import torch

from . import config as C
from .data import ClipCache, ClipReportDataset, model_input
from .retrieval import KS, metrics_from_ranks, ranks_from_embeddings, study_embeddings

METRICS = ("mcmrr_v2r", "mcmrr_r2v", "median_rank_v2r", "median_rank_r2v", *(f"r{k}_v2r" for k in KS),
           *(f"r{k}_r2v" for k in KS))


def load_clip_model(model_pt: str | Path):
    """Rebuild a trained EchoClip from its model.pt (weights + the run settings it was trained with)."""
    from .train import build_model

    path = Path(model_pt)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no trained model here (run the train stage first)")
    ck = torch.load(path, map_location="cpu", weights_only=False)
    run = C.RunConfig.from_dict({**ck["run"], "weights": ""})
    train = C.TrainConfig.from_dict({"loss": ck["loss"]})
    layers = ck.get("text_layers") or _text_layers(ck["state_dict"])
    text = C.TextConfig.from_dict({"max_length": ck["max_length"], "layers": layers})
    model, frames = build_model(run, train, text, ck["profile"], ck["vocab_size"], ck["frames"])
    model.load_state_dict(ck["state_dict"])
    return model.eval(), frames, ck


def _text_layers(state_dict: dict) -> int:
    """Depth of the text encoder a state dict holds (checkpoints that do not record it)."""
    prefix = "text_encoder.backbone.encoder.layer."
    return 1 + max((int(k[len(prefix):].split(".")[0]) for k in state_dict if k.startswith(prefix)), default=-1)


@torch.inference_mode()
def embed_clips(model, cache: ClipCache, rows: pl.DataFrame, frames: int, batch_size: int = 64) -> torch.Tensor:
    ds = ClipReportDataset(cache, rows, frames, train=False)
    out = []
    for i in range(0, len(ds), batch_size):
        video = model_input(torch.stack([ds[j]["video"] for j in range(i, min(i + batch_size, len(ds)))]))
        out.append(model.encode_video(video).float())
    return torch.cat(out) if out else torch.zeros(0, 1)


@torch.inference_mode()
def embed_reports(model, cache: ClipCache, study_ids: list[str], batch_size: int = 128) -> torch.Tensor:
    idx = [cache.study_row[s] for s in study_ids]
    out = []
    for i in range(0, len(idx), batch_size):
        ids = torch.from_numpy(cache.input_ids[idx[i:i + batch_size]].astype(np.int64))
        mask = torch.from_numpy(cache.attention_mask[idx[i:i + batch_size]].astype(np.int64))
        n = int(mask.sum(1).max())
        out.append(model.encode_text(ids[:, :n], mask[:, :n]).float())
    return torch.cat(out)


def match_clip_counts(rows: pl.DataFrame, like: pl.DataFrame, seed: int = 0) -> pl.DataFrame:
    """Per study, a seeded random draw from `rows` of as many clips as the study has in `like` (at least one):
    a multi-view model averaging as many clips as a single-view model does."""
    want = dict(like.group_by("study_id").len().iter_rows())
    shuffled = rows.sample(fraction=1.0, shuffle=True, seed=seed).with_columns(
        k=pl.int_range(pl.len()).over("study_id"))
    n = shuffled["study_id"].replace_strict(want, default=1, return_dtype=pl.Int64)
    return shuffled.filter(pl.col("k") < n).drop("k").sort("row")


def embed_studies(model, frames: int, cache: ClipCache, rows: pl.DataFrame, studies: list[str]
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings of the clips in `rows` and of `studies` (mean of each study's clip embeddings, re-normalised),
    in the order of `studies`; every study must have a row."""
    clip_emb = embed_clips(model, cache, rows, frames)
    study_emb, order = study_embeddings(clip_emb, rows["study_id"].to_list())
    pos = {s: i for i, s in enumerate(order)}
    return clip_emb, study_emb[[pos[s] for s in studies]]


def probe_train_studies(cache: ClipCache, split: pl.DataFrame, views: list[str], n: int, seed: int = 0
                        ) -> pl.DataFrame:
    """The clips of views `views` of up to `n` training studies (a seeded draw) that have such a clip: what a
    linear probe of the run's study embeddings is fitted on."""
    train = split.filter(pl.col("split") == "train")["study_id"].to_list()
    rows = cache.index.filter(pl.col("study_id").is_in(train) & pl.col("pred_view").is_in(views))
    ids = sorted(rows["study_id"].unique())
    if len(ids) > n:
        keep = np.random.default_rng(seed).choice(len(ids), size=n, replace=False)
        rows = rows.filter(pl.col("study_id").is_in([ids[i] for i in keep]))
    return rows


def evaluate_views(model, frames: int, cache: ClipCache, studies: list[str], views: list[str],
                   match_views: list[str] | None = None, seed: int = 0) -> dict:
    """Study-level ranks on `studies` using only clips of `views`, plus the per-clip variant. With `match_views`,
    each study averages only as many clips (drawn at random from `views`) as it has clips of `match_views`."""
    rows = cache.index.filter(pl.col("study_id").is_in(studies) & pl.col("pred_view").is_in(views))
    if match_views:
        like = cache.index.filter(pl.col("study_id").is_in(studies) & pl.col("pred_view").is_in(match_views))
        rows = match_clip_counts(rows, like, seed)
    missing = sorted(set(studies) - set(rows["study_id"].unique()))
    if missing:
        raise ValueError(f"{len(missing)} evaluation studies have no clip of views {views}, e.g. {missing[:3]}")
    clip_emb, study_emb = embed_studies(model, frames, cache, rows, studies)
    pos_eval = {s: i for i, s in enumerate(studies)}
    text = torch.nn.functional.normalize(embed_reports(model, cache, studies), dim=-1)
    v2r, r2v = ranks_from_embeddings(study_emb, text)
    # per clip: each clip against every study report (video -> report only)
    clip_idx = np.array([pos_eval[s] for s in rows["study_id"]])
    sims = torch.nn.functional.normalize(clip_emb, dim=-1) @ text.T
    correct = sims[torch.arange(len(clip_idx)), torch.from_numpy(clip_idx)].unsqueeze(1)
    clip_ranks = (sims >= correct).sum(1).numpy()
    per_clip = {"n_clips": int(len(clip_ranks)), "mcmrr_v2r": float(clip_ranks.mean()),
                **{f"r{k}_v2r": float((clip_ranks <= k).mean()) for k in KS}}
    counts = dict(rows.group_by("study_id").len().iter_rows())
    top1 = torch.cat([(study_emb[i:i + 4096] @ text.T).argmax(1) for i in range(0, len(studies), 4096)])
    ranks = pl.DataFrame({"study_id": studies, "rank_v2r": v2r, "rank_r2v": r2v,
                          "n_clips": [counts[s] for s in studies], "top1_v2r": [studies[i] for i in top1.tolist()]})
    return {"metrics": metrics_from_ranks(v2r, r2v), "per_clip": per_clip, "ranks": ranks,
            "study_emb": study_emb, "text_emb": text}


def bootstrap_ci(ranks: dict[str, pl.DataFrame], n: int = 1000, seed: int = 0, level: float = 0.95,
                 pairs: list[tuple[str, str]] = ()) -> dict:
    """Paired bootstrap over evaluation studies: the same resampled studies for every run.

    `ranks[run]` holds study_id, rank_v2r, rank_r2v on the same studies. Returns per run and per metric
    {value, lo, hi}, and for each (a, b) in `pairs` the CI of metric(a) - metric(b)."""
    runs = list(ranks)
    base = ranks[runs[0]]["study_id"].to_list()
    for r in runs[1:]:
        if ranks[r]["study_id"].to_list() != base:
            raise ValueError(f"bootstrap: run {r} was evaluated on different studies than {runs[0]}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(base), size=(n, len(base)))
    alpha = (1 - level) / 2

    def stats(df: pl.DataFrame) -> dict[str, np.ndarray]:
        out = {}
        for d in ("v2r", "r2v"):
            r = df[f"rank_{d}"].to_numpy()
            out[f"mcmrr_{d}"] = r, r[idx].mean(axis=1)
            for k in KS:
                hit = (r <= k).astype(float)
                out[f"r{k}_{d}"] = hit, hit[idx].mean(axis=1)
        return {m: (float(v.mean()), b) for m, (v, b) in out.items()}

    s = {r: stats(ranks[r]) for r in runs}
    res = {"n_studies": len(base), "n_resamples": n, "level": level, "runs": {}, "differences": {}}
    for r in runs:
        res["runs"][r] = {m: {"value": v, "lo": float(np.quantile(b, alpha)), "hi": float(np.quantile(b, 1 - alpha))}
                          for m, (v, b) in s[r].items()}
    for a, b in pairs:
        if a in s and b in s:
            res["differences"][f"{a} - {b}"] = {
                m: {"value": s[a][m][0] - s[b][m][0], "lo": float(np.quantile(s[a][m][1] - s[b][m][1], alpha)),
                    "hi": float(np.quantile(s[a][m][1] - s[b][m][1], 1 - alpha))} for m in s[a]}
    return res


def variants_of(run_name: str, views: list[str]) -> dict[str, tuple[list[str], list[str] | None]]:
    """Inference variants of a run, name -> (views used, views whose clip count is matched). A run that sees
    several views also gets `<run>-4CH` (4CH clips only: what its clips are worth) and `<run>-matched` (all views,
    but only as many clips per study as the study has 4CH clips: what averaging more clips is worth)."""
    out = {run_name: (views, None)}
    if len(views) > 1 and "4CH" in views:
        out[f"{run_name}-4CH"] = (["4CH"], None)
        out[f"{run_name}-matched"] = (views, ["4CH"])
    return out


def evaluate_run(run_dir: str | Path, cache_dir: str | Path, split_path: str | Path, out_dir: str | Path,
                 studies_path: str | Path | None = None, n_boot: int = 1000, seed: int = 0,
                 probe_studies: int = 1000) -> dict:
    """Evaluate every seed of a run (and its 4CH-only variant) on the 4CH test studies.

    Ranks go to out_dir/<variant>/<seed>/ranks.parquet (out_dir is the run's own evaluation folder). With
    `studies_path` (ground-truth findings, as the synthetic benchmark has), zero-shot interpretation goes to
    result["interpret"][variant][seed] and, when `probe_studies` > 0, a linear probe of the study embeddings
    fitted on up to that many training studies to result["probe"][variant][seed]; the per-study predictions of
    both go to out_dir/<variant>/<seed>/findings.parquet."""
    from .interpret import interpret, probe
    from .synth.findings import FINDINGS
    from .text import load_tokenizer

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    cache = ClipCache(cache_dir)
    split = pl.read_parquet(split_path)
    studies = sorted(set(split.filter(pl.col("eval_4ch"))["study_id"]) & set(cache.study_ids))
    if not studies:
        raise ValueError(f"{split_path}: no test study with a 4CH clip to evaluate on")
    seeds = sorted(run_dir.glob("seed*/model.pt"))
    if not seeds:
        raise FileNotFoundError(f"{run_dir}: no seed*/model.pt (did the train stage run?)")
    result: dict = {"n_studies": len(studies), "variants": {}, "interpret": {}, "probe": {}}
    truth = known = None
    if studies_path is not None:
        known = pl.read_parquet(studies_path)
        truth = pl.DataFrame({"study_id": studies}).join(known, on="study_id", how="left")
    for model_pt in seeds:
        model, frames, ck = load_clip_model(model_pt)
        seed_dir = model_pt.parent.name
        tok = load_tokenizer(ck["tokenizer_dir"]) if truth is not None else None
        for name, (views, match) in variants_of(run_dir.name, C.RunConfig.from_dict(ck["run"]).view_list).items():
            r = evaluate_views(model, frames, cache, studies, views, match, seed)
            d = out_dir / name / seed_dir
            d.mkdir(parents=True, exist_ok=True)
            r["ranks"].write_parquet(d / "ranks.parquet")
            v = result["variants"].setdefault(name, {"views": views, "matched_to": match, "per_seed": {}})
            v["per_seed"][seed_dir] = {"study": r["metrics"], "per_clip": r["per_clip"]}
            if tok is not None and match is None:
                zs = interpret(model, tok, r["study_emb"], truth, n_boot, seed, study_ids=studies)
                found = [zs.pop("predictions")]
                result["interpret"].setdefault(name, {})[seed_dir] = zs
                if probe_studies > 0:
                    rows = probe_train_studies(cache, split, views, probe_studies, seed)
                    ids = sorted(rows["study_id"].unique())
                    train_truth = pl.DataFrame({"study_id": ids}).join(known, on="study_id", how="left")
                    _, train_emb = embed_studies(model, frames, cache, rows, ids)
                    pr = probe(train_emb, train_truth, r["study_emb"], truth, FINDINGS, n_boot, seed, test_ids=studies)
                    found.append(pr.pop("predictions"))
                    result["probe"].setdefault(name, {})[seed_dir] = pr
                pl.concat(found).write_parquet(d / "findings.parquet")
    for v in result["variants"].values():
        per = [s["study"] for s in v["per_seed"].values()]
        v["study"] = {m: float(np.mean([p[m] for p in per])) for m in METRICS}
        v["study_sd"] = {m: float(np.std([p[m] for p in per], ddof=1)) if len(per) > 1 else 0.0 for m in METRICS}
        v["study"]["n"] = len(studies)
        clips = [s["per_clip"] for s in v["per_seed"].values()]
        v["per_clip"] = {m: float(np.mean([c[m] for c in clips])) for m in clips[0]}
    return result


TABLE1_ROWS = ("MultiVideo", "MultiVideo-4CH", "MultiVideo-matched", "SingleVideo", "SingleImage")
TABLE1_PAIRS = (("SingleImage", "SingleVideo"), ("SingleVideo", "MultiVideo"), ("MultiVideo-4CH", "SingleVideo"),
                ("SingleVideo", "MultiVideo-matched"))


def load_ranks(eval_dir: str | Path, seed: str | None = None, name: str = "ranks.parquet") -> dict[str, pl.DataFrame]:
    """ranks.parquet (or another per-seed table, e.g. findings.parquet) of every evaluated variant,
    eval_dir/<run>/<variant>/<seed>/ (first seed unless named)."""
    out = {}
    for d in sorted(p for p in Path(eval_dir).glob("*/*") if p.is_dir()):
        seeds = sorted(d.glob(f"seed*/{name}"))
        pick = [p for p in seeds if seed is None or p.parent.name == seed]
        if pick:
            out[d.name] = pl.read_parquet(pick[0])
    return out


#: per-finding comparisons: where motion (video vs image) and other views (MultiVideo vs the 4CH runs) should tell
FINDING_PAIRS = (("SingleVideo", "SingleImage"), ("MultiVideo", "SingleVideo"), ("MultiVideo-4CH", "SingleVideo"))


def finding_differences(eval_dir: str | Path, method: str = "probe", pairs=FINDING_PAIRS, n_boot: int = 200,
                        seed: int = 0, level: float = 0.95) -> pl.DataFrame:
    """Per finding and pair of runs (a, b): macro-F1 and accuracy of a minus b with paired bootstrap CIs, from the
    findings.parquet the evaluate stage writes (`method`: "probe" or "zero_shot"), beside where DATA.md says the
    finding can be judged (motion needed, views showing it). Empty when no run has findings (real data)."""
    from .interpret import paired_finding_differences
    from .synth.findings import FINDINGS, VISIBILITY

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
                          "R@10 r→v": format_ci(res["runs"][r]["r10_r2v"], 3)} for r in rows])


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

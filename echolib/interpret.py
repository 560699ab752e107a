"""Zero-shot interpretation (paper Sec. 2.2): a study's video embedding picks the most similar of one canonical
Japanese sentence per grade of each finding; EF is estimated EchoCLIP-style from prompts 「左室駆出率は{n}%。」.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import torch

from .stats import ci, resample
from .text import encode
from .vocab import PROMPTS

EF_VALUES = np.arange(10, 81)


def ef_prompt(n: int) -> str:
    return f"左室駆出率は{n}%。"


@torch.inference_mode()
def embed_sentences(model, tokenizer, sentences: list[str], max_length: int = 64) -> torch.Tensor:
    ids, mask, _ = encode(tokenizer, sentences, max_length)
    n = int(mask.sum(1).max())
    return torch.nn.functional.normalize(model.encode_text(ids[:, :n], mask[:, :n]).float(), dim=-1)


def macro_f1(true: list[str], pred: list[str], labels: list[str]) -> float:
    """Mean F1 over the labels present in `true` (absent labels would add undefined zeros)."""
    scores = []
    for c in labels:
        tp = sum(t == c and p == c for t, p in zip(true, pred, strict=True))
        fp = sum(t != c and p == c for t, p in zip(true, pred, strict=True))
        fn = sum(t == c and p != c for t, p in zip(true, pred, strict=True))
        if tp + fn == 0:
            continue
        scores.append(2 * tp / max(2 * tp + fp + fn, 1))
    return float(np.mean(scores)) if scores else float("nan")


def score_findings(preds: pl.DataFrame, grades: dict[str, list[str]], n_boot: int = 1000, seed: int = 0,
                   level: float = 0.95) -> dict[str, dict]:
    """Accuracy and macro-F1 per finding with bootstrap CIs over studies, and the share of the most frequent grade.

    `preds` has one row per (study, finding): study_id, finding, true, pred. Every finding is resampled with the
    same study indices (seeded), so two runs' scores on the same studies are paired."""
    out = {}
    for finding, g in grades.items():
        p = preds.filter((pl.col("finding") == finding) & pl.col("true").is_not_null())  # unknown: not scored
        if p.is_empty():
            continue
        true, pred = p["true"].to_list(), p["pred"].to_list()
        n = len(true)
        idx = resample(n, n_boot, seed)
        correct = np.array([a == b for a, b in zip(pred, true, strict=True)], dtype=float)
        boot_f1 = np.array([macro_f1([true[i] for i in b], [pred[i] for i in b], g) for b in idx[: min(n_boot, 200)]])
        out[finding] = {
            "accuracy": float(correct.mean()), "accuracy_ci": ci(correct[idx].mean(axis=1), level),
            "macro_f1": macro_f1(true, pred, g), "macro_f1_ci": ci(boot_f1, level),
            "majority_accuracy": float(max(true.count(x) for x in g) / n), "n_studies": n,
        }
    return out


def auroc_any(true: list[str], p_any: np.ndarray, none: str, n_boot: int = 1000, seed: int = 0,
              level: float = 0.95) -> dict | None:
    """Binary AUROC of `p_any` for "any grade but `none`" with a bootstrap CI over studies; None when the test
    studies hold only one class (AUROC undefined)."""
    from sklearn.metrics import roc_auc_score

    y = np.array([t != none for t in true])
    if y.all() or not y.any():
        return None
    idx = resample(len(y), n_boot, seed)
    boot = np.array([roc_auc_score(y[i], p_any[i]) if 0 < y[i].sum() < len(i) else np.nan for i in idx])
    return {"auroc_any": float(roc_auc_score(y, p_any)), "auroc_any_ci": ci(boot, level),
            "n_any": int(y.sum())}


def auroc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve of `score` for boolean `y` (ties count one half): the Mann-Whitney statistic from
    average ranks. NaN when `y` holds one class."""
    from scipy.stats import rankdata

    y = np.asarray(y, dtype=bool)
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = rankdata(score)
    return float((r[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _mean_over_seeds(metric, n_seeds: int, n: int, idx: np.ndarray, draw: np.ndarray, level: float) -> tuple:
    """metric(seed index, study indices) -> value: its mean over seeds on all studies, and the CI over resamples
    `idx` (studies) with seeds `draw`n with replacement per resample."""
    full = np.array([metric(k, np.arange(n)) for k in range(n_seeds)])
    per_seed = np.array([[metric(k, i) for i in idx] for k in range(n_seeds)])  # (seeds, resamples)
    boot = per_seed[draw[:len(idx)], np.arange(len(idx))[:, None]].mean(axis=1)
    return float(np.mean(full)), ci(boot, level)


def _finding_over_seeds(true: np.ndarray, pred: np.ndarray, p_any: np.ndarray | None, grades: list[str],
                        idx: np.ndarray, draw: np.ndarray, level: float) -> dict:
    """`score_over_seeds` for one finding: `pred` and `p_any` are (seeds, studies)."""
    n_seeds, n = pred.shape

    def over(metric, boots: int = len(idx)):
        return _mean_over_seeds(metric, n_seeds, n, idx[:boots], draw, level)

    res = {"n_studies": n, "seeds": n_seeds, "majority_accuracy": float(max((true == g).sum() for g in grades) / n)}
    res["accuracy"], res["accuracy_ci"] = over(lambda k, i: float((pred[k, i] == true[i]).mean()))
    res["macro_f1"], res["macro_f1_ci"] = over(
        lambda k, i: macro_f1(true[i].tolist(), pred[k, i].tolist(), grades), min(len(idx), 200))
    res["grades"] = {}
    if p_any is None:
        return res
    anyg = true != grades[0]
    if 0 < anyg.sum() < n:
        res["auroc_any"], res["auroc_any_ci"] = over(lambda k, i: auroc(anyg[i], p_any[k, i]))
        res["n_any"] = int(anyg.sum())
    for g in grades[1:]:
        inside, pos = (true == grades[0]) | (true == g), true == g
        if pos.sum() == 0 or pos.sum() == inside.sum():
            continue

        def grade_auc(k, i, inside=inside, pos=pos):  # the resampled studies of grade g or none
            i = i[inside[i]]
            return auroc(pos[i], p_any[k, i])

        v, (lo, hi) = over(grade_auc)
        res["grades"][g] = {"auroc": v, "ci": [lo, hi], "n": int(pos.sum())}
    return res


def score_over_seeds(preds: pl.DataFrame, n_boot: int, seed: int, level: float) -> dict[str, dict]:
    """Per finding, from one model's predictions on the same studies by each of its seeds (columns seed, study_id,
    finding, true, pred and, for a probe or classifier, p_any = 1 - P(none)): accuracy, macro-F1, AUROC of any grade
    vs none and of each grade vs none, each the mean over seeds, with a CI from resamples that draw the studies and,
    independently, the seeds with replacement (the interval holds both spreads). The positive control and the
    probes of the contrastive runs are scored by this one function."""
    from .vocab import FINDINGS

    seeds = sorted(preds["seed"].unique().to_list())
    seed_rng = np.random.default_rng([seed, 1])
    out = {}
    for f in [f for f in FINDINGS if f in set(preds["finding"])]:
        per = [preds.filter((pl.col("finding") == f) & (pl.col("seed") == s) & pl.col("true").is_not_null())
               .sort("study_id") for s in seeds]
        ids = per[0]["study_id"].to_list()
        if not ids:
            continue
        if any(p["study_id"].to_list() != ids for p in per):
            raise ValueError(f"score_over_seeds: {f} was predicted on different studies by different seeds")
        has_p = "p_any" in per[0].columns and all(p["p_any"].null_count() == 0 for p in per)
        out[f] = _finding_over_seeds(np.array(per[0]["true"].to_list()),
                                     np.stack([np.array(p["pred"].to_list()) for p in per]),
                                     np.stack([p["p_any"].to_numpy() for p in per]) if has_p else None,
                                     list(FINDINGS[f]), resample(len(ids), n_boot, seed),
                                     seed_rng.integers(0, len(seeds), size=(n_boot, len(seeds))), level)
    return out


def paired_finding_differences(a: pl.DataFrame | list[pl.DataFrame], b: pl.DataFrame | list[pl.DataFrame],
                               grades: dict[str, list[str]], n_boot: int = 200, seed: int = 0,
                               level: float = 0.95) -> dict[str, dict]:
    """Macro-F1 and accuracy of predictions `a` minus those of `b` per finding, with paired bootstrap CIs. `a` and
    `b` are frames as in `score_findings`, or lists of them (one per training seed) on the same studies: a run's
    value is then its mean over seeds, and each resample draws the studies (the same for both) and, per run, its
    seeds with replacement, so the interval holds the spread between studies and between seeds."""
    a, b = (x if isinstance(x, list) else [x] for x in (a, b))
    seed_rng = np.random.default_rng([seed, 1])
    out = {}
    for finding, g in grades.items():
        pa = [x.filter(pl.col("finding") == finding).sort("study_id") for x in a]
        pb = [x.filter(pl.col("finding") == finding).sort("study_id") for x in b]
        if any(x.is_empty() for x in pa + pb):
            continue
        ids = pa[0]["study_id"].to_list()
        if any(x["study_id"].to_list() != ids for x in pa + pb):
            raise ValueError(f"paired_finding_differences: {finding} was predicted on different studies")
        true = pa[0]["true"].to_list()
        n = len(true)
        idx = resample(n, n_boot, seed)
        draws = [seed_rng.integers(0, len(p), size=n_boot) for p in (pa, pb)]
        per_run = []
        for runs, draw in zip((pa, pb), draws, strict=True):
            preds = [r["pred"].to_list() for r in runs]
            hits = np.array([[p == t for p, t in zip(x, true, strict=True)] for x in preds], float)  # (seeds, n)
            f1 = np.array([[macro_f1([true[i] for i in s], [x[i] for i in s], g) for s in idx] for x in preds])
            per_run.append({"f1": float(np.mean([macro_f1(true, x, g) for x in preds])), "acc": hits.mean(),
                            "boot_f1": f1[draw, np.arange(n_boot)],
                            "boot_acc": hits[draw[:, None], idx].mean(axis=1)})
        ra, rb = per_run
        out[finding] = {"macro_f1": ra["f1"] - rb["f1"], "macro_f1_ci": ci(ra["boot_f1"] - rb["boot_f1"], level),
                        "accuracy": float(ra["acc"] - rb["acc"]),
                        "accuracy_ci": ci(ra["boot_acc"] - rb["boot_acc"], level), "seeds": (len(pa), len(pb))}
    return out


PREDICTION_SCHEMA = {"study_id": pl.Utf8, "finding": pl.Utf8, "true": pl.Utf8, "pred": pl.Utf8, "method": pl.Utf8,
                     "p_any": pl.Float64}


def predictions_frame(study_ids: list[str], truth: pl.DataFrame, preds: dict[str, list[str]], method: str,
                      p_any: dict[str, np.ndarray] | None = None) -> pl.DataFrame:
    """Long table study_id, finding, true, pred, method, p_any from per-finding prediction lists aligned with
    `truth`; p_any (a probe's 1 - P(none)) is null where not given (zero-shot)."""
    p_any = p_any or {}
    rows = [pl.DataFrame({"study_id": study_ids, "finding": f, "true": truth[f].cast(pl.Utf8), "pred": p,
                          "method": method, "p_any": p_any.get(f, [None] * len(p))}, schema=PREDICTION_SCHEMA)
            for f, p in preds.items()]
    return pl.concat(rows) if rows else pl.DataFrame(schema=PREDICTION_SCHEMA)


def zero_shot_predictions(model, tokenizer, study_emb: torch.Tensor, truth: pl.DataFrame,
                          prompts: dict[str, dict[str, str]] = PROMPTS) -> dict[str, list[str]]:
    """Per finding (present in `truth`), the grade whose canonical sentence is most similar to each study."""
    out = {}
    for finding, by_grade in prompts.items():
        if finding not in truth.columns:
            continue
        grades = list(by_grade)
        emb = embed_sentences(model, tokenizer, [by_grade[g] for g in grades])
        out[finding] = [grades[i] for i in (study_emb.detach() @ emb.T).argmax(dim=1).tolist()]
    return out


def interpret(model, tokenizer, study_emb: torch.Tensor, truth: pl.DataFrame, n_boot: int = 1000, seed: int = 0,
              level: float = 0.95, prompts: dict[str, dict[str, str]] = PROMPTS,
              study_ids: list[str] | None = None) -> dict:
    """Zero-shot accuracy and macro-F1 per finding (with bootstrap CIs) and EF MAE. `truth` rows align with
    study_emb. result["predictions"] is the long table of `predictions_frame` (for paired comparisons)."""
    n = len(truth)
    ids = study_ids if study_ids is not None else [str(i) for i in range(n)]
    preds = predictions_frame(ids, truth, zero_shot_predictions(model, tokenizer, study_emb, truth, prompts),
                              "zero_shot")
    out = {"n_studies": n, "findings": score_findings(preds, {f: list(g) for f, g in prompts.items()}, n_boot, seed,
                                                     level), "predictions": preds}
    known = truth["ef"].is_not_null().to_numpy() if "ef" in truth.columns else np.zeros(n, bool)
    if known.any():  # real sources may carry EF for some studies only
        emb = embed_sentences(model, tokenizer, [ef_prompt(int(v)) for v in EF_VALUES])
        sims = study_emb.detach()[torch.from_numpy(known)] @ emb.T
        weights = torch.softmax(sims * model.scale().detach().float(), dim=1).numpy()
        est = weights @ EF_VALUES
        ef = truth["ef"].to_numpy()[known].astype(float)
        out["ef"] = ef_errors(est, ef, ef.mean(), n_boot, seed, level)
    return out


def ef_errors(est: np.ndarray, ef: np.ndarray, reference: float, n_boot: int = 1000, seed: int = 0,
              level: float = 0.95) -> dict:
    """Mean absolute error of EF estimates (bootstrap CI) beside that of always predicting `reference`."""
    err = np.abs(np.asarray(est, float) - ef)
    boot = resample(len(ef), n_boot, seed)
    return {"mae": float(err.mean()), "mae_ci": ci(err[boot].mean(axis=1), level),
            "mae_predict_mean": float(np.abs(reference - ef).mean()), "n_studies": len(ef)}


def probe(train_emb: torch.Tensor, train_truth: pl.DataFrame, test_emb: torch.Tensor, test_truth: pl.DataFrame,
          grades: dict[str, tuple[str, ...]], n_boot: int = 1000, seed: int = 0, level: float = 0.95,
          test_ids: list[str] | None = None) -> dict:
    """Linear probe: how much of each finding a run's frozen study embeddings carry, whatever the text tower makes
    of the prompts. Per finding a class-balanced multinomial logistic regression (scikit-learn) is fitted on
    training studies' embeddings and scored on the test studies like the zero-shot predictions; EF by ridge
    regression (MAE beside predicting the training mean). Findings with one grade in training are left out and
    listed under "skipped"."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_train, x_test = train_emb.detach().float().numpy(), test_emb.detach().float().numpy()
    if len(x_train) != len(train_truth) or len(x_test) != len(test_truth):
        raise ValueError(f"probe: {len(x_train)}/{len(x_test)} embeddings for {len(train_truth)}/{len(test_truth)} "
                         "studies (train/test)")
    ids = test_ids if test_ids is not None else [str(i) for i in range(len(x_test))]
    preds, skipped, any_scores = {}, {}, {}
    for finding in grades:
        if finding not in train_truth.columns or finding not in test_truth.columns:
            continue
        known = train_truth[finding].is_not_null().to_numpy()
        y = train_truth[finding].cast(pl.Utf8).to_numpy()[known]
        if len(set(y)) < 2:
            skipped[finding] = f"one grade among {len(y)} training studies"
            continue
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced"))
        clf.fit(x_train[known], y)
        preds[finding] = [str(v) for v in clf.predict(x_test)]
        classes = list(clf.classes_)
        none = grades[finding][0]
        p_none = clf.predict_proba(x_test)[:, classes.index(none)] if none in classes else np.zeros(len(x_test))
        any_scores[finding] = 1.0 - p_none
    frame = predictions_frame(ids, test_truth, preds, "probe", any_scores)
    scores = score_findings(frame, {f: list(grades[f]) for f in preds}, n_boot, seed, level)
    for finding, p_any in any_scores.items():  # beside macro-F1: any grade vs none, threshold-free
        known = test_truth[finding].is_not_null().to_numpy()
        auc = auroc_any(test_truth[finding].cast(pl.Utf8).to_numpy()[known].tolist(), p_any[known],
                        grades[finding][0], n_boot, seed, level)
        if auc and finding in scores:
            scores[finding].update(auc)
    out = {"n_train_studies": len(x_train), "n_studies": len(x_test), "skipped": skipped, "findings": scores,
           "predictions": frame}
    if "ef" in train_truth.columns and "ef" in test_truth.columns:
        ok_train, ok_test = train_truth["ef"].is_not_null().to_numpy(), test_truth["ef"].is_not_null().to_numpy()
        if ok_train.sum() > 1 and ok_test.any():
            y = train_truth["ef"].to_numpy()[ok_train].astype(float)
            reg = make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(x_train[ok_train], y)
            out["ef"] = ef_errors(reg.predict(x_test[ok_test]), test_truth["ef"].to_numpy()[ok_test].astype(float),
                                  y.mean(), n_boot, seed, level)
    return out


def scores_frame(by_variant: dict) -> pl.DataFrame:
    """Per-finding scores of each variant's first seed ({variant: {seed: result}}, as evaluate_run returns them
    under "interpret" or "probe"), one row per (model, finding); empty when there are none (real data)."""
    rows = []
    for variant, seeds in by_variant.items():
        first = next(iter(seeds.values()), None) or {}
        for f, m in first.get("findings", {}).items():
            rows.append({"model": variant, "finding": f, "accuracy": m["accuracy"], "accuracy_lo": m["accuracy_ci"][0],
                         "accuracy_hi": m["accuracy_ci"][1], "macro_f1": m["macro_f1"], "macro_f1_lo": m["macro_f1_ci"][0],
                         "macro_f1_hi": m["macro_f1_ci"][1], "majority": m["majority_accuracy"],
                         "auroc_any": m.get("auroc_any"), "auroc_any_lo": (m.get("auroc_any_ci") or [None])[0],
                         "auroc_any_hi": (m.get("auroc_any_ci") or [None, None])[1]})
    return pl.DataFrame(rows).with_columns(pl.col("^auroc_any.*$").cast(pl.Float64)) if rows else pl.DataFrame()


def load_scores(interpret_dir: str | Path, method: str) -> pl.DataFrame:
    """`scores_frame` of every run's metrics/interpret/RUN.json (`method`: "zero_shot" or "probe")."""
    frames = [scores_frame(json.loads(p.read_text()).get(method, {})) for p in sorted(Path(interpret_dir).glob("*.json"))]
    frames = [f for f in frames if not f.is_empty()]
    return pl.concat(frames) if frames else pl.DataFrame()


def score_table(by_variant: dict) -> pl.DataFrame:
    """`scores_frame` rounded for a page: variant, finding, accuracy, macro-F1, majority-grade share, AUROC of any
    grade vs none (probe)."""
    t = scores_frame(by_variant)
    return t if t.is_empty() else t.select(pl.col("model").alias("variant"), "finding", pl.col("accuracy").round(3),
                                           pl.col("macro_f1").round(3).alias("macro_F1"), pl.col("majority").round(3),
                                           pl.col("auroc_any").cast(pl.Float64).round(3).alias("AUROC any"))

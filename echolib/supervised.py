"""The positive control: is each finding measurable from the rendered clips at all?

A video encoder with one classification head per finding is trained, with labels, on the training clips in which
the finding can be seen in full (`echolib.vocab.VISIBILITY`: its views without the weak ones; colour-Doppler clips
for the jets), and scored on the test studies that every Table 1 run is scored on: a study's prediction is the mean
of the class probabilities over its clips that show the finding.

The protocol, decided before it was run (issue #26) and not tuned on its results:
- *Class-balanced sampling*: each batch element picks a finding uniformly, then one of that finding's grades present
  among the training clips uniformly, then a clip that shows the finding at that grade; its loss is that finding's
  cross-entropy alone. A rare finding (AR, AS) or grade is seen as often as EF.
- *Trained to a validation plateau*: every `val_every` steps the study-level AUROC (any grade vs none) on the
  validation studies, averaged over findings; training stops after `patience` validations without a higher one
  (or at `steps`), and the best weights are scored.
- *Seeds*: every seed of `positive_control.seeds` (empty: base.seeds); each finding's scores are means over seeds
  with CIs from resampling the test studies and the seeds.
- *The rule*: every finding reaches AUROC (any vs none) >= `READABLE` in its views; one that does not is called
  unreadable at this size, and the per-finding tables name it.
"""

from __future__ import annotations

import copy
import functools
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch import nn

from .datasets import frame_indices, frames_tensor, max_offset, model_input
from .interpret import auroc, score_over_seeds
from .loop import Stepper
from .progress import bar
from .store import ClipCache, open_store
from .vocab import FINDINGS, READABLE_AUROC, VISIBILITY, glossed

READABLE = READABLE_AUROC  # the rule (echolib.vocab), written before the protocol was run


class FindingClassifier(nn.Module):
    """A video encoder followed by one linear head per finding (grades as classes)."""

    def __init__(self, encoder: nn.Module, findings: dict[str, tuple[str, ...]]):
        super().__init__()
        self.encoder, self.findings = encoder, list(findings)
        self.heads = nn.ModuleDict({f: nn.Linear(encoder.proj.out_features, len(g)) for f, g in findings.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.encoder(x)
        return {f: head(h) for f, head in self.heads.items()}


def full_views(finding: str) -> tuple[str, ...]:
    """The views that show `finding` in full: DATA.md's Y (or C) cells, without its weak ones."""
    vis = VISIBILITY[finding]
    return tuple(v for v in vis["views"] if v not in vis.get("weak", ()))


def clip_targets(index: pl.DataFrame, studies: pl.DataFrame, videos: pl.DataFrame,
                 findings: dict[str, tuple[str, ...]] = FINDINGS) -> tuple[np.ndarray, np.ndarray]:
    """Per cached clip (index order) and finding: the grade index of its study (-1 unknown) and whether the clip
    shows the finding in full (one of `full_views`; a colour-Doppler clip for a Doppler finding)."""
    doppler = dict(zip(videos["video_id"], videos["doppler"], strict=True)) if "doppler" in videos.columns else {}
    truth = index.select("video_id", "study_id", "pred_view").join(studies, on="study_id", how="left")
    y = np.full((index.height, len(findings)), -1, dtype=np.int64)
    seen = np.zeros((index.height, len(findings)), dtype=bool)
    has_doppler = np.array([bool(doppler.get(v, False)) for v in truth["video_id"]])
    for j, (f, grades) in enumerate(findings.items()):
        if f not in truth.columns:
            continue
        pos = {g: i for i, g in enumerate(grades)}
        y[:, j] = [pos.get(g, -1) if g is not None else -1 for g in truth[f].to_list()]
        seen[:, j] = (truth["pred_view"].is_in(list(full_views(f))).to_numpy()
                      & (has_doppler | (not VISIBILITY[f]["doppler"])))
    return y, seen & (y >= 0)


def balanced_pools(rows: np.ndarray, y: np.ndarray, seen: np.ndarray) -> list[tuple[int, list[np.ndarray]]]:
    """Per finding column j with at least two grades among `rows`' clips that show it: (j, one array of rows per
    grade present). Sampling a finding, then a grade, then a row draws every (finding, grade) pair equally often."""
    pools = []
    for j in range(y.shape[1]):
        shown = rows[seen[rows, j]]
        grades = np.unique(y[shown, j])
        if len(grades) >= 2:
            pools.append((j, [shown[y[shown, j] == g] for g in grades]))
    return pools


def balanced_draw(pools: list[tuple[int, list[np.ndarray]]], n: int, gen: torch.Generator
                  ) -> tuple[np.ndarray, np.ndarray]:
    """`n` (row, finding column) pairs: a finding uniformly, a grade of it uniformly, a row of that grade."""
    fi = torch.randint(len(pools), (n,), generator=gen).tolist()
    rows, cols = [], []
    for k in fi:
        j, by_grade = pools[k]
        g = by_grade[int(torch.randint(len(by_grade), (), generator=gen))]
        rows.append(int(g[int(torch.randint(len(g), (), generator=gen))]))
        cols.append(j)
    return np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64)


def _batch(cache: ClipCache, rows: np.ndarray, num_frames: int, train: bool, gen: torch.Generator) -> torch.Tensor:
    stored = cache.meta["frames"]
    out = []
    for r in rows:
        off = int(torch.randint(max_offset(stored, num_frames) + 1, (), generator=gen)) if train else 0
        out.append(frames_tensor(cache.clips[r][frame_indices(stored, num_frames, off)]))
    return model_input(torch.stack(out))


def train_classifier(model: FindingClassifier, cache: ClipCache, rows: np.ndarray, y: np.ndarray, seen: np.ndarray,
                     steps: int, batch_size: int, lr: float, seed: int, validate=None, val_every: int = 0,
                     patience: int = 0) -> dict:
    """AdamW with a one-cycle rate over `steps`; each step `batch_size` class-balanced (clip, finding) pairs
    (`balanced_draw`), the loss the mean cross-entropy of each pair's finding. With `validate` (model -> score,
    higher is better) every `val_every` steps and at the last: stops after `patience` validations without a higher
    score (0: never early) and loads the best weights. Returns losses, validations [(step, score)], best_step and
    steps trained."""
    gen = torch.Generator().manual_seed(seed)
    pools = balanced_pools(rows, y, seen)
    if not pools:
        raise ValueError("the positive control has no finding with two grades among the training clips that show it")
    stepper = Stepper(model, lr, weight_decay=0.05, steps=steps)
    losses, history, best, best_state, waited = [], [], -np.inf, None, 0
    with bar(steps, f"positive control seed {seed}", "step") as b:
        for step in range(1, steps + 1):
            model.train()
            pick, col = balanced_draw(pools, batch_size, gen)
            logits = model(_batch(cache, pick, model.encoder.num_frames, True, gen))
            terms = [nn.functional.cross_entropy(logits[f][m], torch.from_numpy(y[pick[m], j]), reduction="sum")
                     for j, f in enumerate(model.findings) if (m := col == j).any()]
            losses.append(stepper.step(torch.stack(terms).sum() / batch_size))
            b.update(1)
            if validate is not None and (step == steps or (val_every and step % val_every == 0)):
                score = float(validate(model))
                history.append((step, score))
                if score > best:
                    best, best_state, waited = score, copy.deepcopy(model.state_dict()), 0
                else:
                    waited += 1
                    if patience and waited >= patience:
                        break
    if best_state is not None:
        model.load_state_dict(best_state)
    best_step = max(history, key=lambda h: (h[1], -h[0]))[0] if history else len(losses)
    return {"losses": losses, "validations": history, "best_step": best_step, "steps_trained": len(losses)}


@torch.inference_mode()
def study_probabilities(model: FindingClassifier, cache: ClipCache, rows: np.ndarray, seen: np.ndarray,
                        study_ids: list[str], batch_size: int = 64) -> dict[str, dict[str, np.ndarray]]:
    """Per finding, study -> mean class probabilities over the study's clips (among `rows`) that show it."""
    model.eval()
    gen = torch.Generator().manual_seed(0)
    probs = {f: [] for f in model.findings}
    for i in range(0, len(rows), batch_size):
        logits = model(_batch(cache, rows[i:i + batch_size], model.encoder.num_frames, False, gen))
        for f in model.findings:
            probs[f].append(torch.softmax(logits[f].float(), -1).numpy())
    out = {}
    for j, f in enumerate(model.findings):
        p = np.concatenate(probs[f]) if probs[f] else np.zeros((0, 1))
        by_study: dict[str, list] = {}
        for k, s in enumerate(study_ids):
            if seen[rows[k], j]:
                by_study.setdefault(s, []).append(p[k])
        out[f] = {s: np.mean(v, axis=0) for s, v in by_study.items()}
    return out


def predictions(probs: dict[str, dict[str, np.ndarray]], truth: pl.DataFrame, seed: int | None = None
                ) -> pl.DataFrame:
    """One row per (study, finding): true and predicted grade and p_any (1 - P(none)), for one seed's model."""
    truth_of = {r["study_id"]: r for r in truth.iter_rows(named=True)}
    rows = [{"seed": seed, "study_id": s, "finding": f, "true": truth_of[s][f],
             "pred": FINDINGS[f][int(np.argmax(p))], "p_any": float(1.0 - p[0])}
            for f, by_study in probs.items() for s, p in sorted(by_study.items())]
    return pl.DataFrame(rows, schema={"seed": pl.Int64, "study_id": pl.Utf8, "finding": pl.Utf8, "true": pl.Utf8,
                                      "pred": pl.Utf8, "p_any": pl.Float64})


def validation_score(model: FindingClassifier, cache: ClipCache, rows: np.ndarray, seen: np.ndarray,
                     study_ids: list[str], truth: pl.DataFrame) -> float:
    """The plateau's measure: study-level AUROC of any grade vs none on the validation studies, averaged over the
    findings where it is defined (0.5 where none is)."""
    preds = predictions(study_probabilities(model, cache, rows, seen, study_ids), truth)
    values = []
    for f in model.findings:
        p = preds.filter((pl.col("finding") == f) & pl.col("true").is_not_null())
        a = auroc((p["true"] != FINDINGS[f][0]).to_numpy(), p["p_any"].to_numpy()) if p.height else float("nan")
        if not np.isnan(a):
            values.append(a)
    return float(np.mean(values)) if values else 0.5


def run_positive_control(ctx) -> dict:
    """Stage `positive_control` (params `positive_control`, base.seed/seeds, evaluate.n_bootstrap/level): the
    supervised classifier per finding for each seed, trained on the training clips to a plateau on the validation
    studies, scored on the evaluation studies; writes data/positive_control/ (weights per seed, predictions,
    losses, validations); returns metrics/positive_control.json."""
    from .models import create_video_encoder

    cfg, out = ctx.positive_control, ctx.out("positive_control")
    out.mkdir(parents=True, exist_ok=True)
    studies = pl.read_parquet(ctx.raw / "studies.parquet")
    findings = {f: g for f, g in FINDINGS.items() if f in studies.columns}
    if cfg.steps == 0 or not findings:
        why = "positive_control.steps is 0" if findings else "the data source has no ground-truth findings"
        print(f"no positive control: {why}")
        return {"skipped": why}
    cache = open_store(ctx.data / "cache")
    if cache.kind != "memmap":
        raise ValueError("the positive control reads clips at random: it needs cache.store: memmap "
                         "(or positive_control.steps: 0)")
    split = pl.read_parquet(ctx.data / "split" / "studies.parquet")
    y, seen = clip_targets(cache.index, studies, pl.read_parquet(ctx.raw / "videos.parquet"), findings)
    index = cache.index.with_row_index("_i")
    train_rows = index.filter(pl.col("split") == "train")["_i"].to_numpy()
    valid = index.filter(pl.col("split") == "valid")
    eval_ids = sorted(set(split.filter(pl.col("eval_4ch"))["study_id"]) & set(cache.study_ids))
    test = index.filter(pl.col("study_id").is_in(eval_ids))
    vtruth = studies.filter(pl.col("study_id").is_in(valid["study_id"].unique().to_list()))
    seeds = list(cfg.seeds or ctx.base.seeds)
    frames, per_seed, losses, validations = [], [], [], []
    for s in seeds:
        torch.manual_seed(s)
        model = FindingClassifier(create_video_encoder(cfg.encoder, size=cfg.size), findings)
        check = functools.partial(validation_score, cache=cache, rows=valid["_i"].to_numpy(), seen=seen,
                                  study_ids=valid["study_id"].to_list(), truth=vtruth) if valid.height else None
        t0 = time.time()
        res = train_classifier(model, cache, train_rows, y, seen, cfg.steps, cfg.batch_size, cfg.lr, s,
                               validate=check, val_every=cfg.val_every, patience=cfg.patience)
        seconds = time.time() - t0
        probs = study_probabilities(model, cache, test["_i"].to_numpy(), seen, test["study_id"].to_list())
        frames.append(predictions(probs, studies.filter(pl.col("study_id").is_in(eval_ids)), s))
        (out / f"seed{s}").mkdir(exist_ok=True)
        torch.save(model.state_dict(), out / f"seed{s}" / "model.pt")
        losses.append(pl.DataFrame({"seed": s, "step": np.arange(1, len(res["losses"]) + 1), "loss": res["losses"]}))
        validations.append(pl.DataFrame({"seed": [s] * len(res["validations"]),
                                         "step": [h[0] for h in res["validations"]],
                                         "auroc_any": [h[1] for h in res["validations"]]},
                                        schema={"seed": pl.Int64, "step": pl.Int64, "auroc_any": pl.Float64}))
        per_seed.append({"seed": s, "steps_trained": res["steps_trained"], "best_step": res["best_step"],
                         "best_validation": max((h[1] for h in res["validations"]), default=None),
                         "train_seconds": round(seconds, 1), "final_loss": float(np.mean(res["losses"][-20:]))})
        print(f"seed {s}: {res['steps_trained']} steps, best at {res['best_step']} "
              f"(validation AUROC {per_seed[-1]['best_validation']}), {seconds:.0f} s", flush=True)
    preds = pl.concat(frames)
    scores = score_over_seeds(preds, ctx.evaluate.n_bootstrap, ctx.base.seed, ctx.evaluate.level)
    for f, v in scores.items():
        v["views"] = list(full_views(f))
        if "auroc_any" in v:
            v["readable"] = bool(v["auroc_any"] >= READABLE)
    preds.write_parquet(out / "findings.parquet")
    pl.concat(losses).write_parquet(out / "loss.parquet")
    pl.concat(validations).write_parquet(out / "validation.parquet")
    unreadable = [f for f, v in scores.items() if not v.get("readable", True)]
    return {"encoder": cfg.encoder, "max_steps": cfg.steps, "seeds": per_seed, "rule": f"AUROC any >= {READABLE}",
            "unreadable": unreadable, "train_clips": int(seen[train_rows].any(1).sum()),
            "n_valid_studies": valid["study_id"].n_unique(), "n_studies": len(eval_ids), "findings": scores}


def load_rows(path: str | Path) -> pl.DataFrame:
    """metrics/positive_control.json as one row per finding (macro-F1 and AUROC with CIs, means over seeds);
    empty if skipped."""
    import json

    m = json.loads(Path(path).read_text(encoding="utf-8")) if Path(path).is_file() else {}
    return pl.DataFrame([{"finding": f, "views": " ".join(v.get("views", [])), "accuracy": v["accuracy"],
                          "majority_accuracy": v["majority_accuracy"], "macro_f1": v["macro_f1"],
                          "macro_f1_lo": v["macro_f1_ci"][0], "macro_f1_hi": v["macro_f1_ci"][1],
                          "auroc_any": v.get("auroc_any"), "auroc_any_lo": (v.get("auroc_any_ci") or [None])[0],
                          "auroc_any_hi": (v.get("auroc_any_ci") or [None, None])[1], "readable": v.get("readable"),
                          "n_any": v.get("n_any"), "n_studies": v["n_studies"]}
                         for f, v in m.get("findings", {}).items()])


def grade_rows(path: str | Path) -> pl.DataFrame:
    """metrics/positive_control.json as one row per (finding, grade): AUROC of that grade vs none with its CI."""
    import json

    m = json.loads(Path(path).read_text(encoding="utf-8")) if Path(path).is_file() else {}
    return pl.DataFrame([{"finding": f, "grade": glossed(g), "auroc": x["auroc"], "lo": x["ci"][0], "hi": x["ci"][1],
                          "n": x["n"]} for f, v in m.get("findings", {}).items()
                         for g, x in v.get("grades", {}).items()],
                        schema={"finding": pl.Utf8, "grade": pl.Utf8, "auroc": pl.Float64, "lo": pl.Float64,
                                "hi": pl.Float64, "n": pl.Int64})

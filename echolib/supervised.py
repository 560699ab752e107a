"""The positive control: is each finding measurable from the rendered clips at all?

A video encoder with one classification head per finding is trained, with labels, on every training clip in
which `echolib.vocab.VISIBILITY` says the finding can be seen (its views; colour-Doppler clips for the jets),
and scored on the test studies that every Table 1 run is scored on: a study's prediction is the mean of the
class probabilities over its clips that show the finding. Macro-F1 and the binary AUROC of "any grade vs none"
come with bootstrap CIs. A finding the supervised model cannot learn is not a fair test of the CLIP runs; one
it learns but they do not is a gap in what contrastive training on reports extracts.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch import nn

from .datasets import frame_indices, frames_tensor, max_offset, model_input
from .loop import Stepper
from .store import ClipCache, open_store
from .vocab import FINDINGS, VISIBILITY


class FindingClassifier(nn.Module):
    """A video encoder followed by one linear head per finding (grades as classes)."""

    def __init__(self, encoder: nn.Module, findings: dict[str, tuple[str, ...]]):
        super().__init__()
        self.encoder, self.findings = encoder, list(findings)
        self.heads = nn.ModuleDict({f: nn.Linear(encoder.proj.out_features, len(g)) for f, g in findings.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.encoder(x)
        return {f: head(h) for f, head in self.heads.items()}


def clip_targets(index: pl.DataFrame, studies: pl.DataFrame, videos: pl.DataFrame,
                 findings: dict[str, tuple[str, ...]] = FINDINGS) -> tuple[np.ndarray, np.ndarray]:
    """Per cached clip (index order) and finding: the grade index of its study (-1 unknown) and whether the clip
    shows the finding (its view; a colour-Doppler clip for a Doppler finding)."""
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
        vis = VISIBILITY[f]
        seen[:, j] = truth["pred_view"].is_in(list(vis["views"])).to_numpy() & (has_doppler | (not vis["doppler"]))
    return y, seen & (y >= 0)


def _batch(cache: ClipCache, rows: np.ndarray, num_frames: int, train: bool, gen: torch.Generator) -> torch.Tensor:
    stored = cache.meta["frames"]
    out = []
    for r in rows:
        off = int(torch.randint(max_offset(stored, num_frames) + 1, (), generator=gen)) if train else 0
        out.append(frames_tensor(cache.clips[r][frame_indices(stored, num_frames, off)]))
    return model_input(torch.stack(out))


def train_classifier(model: FindingClassifier, cache: ClipCache, rows: np.ndarray, y: np.ndarray, seen: np.ndarray,
                     steps: int, batch_size: int, lr: float, seed: int) -> list[float]:
    """AdamW with cosine decay; each step a batch of training clips that show at least one finding, the loss the
    mean cross-entropy over the (clip, finding) pairs that are seen."""
    gen = torch.Generator().manual_seed(seed)
    usable = rows[seen[rows].any(1)]
    stepper = Stepper(model, lr, weight_decay=0.05, steps=steps)
    losses = []
    model.train()
    for _ in range(steps):
        pick = usable[torch.randint(len(usable), (batch_size,), generator=gen).numpy()]
        logits = model(_batch(cache, pick, model.encoder.num_frames, True, gen))
        terms = [nn.functional.cross_entropy(logits[f][m], torch.from_numpy(y[pick, j][m]))
                 for j, f in enumerate(model.findings) if (m := torch.from_numpy(seen[pick, j])).any()]
        losses.append(stepper.step(torch.stack(terms).mean()))
    return losses


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


def score(probs: dict[str, dict[str, np.ndarray]], truth: pl.DataFrame, n_boot: int, seed: int, level: float
          ) -> tuple[dict, pl.DataFrame]:
    """Macro-F1, accuracy and AUROC (any grade vs none) per finding with bootstrap CIs, and the predictions."""
    from .interpret import auroc_any, score_findings

    grades = {f: list(FINDINGS[f]) for f in probs}
    truth_of = {r["study_id"]: r for r in truth.iter_rows(named=True)}
    rows = []
    for f, by_study in probs.items():
        for s, p in sorted(by_study.items()):
            rows.append({"study_id": s, "finding": f, "true": truth_of[s][f], "pred": grades[f][int(np.argmax(p))],
                         "p_any": float(1.0 - p[0]), "method": "supervised"})
    preds = pl.DataFrame(rows, schema={"study_id": pl.Utf8, "finding": pl.Utf8, "true": pl.Utf8, "pred": pl.Utf8,
                                       "p_any": pl.Float64, "method": pl.Utf8})
    scores = score_findings(preds, grades, n_boot, seed, level)
    for f in scores:
        p = preds.filter(pl.col("finding") == f)
        auc = auroc_any(p["true"].to_list(), p["p_any"].to_numpy(), grades[f][0], n_boot, seed, level)
        if auc:
            scores[f].update(auc)
    return scores, preds


def run_positive_control(ctx) -> dict:
    """Stage `positive_control` (params `positive_control`, base.seed, evaluate.n_bootstrap/level): the supervised
    classifier per finding, trained on the training clips, scored on the evaluation studies; writes
    data/positive_control/ (weights, predictions); returns metrics/positive_control.json."""
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
    torch.manual_seed(ctx.base.seed)
    model = FindingClassifier(create_video_encoder(cfg.encoder, size=cfg.size), findings)
    train_rows = np.flatnonzero((cache.index["split"] == "train").to_numpy())
    t0 = time.time()
    losses = train_classifier(model, cache, train_rows, y, seen, cfg.steps, cfg.batch_size, cfg.lr, ctx.base.seed)
    seconds = time.time() - t0
    eval_ids = sorted(set(split.filter(pl.col("eval_4ch"))["study_id"]) & set(cache.study_ids))
    test = cache.index.with_row_index("_i").filter(pl.col("study_id").is_in(eval_ids))
    probs = study_probabilities(model, cache, test["_i"].to_numpy(), seen, test["study_id"].to_list())
    scores, preds = score(probs, studies.filter(pl.col("study_id").is_in(eval_ids)), ctx.evaluate.n_bootstrap,
                          ctx.base.seed, ctx.evaluate.level)
    torch.save(model.state_dict(), out / "model.pt")
    preds.write_parquet(out / "findings.parquet")
    pl.DataFrame({"step": np.arange(1, len(losses) + 1), "loss": losses}).write_parquet(out / "loss.parquet")
    return {"encoder": cfg.encoder, "steps": cfg.steps, "train_clips": int(seen[train_rows].any(1).sum()),
            "n_studies": len(eval_ids), "train_seconds": round(seconds, 1), "final_loss": float(np.mean(losses[-20:])),
            "findings": scores}


def load_rows(path: str | Path) -> pl.DataFrame:
    """metrics/positive_control.json as one row per finding (macro-F1 and AUROC with CIs); empty if skipped."""
    import json

    m = json.loads(Path(path).read_text(encoding="utf-8")) if Path(path).is_file() else {}
    return pl.DataFrame([{"finding": f, "macro_f1": v["macro_f1"], "macro_f1_lo": v["macro_f1_ci"][0],
                          "macro_f1_hi": v["macro_f1_ci"][1], "auroc_any": v.get("auroc_any"),
                          "auroc_any_lo": (v.get("auroc_any_ci") or [None])[0],
                          "auroc_any_hi": (v.get("auroc_any_ci") or [None, None])[1], "n_studies": v["n_studies"]}
                         for f, v in m.get("findings", {}).items()])

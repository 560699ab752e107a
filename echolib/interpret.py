"""Zero-shot interpretation (paper Sec. 2.2): a study's video embedding picks the most similar of one canonical
Japanese sentence per grade of each finding; EF is estimated EchoCLIP-style from prompts 「左室駆出率は{n}%。」.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import torch

from .synth.reports import PROMPTS
from .text import encode

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


def _ci(values: np.ndarray, level: float) -> tuple[float, float]:
    a = (1 - level) / 2
    return float(np.nanquantile(values, a)), float(np.nanquantile(values, 1 - a))


def interpret(model, tokenizer, study_emb: torch.Tensor, truth: pl.DataFrame, n_boot: int = 1000, seed: int = 0,
              level: float = 0.95, prompts: dict[str, dict[str, str]] = PROMPTS) -> dict:
    """Accuracy and macro-F1 per finding (with bootstrap CIs) and EF MAE. `truth` rows align with study_emb."""
    rng = np.random.default_rng(seed)
    n = len(truth)
    idx = rng.integers(0, n, size=(n_boot, n))
    out = {"n_studies": n, "findings": {}}
    for finding, by_grade in prompts.items():
        if finding not in truth.columns:
            continue
        grades = list(by_grade)
        emb = embed_sentences(model, tokenizer, [by_grade[g] for g in grades])
        pred = [grades[i] for i in (study_emb.detach() @ emb.T).argmax(dim=1).tolist()]
        true = truth[finding].to_list()
        correct = np.array([p == t for p, t in zip(pred, true, strict=True)], dtype=float)
        boot_f1 = np.array([macro_f1([true[i] for i in b], [pred[i] for i in b], grades) for b in idx[: min(n_boot, 200)]])
        out["findings"][finding] = {
            "accuracy": float(correct.mean()), "accuracy_ci": _ci(correct[idx].mean(axis=1), level),
            "macro_f1": macro_f1(true, pred, grades), "macro_f1_ci": _ci(boot_f1, level),
            "majority_accuracy": float(max(true.count(g) for g in grades) / n),
        }
    known = truth["ef"].is_not_null().to_numpy() if "ef" in truth.columns else np.zeros(n, bool)
    if known.any():  # real sources may carry EF for some studies only
        emb = embed_sentences(model, tokenizer, [ef_prompt(int(v)) for v in EF_VALUES])
        sims = study_emb.detach()[torch.from_numpy(known)] @ emb.T
        weights = torch.softmax(sims * model.scale().detach().float(), dim=1).numpy()
        est = weights @ EF_VALUES
        ef = truth["ef"].to_numpy()[known].astype(float)
        err = np.abs(est - ef)
        boot = rng.integers(0, len(ef), size=(n_boot, len(ef)))
        out["ef"] = {"mae": float(err.mean()), "mae_ci": _ci(err[boot].mean(axis=1), level),
                     "mae_predict_mean": float(np.abs(ef.mean() - ef).mean()), "n_studies": int(known.sum())}
    return out

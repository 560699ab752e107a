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

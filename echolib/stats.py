"""The bootstrap every CI in echolib comes from: one seeded draw of resampled indices and one percentile interval.

The same `seed` and size give the same draw everywhere, so two runs or two findings scored on the same studies are
resampled identically (paired)."""

from __future__ import annotations

import numpy as np


def resample(n: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """(n_boot, n) indices drawn with replacement from range(n): one bootstrap resample per row."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def ci(values, level: float = 0.95) -> tuple[float, float]:
    """The central `level` percentile interval of bootstrap `values` (NaN resamples ignored)."""
    a = (1 - level) / 2
    values = np.asarray(values, dtype=float)
    return float(np.nanquantile(values, a)), float(np.nanquantile(values, 1 - a))

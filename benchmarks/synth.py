"""Synthetic benchmark throughput: clips/s (render + encode) and bytes per clip, per profile.

    python benchmarks/synth.py --profile default --n-patients 40 --workers 2
writes benchmarks/results/synth-<profile>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from echolib import config
from echolib.synth import generate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="default", choices=config.PROFILES)
    ap.add_argument("--n-patients", type=int, default=40)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        full = config.preset(a.profile, "synth")
        synth = config.SynthConfig.from_dict({**full.to_dict(), "n_patients": a.n_patients})
        tables = generate(d, synth, seed=0, workers=a.workers, progress=False)
        dt = time.perf_counter() - t0
    v = tables["videos"]
    prof = full
    result = {
        "profile": a.profile, "n_patients": a.n_patients, "workers": a.workers or os.cpu_count(),
        "clips": v.height, "seconds": round(dt, 2), "clips_per_s": round(v.height / dt, 2),
        "bytes_per_clip": round(float(v["bytes"].mean()), 1), "size": prof.size, "clip_seconds": prof.seconds,
        "mean_frames": round(float(v["n_frames"].mean()), 1),
        "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
        "projected_full_profile_minutes": round(prof.n_patients / a.n_patients * dt / 60, 1),
    }
    Path(a.out).mkdir(parents=True, exist_ok=True)
    path = Path(a.out) / f"synth-{a.profile}.json"
    path.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

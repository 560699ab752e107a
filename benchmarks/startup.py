"""Start-up cost of the processes every stage runs (issue #25), run by hand; writes benchmarks/results/startup.json.

    python benchmarks/startup.py [--repeats 5]

Each stage starts a runner (`python -m echolib.stage`, which imports papermill) and a notebook kernel whose first
cell imports altair; train stages start `python -m echolib.train`, which imports Lightning. For each of those
imports: the wall time of a fresh interpreter that does only that import, without and with `import echolib` first
(which defers rfc3987_syntax's grammar, echolib.startup), alternated, the median of `--repeats` each, in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMPORTS = {"stage runner (papermill)": "papermill", "kernel's first cell (altair)": "altair",
           "training subprocess (lightning.pytorch)": "lightning.pytorch", "bare interpreter": None}


def wall(code: str) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "startup.json"))
    a = ap.parse_args(argv)
    results = {}
    for label, module in IMPORTS.items():
        plain = f"import {module}" if module else "pass"
        ours = f"import echolib; import {module}" if module else "import echolib"
        t_plain, t_ours = [], []
        for _ in range(a.repeats):
            t_plain.append(wall(plain))
            t_ours.append(wall(ours))
        p, o = statistics.median(t_plain), statistics.median(t_ours)
        results[label] = {"without_s": round(p, 3), "with_echolib_first_s": round(o, 3), "saved_s": round(p - o, 3),
                          "ratio": round(p / o, 2)}
        print(f"{label:42s} {p:6.2f} s -> {o:6.2f} s  ({p / o:.2f}x)")
    out = {"cores": os.cpu_count(), "python": platform.python_version(), "repeats": a.repeats,
           "median_wall_s": results}
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"-> {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

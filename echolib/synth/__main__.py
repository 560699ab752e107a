"""python -m echolib.synth --profile tiny --seed 0 --out DIR"""

from __future__ import annotations

import argparse
import time

from .build import PROFILES, generate


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m echolib.synth", description="Generate the synthetic benchmark.")
    ap.add_argument("--profile", default="tiny", choices=sorted(PROFILES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--n-patients", type=int, default=None)
    ap.add_argument("--workers", type=int, default=0, help="processes (0 = all cores)")
    a = ap.parse_args(argv)
    t0 = time.time()
    tables = generate(a.out, a.profile, a.seed, n_patients=a.n_patients, workers=a.workers)
    n = {k: v.height for k, v in tables.items()}
    print(f"{a.out}: {n['patients']} patients, {n['studies']} studies, {n['videos']} videos "
          f"in {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()

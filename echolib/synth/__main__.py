"""python -m echolib.synth --profile tiny --seed 0 --out DIR"""

from __future__ import annotations

import argparse
import time

from .. import config
from ..io.files import atomic_dir
from ..io.safe import for_terminal
from .build import generate


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m echolib.synth", description="Generate the synthetic benchmark.")
    ap.add_argument("--profile", default="tiny", choices=config.PROFILES,
                    help="the profile whose `synth` values are used (echolib.config presets)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--n-patients", type=int, default=None)
    ap.add_argument("--workers", type=int, default=0, help="processes (0 = all cores)")
    a = ap.parse_args(argv)
    t0 = time.time()
    synth = config.preset(a.profile, "synth").to_dict()
    if a.n_patients is not None:
        synth["n_patients"] = a.n_patients
    try:
        with atomic_dir(a.out) as tmp:  # the previous benchmark is replaced only by a complete new one
            tables = generate(tmp, config.SynthConfig.from_dict(synth), a.seed, workers=a.workers)
    except (config.ConfigError, OSError) as e:
        raise SystemExit(f"error: {for_terminal(e)}") from None
    n = {k: v.height for k, v in tables.items()}
    print(f"{a.out}: {n['patients']} patients, {n['studies']} studies, {n['videos']} videos "
          f"in {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()

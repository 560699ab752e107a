"""Where the synthetic benchmark's time goes (issue #25), run by hand; writes benchmarks/results/synth_breakdown.json.

    python benchmarks/synth_breakdown.py [--patients 12] [--before GIT_REF]

For the default profile's clips of `--patients` patients: the time per clip in each phase of rendering (geometry
and motion, speckle, noise / point spread / log compression, colour Doppler) and in encoding, one process, one
thread; then the whole generator with 2 worker processes (clips per second). With --before, the same on another
commit's code (checked out into a temporary git worktree), in the same run: the phases where that code has them,
the totals always.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PHASES = """
import json, os, sys, tempfile, time
sys.path.insert(0, sys.argv[1])
os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np
from echolib import config
from echolib.synth import build, render
from echolib.io import video

timers = {}
def timed(module, name, label):
    f = getattr(module, name, None)
    if f is None:
        return
    def wrapper(*a, **k):
        t = time.perf_counter()
        try:
            return f(*a, **k)
        finally:
            timers[label] = timers.get(label, 0.0) + time.perf_counter() - t
    setattr(module, name, wrapper)

timed(render, "moving_anatomy", "geometry and motion")
timed(render, "speckle_amplitude", "speckle")
timed(render, "noise_and_compression", "noise, point spread, log compression")
timed(render, "_colour", "colour Doppler")
timed(render, "render_clip", "render (total)")
timed(build, "write_video", "encoding")
synth = config.SynthConfig.from_dict({**config.preset("default", "synth").to_dict(), "n_patients": int(sys.argv[2])})
rng = np.random.default_rng(np.random.SeedSequence([0, 0xEC40]))
from echolib.synth.findings import sample_patients, sample_studies
from echolib.synth.reports import write_report
patients = sample_patients(synth.n_patients, rng)
studies = sample_studies(patients, rng)
sex = {p["patient_id"]: p["sex"] for p in patients}
for s in studies:
    s["aod"] = 32.0 if sex[s["patient_id"]] == "M" else 29.0
    s["report"] = write_report(s, rng, None, synth.report_style)
clips = build._plan_clips(studies, rng)
for c in clips:
    c["path"] = f"videos/{c['study_id']}/{c['video_id']}.mp4"
by = {s["study_id"]: {k: s[k] for k in build.RENDER_KEYS} for s in studies}
out = tempfile.mkdtemp()
build._render_one((clips[0], by[clips[0]["study_id"]], out, synth))  # warm-up
timers.clear()
t = time.perf_counter()
for c in clips:
    build._render_one((c, by[c["study_id"]], out, synth))
total = time.perf_counter() - t
n = len(clips)
print(json.dumps({"clips": n, "ms_per_clip": {"all": round(1000 * total / n, 2),
                  **{k: round(1000 * v / n, 2) for k, v in timers.items()}}}))
"""

GENERATE = """
import json, sys, tempfile, time
sys.path.insert(0, sys.argv[1])
from echolib import config
from echolib.synth import generate
synth = config.SynthConfig.from_dict({**config.preset("default", "synth").to_dict(), "n_patients": int(sys.argv[2])})
with tempfile.TemporaryDirectory() as d:
    t = time.perf_counter()
    tables = generate(d, synth, seed=0, workers=2, progress=False)
    dt = time.perf_counter() - t
n = tables["videos"].height
print(json.dumps({"clips": n, "seconds": round(dt, 2), "clips_per_s": round(n / dt, 2)}))
"""


def run(script: str, code: Path, patients: int) -> dict:
    r = subprocess.run([sys.executable, "-c", script, str(code), str(patients)], capture_output=True, text=True,
                       cwd=code, env={**os.environ, "PYTHONPATH": str(code)})
    if r.returncode:
        raise SystemExit(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=12)
    ap.add_argument("--generate-patients", type=int, default=40)
    ap.add_argument("--before", default=None, help="a git ref whose code is measured too")
    a = ap.parse_args()
    codes, tmp = {"after": ROOT}, None
    if a.before:
        tmp = Path(tempfile.mkdtemp(prefix="echolib-before-"))
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(tmp / "code"), a.before],
                       check=True)
        codes = {"before": tmp / "code", **codes}
    res = {"default profile clips, one process": {}, "generate, 2 workers": {}, "cores": os.cpu_count()}
    try:
        for label, code in codes.items():
            res["default profile clips, one process"][label] = run(PHASES, code, a.patients)
            print(label, res["default profile clips, one process"][label], flush=True)
        for label, code in codes.items():
            res["generate, 2 workers"][label] = run(GENERATE, code, a.generate_patients)
            print(label, res["generate, 2 workers"][label], flush=True)
    finally:
        if tmp is not None:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tmp / "code")], check=False)
    if a.before:
        b, c = (res["generate, 2 workers"][k]["clips_per_s"] for k in ("before", "after"))
        res["speedup, generate"] = round(c / b, 2)
    out = ROOT / "benchmarks" / "results" / "synth_breakdown.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(out)


if __name__ == "__main__":
    main()

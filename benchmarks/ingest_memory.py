"""Peak memory of one ingestion worker (issue #23), run by hand; writes benchmarks/results/ingest_memory.json.

    python benchmarks/ingest_memory.py [--before GIT_REF]

Builds, once, an uncompressed RGB cine of 276 MB decoded (300 frames of 640 x 480, the real apical cine tiled and
frame-grabbed) and an RLE file whose header describes 9 GB of frames; then, in a fresh process each, decodes,
de-identifies and writes the cine as an ingestion worker does (`echolib.ingest.core._process`) and reports the
growth of the process's peak resident memory over its size after a first, small cine (pydicom's example: every
decoder imported). With --before, the same is measured on
another commit's code (checked out into a temporary git worktree), so both figures come from one run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: a child's peak RSS starts at its parent's (Linux keeps the high-water mark across fork and exec): it is reset
#: after the imports (/proc/self/clear_refs) and read from /proc/self/status
PEAK = """
import re, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from echolib.ingest import core
def hwm():
    return int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
opts = (core.DEFAULT_PIXELS,) if hasattr(core, "DEFAULT_PIXELS") else ()
from pydicom.examples import get_path
core._process((core.Item("x", Path(get_path("ybr_color"))), sys.argv[3], "w.mp4", *opts))  # decoders imported
open("/proc/self/clear_refs", "w").write("5")
base = hwm()
item = core.Item("x", Path(sys.argv[2]))
job = (item, sys.argv[3], "v.mp4", *opts)
t = time.time()
r = core._process(job)
print(round((hwm() - base) / 1024, 1), round(time.time() - t, 1), r.get("reject", "kept"), sep="\\t")
"""


def build(folder: Path) -> dict[str, Path]:
    import numpy as np

    from tests import dicom_fixtures as F

    big = folder / "cine_276MB.dcm"
    if not big.exists():
        frames = np.tile(F.cine().pixel_array, (10, 2, 2, 1))[:300, :480, :640]
        F.save(F.with_frames(F.grabbed(frames, noise=2)), big)
    bomb = folder / "rle_bomb.dcm"
    if not bomb.exists():
        ds = F.rle(F.variant())
        ds.NumberOfFrames, ds.Rows, ds.Columns = 4096, 1024, 768
        F.save(ds, bomb)
    return {"uncompressed cine, 276 MB decoded": big, "RLE file whose header describes 9 GB": bomb}


def measure(code: Path, path: Path, out: Path) -> dict:
    r = subprocess.run([sys.executable, "-c", PEAK, str(code), str(path), str(out)], capture_output=True, text=True)
    if r.returncode:
        return {"error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"}
    peak, seconds, outcome = r.stdout.strip().split("\t")
    return {"peak_growth_mb": float(peak), "seconds": float(seconds), "outcome": outcome}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", default=None, help="a git ref whose code is measured too (e.g. a383d37)")
    ap.add_argument("--files", default=str(Path(tempfile.gettempdir()) / "echolib-ingest-memory"))
    a = ap.parse_args()
    folder = Path(a.files)
    folder.mkdir(parents=True, exist_ok=True)
    files = build(folder)
    codes = {"after": ROOT}
    tmp = None
    if a.before:
        tmp = Path(tempfile.mkdtemp(prefix="echolib-before-"))
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(tmp / "code"), a.before],
                       check=True)
        codes = {"before": tmp / "code", **codes}
    results = {"files": {name: round(p.stat().st_size / 2 ** 20, 1) for name, p in files.items()}, "runs": {}}
    try:
        for label, code in codes.items():
            for name, path in files.items():
                if label == "before" and "RLE" in name:
                    results["runs"][f"{label}: {name}"] = {"skipped": "would allocate 9 GB and more"}
                    continue
                res = measure(code, path, folder / f"out-{label}")
                results["runs"][f"{label}: {name}"] = res
                print(label, name, res, flush=True)
    finally:
        if tmp is not None:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tmp / "code")], check=False)
    out = ROOT / "benchmarks" / "results" / "ingest_memory.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(out)


if __name__ == "__main__":
    main()

"""Clip store benchmarks (issue #16), run by hand; writes benchmarks/results/store.json.

    python benchmarks/store.py --clips 24

- bytes per clip: the sharded store's H.264 (cache.qp) against the raw uint8 memmap, at the default's shapes
  (10 frames x 64 px) and the paper's (32 frames x 224 px), on rendered synthetic clips;
- decoded frames per second per worker (one process, one thread) at 64 and 224 px;
- from the decode rate and a GPU's measured training rate (--gpu-clips-per-s, from gpu_check.json), how many
  CPU workers keep one GPU fed at 32 frames per clip.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402


def clips(n: int, size: int, frames: int, fps: float) -> list[np.ndarray]:
    """Rendered synthetic clips of every view (colour Doppler in some) at `frames` x `size` px, at `fps`."""
    from echolib.synth.render import ClipSpec, render_clip
    from tests.test_synth import NORMAL

    views = ["LAX", "SAX", "2CH", "3CH", "4CH"]
    return [render_clip({**NORMAL, "mr": "中等度"}, ClipSpec(views[i % 5], i % 3 == 0, 0.8, fps, frames, size, i))
            for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--qp", type=int, default=26)
    ap.add_argument("--gpu-clips-per-s", type=float, default=None)
    ap.add_argument("--out", default="benchmarks/results")
    a = ap.parse_args()
    from echolib.store import decode_clip, encode_clip

    result = {"qp": a.qp, "clips": a.clips}
    for name, size, frames, fps in (("default", 64, 10, 8.0), ("paper", 224, 32, 24.0)):
        cs = clips(a.clips, size, frames, fps)
        data = [encode_clip(c, fps, a.qp) for c in cs]
        t0 = time.perf_counter()
        decoded = sum(len(decode_clip(d)) for d in data)
        dt = time.perf_counter() - t0
        raw = cs[0].nbytes
        result[name] = {"frames": frames, "size": size, "raw_bytes_per_clip": raw,
                        "store_bytes_per_clip": round(float(np.mean([len(d) for d in data])), 1),
                        "ratio_raw_over_store": round(raw / float(np.mean([len(d) for d in data])), 1),
                        "decoded_frames_per_s_per_worker": round(decoded / dt, 1)}
        print(name, result[name], flush=True)
    fps_worker = result["paper"]["decoded_frames_per_s_per_worker"]
    if a.gpu_clips_per_s:
        result["workers_per_gpu"] = {"gpu_clips_per_s": a.gpu_clips_per_s, "frames_per_clip": 32,
                                     "workers": int(np.ceil(a.gpu_clips_per_s * 32 / fps_worker))}
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "store.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""The sector mask and the view classifier on real echo clips (issue #30), run by hand; writes
benchmarks/results/real_clips.json.

    python benchmarks/real_clips.py --clips DIR [--views-model data/views]

DIR holds the clips benchmarks/real_clips.json lists (fetched from the repository and commit named there; they are
not copied into this repository, whose licence their source does not grant). For each clip: its SHA-256 against
the one recorded; the automatic sector mask (echolib.io.mask.sector_mask) against the sector drawn by hand (IoU);
coloured pixels (ECG trace, markers) outside the hand-drawn sector before and after de-identification, and how
many remain inside the mask's rim; with --views-model, the view classifier's call and probability.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def hand_mask(polygon: list[list[int]], shape: tuple[int, int]) -> np.ndarray:
    from PIL import Image, ImageDraw

    img = Image.new("L", (shape[1], shape[0]), 0)
    ImageDraw.Draw(img).polygon([tuple(p) for p in polygon], fill=1)
    return np.asarray(img, bool)


def coloured(frames: np.ndarray) -> np.ndarray:
    """Pixels of any frame whose channels differ by more than 60 grey levels (ECG traces, markers, Doppler)."""
    f = frames.astype(np.int16)
    return (f.max(-1) - f.min(-1) > 60).any(0)


def main() -> None:
    import polars as pl

    from echolib.io.files import sha256_file
    from echolib.io.mask import deidentify, sector_mask
    from echolib.io.video import read_clip, video_info

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", required=True)
    ap.add_argument("--views-model", default="")
    a = ap.parse_args()
    spec = json.loads((ROOT / "benchmarks" / "real_clips.json").read_text())
    rows = []
    for c in spec["clips"]:
        path = Path(a.clips) / c["file"]
        digest = sha256_file(path)
        frames = read_clip(path, video_info(path)["n_frames"])
        hand = hand_mask(c["hand_polygon"], frames.shape[1:3])
        auto, info = sector_mask(frames)
        auto = np.asarray(auto, bool)
        out, dinfo = deidentify(frames.copy())
        before, after = coloured(frames) & ~hand, coloured(out) & ~hand
        row = {"file": c["file"], "sha256_matches": digest == c["sha256"], "size": list(frames.shape[1:3]),
               "frames": len(frames), "mask_method": info["method"],
               "mask_iou_vs_hand": round(float((hand & auto).sum() / (hand | auto).sum()), 4),
               "mask_px": int(auto.sum()), "hand_px": int(hand.sum()),
               "coloured_px_outside_hand_sector_before": int(before.sum()),
               "coloured_px_outside_hand_sector_after": int(after.sum()),
               "text_pixels_blanked": dinfo["text_pixels"]}
        if a.views_model:  # on the clip as ingestion writes it (de-identified), as the pipeline would see it
            import tempfile

            from echolib.io.video import write_video
            from echolib.views import predict

            with tempfile.TemporaryDirectory() as tmp:
                h, w = out.shape[1:3]
                masked = write_video(Path(tmp) / "clip.mp4", out[:, : h - h % 2, : w - w % 2], 30.0)
                videos = pl.DataFrame({"video_id": [path.stem], "path": [str(masked)], "n_frames": [len(out)]})
                p = predict(a.views_model, "/", videos, workers=1, progress=False)
            row["view_classifier"] = {"model": a.views_model, "pred_view": p["pred_view"][0],
                                      "view_prob": round(float(p["view_prob"][0]), 4)}
        rows.append(row)
        print(json.dumps(row, ensure_ascii=False))
    out_path = ROOT / "benchmarks" / "results" / "real_clips.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps({"source": spec["clips"][0]["repository"], "clips": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()

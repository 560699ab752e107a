"""The clip stores: every kept clip decoded once at the training rate and size, with its study's tokens.

Two stores behind one interface (`StoreBase`: meta.json, the clip index, the reports' tokens, `iter_frames`;
`open_store` opens whichever the cache stage wrote):

- `ClipCache` (cache.store: memmap): clips.u8, one memory-mapped uint8 array (N, F, S, S, 3): random access, no
  decoding; the CPU profiles.
- `ShardStore` (cache.store: shards): WebDataset tar shards of short-GOP H.264 clips, streamed into (multi-GPU)
  training. At paper scale one raw uint8 array of every clip (747,900 x 32 x 224 x 224 x 3) would be 3.6 TB; the
  same clips as H.264 (constant quantiser `cache.qp`, one GOP per clip, resampled to the training size and rate
  by the same code as the memory-mapped cache) take a few dozen KB each.

Folder layout: index.parquet (row, video_id, study_id, patient_id, split, view, ...), tokens.npz (study_id,
input_ids, attention_mask in each report's order; sent_ids, sent_bounds, study_sents: the sentences), meta.json,
and clips.u8 or shards/{split}-{n:06d}.tar (samples KEY.mp4, KEY.json) with manifest.json (every finished shard:
clips, bytes, sha256; a rerun keeps the shards it lists). The datasets that read them: `echolib.datasets`.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import polars as pl
import torch

from .io.files import sha256_file
from .io.video import VideoDecodeError, read_at_rate
from .proc import map_jobs

SPLITS = ("train", "valid", "test")


# --- the stores -----------------------------------------------------------------------------------------------


class StoreBase:
    """What every clip store holds besides the clips: meta.json, the clip index and the reports' tokens."""

    kind = ""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        meta_path = self.path / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{self.path}: no clip store here (run the cache stage first)")
        self.meta = json.loads(meta_path.read_text())
        self.index = pl.read_parquet(self.path / "index.parquet")
        tok = np.load(self.path / "tokens.npz")
        self.study_ids = tok["study_id"].tolist()
        self.input_ids, self.attention_mask = tok["input_ids"], tok["attention_mask"]
        self.sent_ids, self.sent_bounds, self.study_sents = tok["sent_ids"], tok["sent_bounds"], tok["study_sents"]
        self.study_row = {s: i for i, s in enumerate(self.study_ids)}

    def select(self, split: str, views: list[str] | None = None, view_col: str = "pred_view") -> pl.DataFrame:
        sel = self.index.filter(pl.col("split") == split)
        if views is not None:
            col = view_col if view_col in sel.columns else "view"
            sel = sel.filter(pl.col(col).is_in(views))
        return sel

    def report(self, s: int, shuffle: bool = False, max_findings: int = 35,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and mask of study `s`'s report: its own order, or its finding sentences reordered at random
        (at most `max_findings`), as training sees them."""
        if not shuffle:
            return (torch.from_numpy(self.input_ids[s].astype(np.int64)),
                    torch.from_numpy(self.attention_mask[s].astype(np.int64)))
        from .text import join_sentences

        first, last = int(self.study_sents[s]), int(self.study_sents[s + 1])
        order = (first + torch.randperm(last - first, generator=generator)[:max_findings]).tolist()
        length, special = self.input_ids.shape[1], self.meta["special_tokens"]
        row, _ = join_sentences(self.sent_ids, self.sent_bounds, order, special, length)
        ids = torch.full((length,), special["pad"], dtype=torch.int64)
        ids[: len(row)] = torch.from_numpy(row.astype(np.int64))
        mask = torch.zeros(length, dtype=torch.int64)
        mask[: len(row)] = 1
        return ids, mask

    def iter_frames(self, rows: pl.DataFrame):
        """(row, frames (F, H, W, 3) uint8) for every clip of `rows`, in the order of `rows`."""
        raise NotImplementedError


class ClipCache(StoreBase):
    """Every clip decoded once into one memory-mapped uint8 array (N, F, S, S, 3): random access, no decoding."""

    kind = "memmap"

    def __init__(self, path: str | Path):
        super().__init__(path)
        self._clips = None

    @property
    def clips(self) -> np.memmap:
        if self._clips is None:  # opened lazily, so each dataloader worker maps it itself
            self._clips = np.memmap(self.path / "clips.u8", dtype=np.uint8, mode="r", shape=tuple(self.meta["shape"]))
        return self._clips

    def iter_frames(self, rows: pl.DataFrame):
        for r in rows["row"].to_list():
            yield r, self.clips[r]


class ShardStore(StoreBase):
    """A sharded clip store (see the module docstring): the clip index and tokens in memory, clips in shards."""

    kind = "shards"

    def __init__(self, path: str | Path):
        super().__init__(path)
        manifest = json.loads((self.path / "manifest.json").read_text())
        if not manifest["complete"]:
            raise FileNotFoundError(f"{self.path}: the shards are incomplete ({len(manifest['shards'])} of "
                                    f"{manifest['planned']}): rerun the cache stage, which resumes")
        self.shards = manifest["shards"]

    def shard_paths(self, split: str) -> list[str]:
        return [str(self.path / "shards" / s["name"]) for s in self.shards if s["split"] == split]

    def iter_frames(self, rows: pl.DataFrame):
        """Decode the clips of `rows` from the shards that hold them (one pass per shard), in the order of rows."""
        import webdataset as wds

        want = dict(zip(rows["video_id"].to_list(), rows["row"].to_list(), strict=True))
        shards = sorted(set(self.index.filter(pl.col("video_id").is_in(list(want)))["shard"].to_list()))
        got = {}
        for sample in wds.DataPipeline(wds.SimpleShardList([str(self.path / "shards" / s) for s in shards]),
                                       wds.tarfile_to_samples()):
            if sample["__key__"] in want:
                got[sample["__key__"]] = decode_clip(sample["mp4"])
        for vid, r in want.items():
            yield r, got[vid]


def open_store(path: str | Path) -> StoreBase:
    """The clip store the cache stage wrote at `path`: memory-mapped clips or WebDataset shards."""
    meta = Path(path) / "meta.json"
    if not meta.is_file():
        raise FileNotFoundError(f"{path}: no clip store here (run the cache stage first)")
    if json.loads(meta.read_text()).get("store") == "shards":
        return ShardStore(path)
    return ClipCache(path)


# --- writing: the memory-mapped array -------------------------------------------------------------------


def _decode_into(job):
    path, row, mm_path, shape, src_fps, fps, size = job
    mm = np.memmap(mm_path, dtype=np.uint8, mode="r+", shape=shape)
    padded = 0
    try:
        mm[row], padded = read_at_rate(path, shape[1], src_fps, fps, size=size)
        err = ""
    except VideoDecodeError as e:
        err = str(e)
    mm.flush()
    del mm
    return row, err, padded


def write_memmap(raw, videos: pl.DataFrame, mm_path: Path, shape: tuple, fps: float, size: int, workers: int,
                  progress: bool) -> tuple[dict, int]:
    np.memmap(mm_path, dtype=np.uint8, mode="w+", shape=shape).flush()
    jobs = [(str(Path(raw) / p), r, str(mm_path), shape, float(f), fps, size)
            for r, p, f in zip(videos["row"], videos["path"], videos["fps"], strict=True)]
    results = map_jobs(_decode_into, jobs, workers, "cache", "clip", progress)
    errors = {row: err for row, err, _ in results if err}
    return errors, sum(padded > 0 for _, _, padded in results)


# --- writing: shards of H.264 clips ----------------------------------------------------------------------


def encode_clip(frames: np.ndarray, fps: float, qp: int = 26) -> bytes:
    """uint8 (T, H, W, 3) -> MP4 bytes: H.264 yuv420p, one GOP (intra first frame), single-threaded (the same
    frames give the same bytes)."""
    from fractions import Fraction

    import av

    from .io.video import rgb_to_yuv420

    buf = io.BytesIO()
    rate = Fraction(fps).limit_denominator(1000)
    with av.open(buf, mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        # a constant quantiser and one thread everywhere: x264's rate control (floating point, whose rounding
        # mode other libraries in the process may change) and its threads otherwise vary the bytes between runs
        stream.options = {"qp": str(qp), "g": str(len(frames)), "preset": "veryfast", "threads": "1",
                          "x264-params": "threads=1:lookahead-threads=1:sliced-threads=0"}
        stream.thread_count = 1
        stream.codec_context.time_base = 1 / rate
        for i, f in enumerate(frames):  # our own RGB -> YUV 4:2:0 (FFmpeg's scaler varied), explicit timestamps
            vf = av.VideoFrame.from_ndarray(rgb_to_yuv420(f), format="yuv420p")
            vf.pts, vf.time_base = i, 1 / rate
            out.mux(stream.encode(vf))
        out.mux(stream.encode(None))
    return buf.getvalue()


def decode_clip(data: bytes) -> np.ndarray:
    """MP4 bytes -> uint8 (T, H, W, 3), with PyAV (or OpenCV through a temporary file where PyAV is missing)."""
    try:
        import av
    except ImportError:
        return _decode_cv2(data)
    with av.open(io.BytesIO(data)) as c:
        c.streams.video[0].thread_count = 1
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def _decode_cv2(data: bytes) -> np.ndarray:
    import tempfile

    import cv2

    with tempfile.NamedTemporaryFile(suffix=".mp4", dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as f:
        f.write(data)
        f.flush()
        cap, frames = cv2.VideoCapture(f.name), []
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    return np.stack(frames)


def plan_shards(videos: pl.DataFrame, clips_per_shard: int) -> list[dict]:
    """Deterministic shard plan: per split, clips in video_id order, `clips_per_shard` to a shard."""
    plan = []
    for split in SPLITS:
        ids = sorted(videos.filter(pl.col("split") == split)["video_id"].to_list())
        for n, i in enumerate(range(0, len(ids), clips_per_shard)):
            plan.append({"name": f"{split}-{n:06d}.tar", "split": split, "video_ids": ids[i:i + clips_per_shard]})
    return plan


def _write_shard(job) -> dict:
    """Decode, resample, encode and tar one shard's clips (a worker process); the tar is written beside its
    name and renamed into place, and its sha256 returned for the manifest."""
    import webdataset as wds

    from .io.video import VideoDecodeError, read_at_rate

    shard, rows, out, frames, fps, size, qp = job
    path = Path(out) / "shards" / shard["name"]
    tmp = path.with_name(f".{path.name}.part")
    errors, done, short = {}, 0, 0
    with wds.TarWriter(str(tmp), mtime=1) as sink:  # a fixed time stamp (0 means "now"): the same clips, the same bytes
        for r in rows:
            try:
                clip, padded = read_at_rate(r["path"], frames, r["fps"], fps, size=size)
                short += padded > 0
            except VideoDecodeError as e:
                errors[r["video_id"]] = str(e)
                continue
            meta = {k: r[k] for k in ("video_id", "study_id", "patient_id", "split", "row")}
            meta.update(view=r.get("pred_view") or r.get("view"))
            sink.write({"__key__": r["video_id"], "mp4": encode_clip(clip, fps, qp), "json": meta})
            done += 1
    tmp.replace(path)
    return {"name": shard["name"], "split": shard["split"], "clips": done, "bytes": path.stat().st_size,
            "sha256": sha256_file(path), "errors": errors, "short": short, "video_ids": shard["video_ids"]}


def write_shards(raw: str | Path, videos: pl.DataFrame, out: str | Path, frames: int, fps: float, size: int,
                 shard_mb: int, qp: int = 26, workers: int = 0, progress: bool = True) -> dict:
    """Write the clips of `videos` (with row, split, path, fps, study_id, patient_id) as shards of about
    `shard_mb` MB, in parallel. Resumable: shards already in out/manifest.json with a matching checksum are kept,
    the rest (re)written; the manifest is rewritten after every finished shard. Returns the manifest."""
    from .proc import map_jobs

    out = Path(out)
    (out / "shards").mkdir(parents=True, exist_ok=True)
    rows = {r["video_id"]: {**r, "path": str(Path(raw) / r["path"])} for r in videos.iter_rows(named=True)}
    sample = list(rows.values())[: min(8, len(rows))]
    per_clip = np.mean([len(_write_probe(r, frames, fps, size, qp)) for r in sample]) if sample else 1.0
    plan = plan_shards(videos, max(1, int(shard_mb * 1e6 // (per_clip + 1024))))
    manifest_path = out / "manifest.json"
    old = {s["name"]: s for s in json.loads(manifest_path.read_text())["shards"]} if manifest_path.is_file() else {}
    keep = {n: s for n, s in old.items() if (out / "shards" / n).is_file() and
            (out / "shards" / n).stat().st_size == s["bytes"] and sha256_file(out / "shards" / n) == s["sha256"]}
    todo = [s for s in plan if s["name"] not in keep or keep[s["name"]]["video_ids"] != s["video_ids"]]
    jobs = [(s, [rows[v] for v in s["video_ids"]], str(out), frames, fps, size, qp) for s in todo]
    done = dict(keep)

    def record(_, result):
        done[result["name"]] = result
        _write_manifest(manifest_path, plan, done, frames, fps, size, qp)

    map_jobs(_write_shard, jobs, workers, "shards", "shard", progress, each=record)
    _write_manifest(manifest_path, plan, done, frames, fps, size, qp)
    return json.loads(manifest_path.read_text())


def _write_probe(row: dict, frames: int, fps: float, size: int, qp: int) -> bytes:
    from .io.video import VideoDecodeError, read_at_rate

    try:
        return encode_clip(read_at_rate(row["path"], frames, row["fps"], fps, size=size)[0], fps, qp)
    except VideoDecodeError:
        return b""


def _write_manifest(path: Path, plan: list[dict], done: dict, frames: int, fps: float, size: int, qp: int) -> None:
    from .io.files import write_json

    shards = [done[s["name"]] for s in plan if s["name"] in done]
    write_json(path, {"frames": frames, "fps": fps, "size": size, "qp": qp, "planned": len(plan),
                      "complete": len(shards) == len(plan), "shards": shards})

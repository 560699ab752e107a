"""The sharded clip store: WebDataset tar shards of short-GOP H.264 clips, streamed into (multi-GPU) training.

At paper scale one raw uint8 array of every clip (747,900 x 32 x 224 x 224 x 3) would be 3.6 TB; the same clips as
H.264 (constant quantiser `cache.qp`, one GOP per clip, cropped to the sector and resampled to the training size and rate by
the same code as the memory-mapped cache) take a few dozen KB each. Layout of the store folder:

    shards/{split}-{n:06d}.tar   samples: KEY.mp4 (the clip), KEY.json (video_id, study_id, split, view, ...)
    manifest.json               every finished shard: clips, bytes, sha256 (a rerun keeps the shards it lists)
    index.parquet, tokens.npz, meta.json   as the memory-mapped cache (one interface: echolib.cache.open_store)

`StreamingClips` (a torch IterableDataset built on webdataset) reads a split's shards: shuffled by a seed and
the epoch, split by rank (DDP) and then by DataLoader worker, so that no clip is seen twice in an epoch across
ranks and every rank yields the same number of clips; a shuffle buffer mixes clips across shards; decoding runs
in the workers; the same seed and epoch give the same order. Evaluation and retrieval read the same shards.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
from pathlib import Path

import numpy as np
import polars as pl
import torch

from .cache import StoreBase, clip_item

SPLITS = ("train", "valid", "test")


# --- clips as H.264 -----------------------------------------------------------------------------------------


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


# --- writing ------------------------------------------------------------------------------------------------


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
            "sha256": _sha256(path), "errors": errors, "short": short, "video_ids": shard["video_ids"]}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
            (out / "shards" / n).stat().st_size == s["bytes"] and _sha256(out / "shards" / n) == s["sha256"]}
    todo = [s for s in plan if s["name"] not in keep or keep[s["name"]]["video_ids"] != s["video_ids"]]
    jobs = [(s, [rows[v] for v in s["video_ids"]], str(out), frames, fps, size, qp) for s in todo]
    done = dict(keep)

    def record(result):
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


# --- reading ------------------------------------------------------------------------------------------------


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


def rank_and_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def epoch_shards(shards: list[str], counts: dict[str, int], seed: int, epoch: int, rank: int, world: int
                 ) -> tuple[list[str], int]:
    """This rank's shards for `epoch` (one seeded shuffle shared by all ranks, then every world-th shard) and how
    many clips every rank yields: the smallest rank's count (of `counts`, the clips used per shard), so that ranks
    stay in step and no clip repeats within the epoch."""
    order = np.random.default_rng([seed, epoch]).permutation(len(shards))
    per_rank = min(sum(counts.get(shards[i], 0) for i in order[r::world]) for r in range(world))
    return [shards[i] for i in order[rank::world]], per_rank


class StreamingClips(torch.utils.data.IterableDataset):
    """(clip, report) items from a split's shards, as `ClipReportDataset` gives them from the memory-mapped cache.

    Set `epoch` before each epoch (`set_epoch`, as Lightning does for samplers). With a DataLoader of W workers,
    every worker reads its rank's shards and decodes every W-th clip; `shuffle_buffer` mixes clips across shards."""

    def __init__(self, store: ShardStore, split: str, views: list[str] | None, num_frames: int, train: bool,
                 seed: int = 0, shuffle_buffer: int = 256, shuffle_findings: bool = False, max_findings: int = 35,
                 by_rank: bool = True):
        super().__init__()
        self.by_rank = by_rank  # False: every rank reads every clip (validation whose embeddings are gathered)
        self.store, self.split, self.num_frames, self.train = store, split, num_frames, train
        self.views = set(views) if views else None
        self.seed, self.buffer, self.epoch = seed, shuffle_buffer if train else 0, 0
        self.shuffle_findings, self.max_findings = shuffle_findings, max_findings
        rows = store.select(split, views)
        self.keep = set(rows["video_id"].to_list())
        self.study_of = dict(zip(rows["video_id"].to_list(), rows["study_id"].to_list(), strict=True))
        self.shards = [s["name"] for s in store.shards if s["split"] == split]
        self.counts = dict(rows.group_by("shard").len().iter_rows())

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _plan(self, rank: int, world: int) -> tuple[list[str], int | None]:
        if not self.by_rank:
            rank, world = 0, 1
        if self.train:
            return epoch_shards(self.shards, self.counts, self.seed, self.epoch, rank, world)
        return self.shards[rank::world], None  # evaluation: every clip once, split by rank

    def __len__(self) -> int:
        mine, quota = self._plan(*rank_and_world())
        return quota if quota is not None else sum(self.counts.get(s, 0) for s in mine)

    def __iter__(self):
        import webdataset as wds

        rank, world = rank_and_world()
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        mine, quota = self._plan(rank, world)
        stream = [self.seed, self.epoch, rank, worker]
        gen = torch.Generator().manual_seed(int(np.random.SeedSequence(stream).generate_state(1)[0]))
        rng = np.random.default_rng(stream)
        paths = [str(self.store.path / "shards" / name) for name in mine]
        reader = wds.DataPipeline(wds.SimpleShardList(paths), wds.tarfile_to_samples())  # split here, not by wds
        ranks_clips = itertools.islice((s for s in reader if s["__key__"] in self.keep), quota)
        # every worker reads the rank's shards and takes every workers-th clip: an even split, each clip once
        samples = (s for i, s in enumerate(ranks_clips) if i % workers == worker)
        for sample in shuffled(samples, self.buffer, rng):
            frames = decode_clip(sample["mp4"])
            study = self.store.study_row[self.study_of[sample["__key__"]]]
            item = clip_item(self.store, frames, study, self.num_frames, self.train, self.shuffle_findings,
                             self.max_findings, gen)
            item["key"] = sample["__key__"]
            yield item


def shuffled(samples, buffer: int, rng: np.random.Generator):
    """A shuffle buffer of `buffer` items (0: the order as read)."""
    if buffer <= 1:
        yield from samples
        return
    pool = []
    for s in samples:
        pool.append(s)
        if len(pool) >= buffer:
            yield pool.pop(int(rng.integers(len(pool))))
    while pool:
        yield pool.pop(int(rng.integers(len(pool))))

"""Training data path: a clip cache (every kept clip decoded once into a memory-mapped uint8 array, reports
tokenized once) and the (clip, report) dataset read from it.

Clips are resampled in time to one rate (`cache.fps`, nearest frame from each clip's own frame rate), so that a
window of frames spans the same time in every clip and heart rate shows as it is. Reports are stored as
finding sentences, so that training can reorder them (the authors' loader shuffles a report's findings).

Cache layout (DIR): clips.u8 (N, F, S, S, 3) uint8, index.parquet (row, video_id, study_id, patient_id, split,
view, ...), tokens.npz (study_id, input_ids, attention_mask in each report's order; sent_ids, sent_bounds,
study_sents: the sentences), meta.json.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch.utils.data import Dataset

from .io.video import VideoDecodeError, read_at_rate


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


def build_cache(raw: str | Path, videos: pl.DataFrame, studies: pl.DataFrame, tokenizer, out: str | Path,
                frames: int, fps: float, size: int, max_length: int, workers: int = 0, progress: bool = True,
                store: str = "memmap", shard_mb: int = 100, qp: int = 26) -> dict:
    """Decode every clip in `videos` (kept clips with split + study_id + fps) at `fps` into a clip store (`store`:
    one memory-mapped array, or WebDataset shards of H.264, see echolib.store) and tokenize the studies' reports
    as finding sentences.

    `studies` needs study_id, patient_id, split, report. Clips that fail to decode are dropped from the index
    and counted in the returned summary (never silently); clips shorter than `frames` at `fps` are counted."""
    from .text import encode_findings

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    videos = videos.join(studies.select("study_id", "patient_id", "split"), on="study_id").with_row_index("row")
    shape = (videos.height, frames, size, size, 3)
    if store == "memmap":
        errors, short = _write_memmap(raw, videos, out / "clips.u8", shape, fps, size, workers, progress)
        extra = {"bytes": int((out / "clips.u8").stat().st_size)}
        index = videos.filter(~pl.col("row").is_in(list(errors)))
    else:
        from .store import write_shards

        manifest = write_shards(raw, videos, out, frames, fps, size, shard_mb, qp, workers, progress)
        errors = {vid: e for s in manifest["shards"] for vid, e in s["errors"].items()}
        short = sum(s["short"] for s in manifest["shards"])
        shard_of = {v: s["name"] for s in manifest["shards"] for v in s["video_ids"]}
        index = videos.filter(~pl.col("video_id").is_in(list(errors))).with_columns(
            shard=pl.col("video_id").replace_strict(shard_of))
        extra = {"bytes": sum(s["bytes"] for s in manifest["shards"]), "shards": len(manifest["shards"]),
                 "qp": qp, "shard_mb": shard_mb}
    index.drop("path").write_parquet(out / "index.parquet")
    if errors:
        rej = videos.filter(pl.col("video_id").is_in(list(errors)) if store != "memmap" else pl.col("row").is_in(
            list(errors)))
        pl.DataFrame({"video_id": rej["video_id"], "reason": list(errors.values())}).write_parquet(out / "rejected.parquet")
    used = studies.filter(pl.col("study_id").is_in(index["study_id"].unique().implode()))
    tok = encode_findings(tokenizer, used["report"].to_list(), max_length)
    np.savez(out / "tokens.npz", study_id=np.array(used["study_id"].to_list()),
             **{k: tok[k] for k in ("input_ids", "attention_mask", "sent_ids", "sent_bounds", "study_sents")})
    meta = {"store": store, "shape": list(shape), "frames": frames, "fps": fps, "size": size,
            "max_length": max_length, "clips": index.height, "decode_errors": len(errors),
            "clips_shorter_than_window": short, "studies": used.height, "truncated_reports": int(tok["truncated"]),
            "special_tokens": tok["special"],
            "findings_per_report": round(float(np.diff(tok["study_sents"]).mean()), 2) if used.height else 0,
            **extra, "bytes_per_clip": round(extra["bytes"] / max(index.height, 1), 1)}
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta


def _write_memmap(raw, videos: pl.DataFrame, mm_path: Path, shape: tuple, fps: float, size: int, workers: int,
                  progress: bool) -> tuple[dict, int]:
    from .progress import track

    np.memmap(mm_path, dtype=np.uint8, mode="w+", shape=shape).flush()
    jobs = [(str(Path(raw) / p), r, str(mm_path), shape, float(f), fps, size)
            for r, p, f in zip(videos["row"], videos["path"], videos["fps"], strict=True)]
    errors, short = {}, 0
    with ProcessPoolExecutor(workers or os.cpu_count() or 1) as pool:
        for row, err, padded in track(pool.map(_decode_into, jobs, chunksize=16), len(jobs), "cache", "clip",
                                      enabled=progress):
            if err:
                errors[row] = err
            short += padded > 0
    return errors, short


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


def open_store(path: str | Path) -> StoreBase:
    """The clip store the cache stage wrote at `path`: memory-mapped clips or WebDataset shards."""
    meta = Path(path) / "meta.json"
    if not meta.is_file():
        raise FileNotFoundError(f"{path}: no clip store here (run the cache stage first)")
    if json.loads(meta.read_text()).get("store") == "shards":
        from .store import ShardStore

        return ShardStore(path)
    return ClipCache(path)


def frame_indices(stored: int, num_frames: int, offset: int) -> np.ndarray:
    """`num_frames` indices spread over `stored` frames with stride stored // num_frames, starting at offset."""
    stride = max(1, stored // num_frames)
    return np.minimum(offset + stride * np.arange(num_frames), stored - 1)


def max_offset(stored: int, num_frames: int) -> int:
    stride = max(1, stored // num_frames)
    return max(0, stored - 1 - stride * (num_frames - 1))


def frames_tensor(clip: np.ndarray) -> torch.Tensor:
    """Decoded frames (T, H, W, C) uint8 -> a uint8 tensor (T, C, H, W), the layout `model_input` takes."""
    return torch.from_numpy(np.ascontiguousarray(clip.transpose(0, 3, 1, 2)))


def model_input(video: torch.Tensor, gain: torch.Tensor | None = None, bias: torch.Tensor | None = None):
    """uint8 frames (..., T, C, H, W) -> the float input every encoder sees: [0, 1], then the training
    augmentation (per-clip gain and bias) when given, then (x - 0.5) / 0.25. Training, evaluation and retrieval
    all go through here; it runs after the batch reaches the device (4x less to copy than float32)."""
    x = video.float().div_(255.0)
    if gain is not None:
        shape = (-1,) + (1,) * (x.ndim - 1)
        x = (x * gain.to(x).view(shape) + bias.to(x).view(shape)).clamp_(0, 1)
    return x.sub_(0.5).div_(0.25)


def clip_item(store: StoreBase, frames: np.ndarray, study: int, num_frames: int, train: bool,
              shuffle_findings: bool = False, max_findings: int = 35,
              generator: torch.Generator | None = None) -> dict:
    """One training or evaluation item from a clip's stored frames (F, H, W, 3): a window of `num_frames` (a
    random offset and a per-clip gain/bias when `train`), and its study's report (findings reordered when
    `train` and `shuffle_findings`)."""
    stored = len(frames)
    off = int(torch.randint(max_offset(stored, num_frames) + 1, (), generator=generator)) if train else 0
    video = frames_tensor(frames[frame_indices(stored, num_frames, off)])
    if train:
        gain = 0.85 + 0.3 * torch.rand((), generator=generator)
        bias = 0.05 * (torch.rand((), generator=generator) - 0.5)
    else:
        gain, bias = torch.tensor(1.0), torch.tensor(0.0)
    ids, mask = store.report(study, train and shuffle_findings, max_findings, generator)
    return {"video": video, "gain": gain, "bias": bias, "input_ids": ids, "attention_mask": mask,
            "study": torch.tensor(study)}


def item_generator(*key: int) -> torch.Generator:
    """A torch generator seeded from integers (seed, epoch, item ...)."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence(list(key)).generate_state(1, np.uint64)[0] >> 1))


class EpochSampler(torch.utils.data.Sampler):
    """A new permutation of `n` items every epoch, drawn from (seed, epoch) alone; `resume_at(batches)` makes the
    next epoch's iteration start after that many batches of `batch_size` (a run resumed mid-epoch)."""

    def __init__(self, n: int, seed: int, batch_size: int):
        self.n, self.seed, self.batch_size, self.epoch, self.skip = n, seed, batch_size, 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume_at(self, batches: int) -> None:
        self.skip = batches

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        start, self.skip = self.skip * self.batch_size, 0
        yield from order[start:].tolist()


class ClipReportDataset(Dataset):
    """One (clip, report) pair per item from a memory-mapped cache, as in the paper; random temporal offset and
    light augmentation when `train`, deterministic otherwise. Items carry `study` (index into the store's studies)
    for retrieval.

    `video` is uint8 (T, C, H, W) straight from the cache; `gain`/`bias` are the clip's augmentation (1 and 0
    when not training). `model_input` turns them into the encoder's float input. With `shuffle_findings` (training
    only) the report's finding sentences come in a new random order, at most `max_findings` of them."""

    def __init__(self, cache: ClipCache, rows: pl.DataFrame, num_frames: int, train: bool,
                 shuffle_findings: bool = False, max_findings: int = 35, seed: int = 0):
        self.cache, self.num_frames, self.train = cache, num_frames, train
        self.shuffle, self.max_findings, self.seed, self.epoch = train and shuffle_findings, max_findings, seed, 0
        self.rows = rows["row"].to_numpy()
        self.study = np.array([cache.study_row[s] for s in rows["study_id"]])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        # a training item's random draws (window, gain, finding order) come from (seed, epoch, item) alone, so
        # that a run resumed mid-epoch draws exactly what the uninterrupted run drew
        gen = item_generator(self.seed, self.epoch, i) if self.train else None
        return clip_item(self.cache, self.cache.clips[self.rows[i]], int(self.study[i]), self.num_frames, self.train,
                         self.shuffle, self.max_findings, gen)

    def report(self, s: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cache.report(s, self.shuffle, self.max_findings)


def cache_inputs(raw: str | Path, data: str | Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The clips to cache and their studies: kept clips (data/filtered) of studies the split uses (data/split),
    studies with study_id, report, patient_id, split."""
    split = pl.read_parquet(Path(data) / "split" / "studies.parquet").filter(pl.col("excluded") == "")
    studies = pl.read_parquet(Path(raw) / "studies.parquet").select("study_id", "report").join(
        split.select("study_id", "patient_id", "split"), on="study_id")
    videos = pl.read_parquet(Path(data) / "filtered" / "videos.parquet").filter(pl.col("kept"))
    return videos.filter(pl.col("study_id").is_in(studies["study_id"].implode())), studies


def run_cache(ctx) -> dict:
    """Stage `cache`: every kept clip decoded once at `cache.fps` (params `cache`) and every report tokenized
    once as finding sentences (text.max_length) into data/cache; returns metrics/cache.json."""
    from .text import load_tokenizer

    videos, studies = cache_inputs(ctx.raw, ctx.data)
    c = ctx.cache
    meta = build_cache(ctx.raw, videos, studies, load_tokenizer(ctx.data / "tokenizer"), ctx.out("cache"), c.frames,
                       c.fps, c.size, ctx.text.max_length, ctx.base.workers, store=c.store, shard_mb=c.shard_mb,
                       qp=c.qp)
    if meta["clips"] == 0 or meta["decode_errors"]:
        raise ValueError(f"cache: {meta['clips']} clips cached, {meta['decode_errors']} could not be decoded "
                         f"(see {ctx.out('cache') / 'rejected.parquet'})")
    return meta

"""Training data path: a clip cache (every kept clip decoded once into a memory-mapped uint8 array, reports
tokenized once) and the (clip, report) dataset read from it.

Cache layout (DIR): clips.u8 (N, F, S, S, 3) uint8, index.parquet (row, video_id, study_id, patient_id, split,
view, ...), tokens.npz (study_id, input_ids, attention_mask), meta.json.
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

from .io.video import VideoDecodeError, read_clip


def _decode_into(job):
    path, row, mm_path, shape, frames, stride, size = job
    mm = np.memmap(mm_path, dtype=np.uint8, mode="r+", shape=shape)
    try:
        mm[row] = read_clip(path, frames, stride=stride, size=size)
        err = ""
    except VideoDecodeError as e:
        err = str(e)
    mm.flush()
    del mm
    return row, err


def build_cache(raw: str | Path, videos: pl.DataFrame, studies: pl.DataFrame, tokenizer, out: str | Path,
                frames: int, stride: int, size: int, max_length: int, workers: int = 0, progress: bool = True) -> dict:
    """Decode every clip in `videos` (kept clips with split + study_id) and tokenize the studies' reports.

    `studies` needs study_id, patient_id, split, report. Clips that fail to decode are dropped from the index
    and counted in the returned summary (never silently)."""
    from tqdm import tqdm

    from .text import encode

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    videos = videos.join(studies.select("study_id", "patient_id", "split"), on="study_id").with_row_index("row")
    shape = (videos.height, frames, size, size, 3)
    mm_path = out / "clips.u8"
    np.memmap(mm_path, dtype=np.uint8, mode="w+", shape=shape).flush()
    jobs = [(str(Path(raw) / p), r, str(mm_path), shape, frames, stride, size)
            for r, p in zip(videos["row"], videos["path"], strict=True)]
    errors = {}
    with ProcessPoolExecutor(workers or os.cpu_count() or 1) as pool:
        for row, err in tqdm(pool.map(_decode_into, jobs, chunksize=16), total=len(jobs), desc="cache",
                             disable=not progress, mininterval=10):
            if err:
                errors[row] = err
    index = videos.filter(~pl.col("row").is_in(list(errors)))
    index.drop("path").write_parquet(out / "index.parquet")
    used = studies.filter(pl.col("study_id").is_in(index["study_id"].unique().implode()))
    ids, mask, truncated = encode(tokenizer, used["report"].to_list(), max_length)
    np.savez(out / "tokens.npz", study_id=np.array(used["study_id"].to_list()), input_ids=ids.numpy().astype(np.int32),
             attention_mask=mask.numpy().astype(np.int8))
    meta = {"shape": list(shape), "frames": frames, "stride": stride, "size": size, "max_length": max_length,
            "clips": index.height, "decode_errors": len(errors), "studies": used.height,
            "truncated_reports": int(truncated), "bytes": int(mm_path.stat().st_size)}
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    if errors:
        pl.DataFrame({"video_id": videos.filter(pl.col("row").is_in(list(errors)))["video_id"],
                      "reason": list(errors.values())}).write_parquet(out / "rejected.parquet")
    return meta


class ClipCache:
    """Read-only view of a cache directory."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        meta_path = self.path / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{self.path}: no clip cache here (run the cache stage first)")
        self.meta = json.loads(meta_path.read_text())
        self.index = pl.read_parquet(self.path / "index.parquet")
        tok = np.load(self.path / "tokens.npz")
        self.study_ids = tok["study_id"].tolist()
        self.input_ids, self.attention_mask = tok["input_ids"], tok["attention_mask"]
        self.study_row = {s: i for i, s in enumerate(self.study_ids)}
        self._clips = None

    @property
    def clips(self) -> np.memmap:
        if self._clips is None:  # opened lazily, so each dataloader worker maps it itself
            self._clips = np.memmap(self.path / "clips.u8", dtype=np.uint8, mode="r", shape=tuple(self.meta["shape"]))
        return self._clips

    def select(self, split: str, views: list[str] | None = None, view_col: str = "pred_view") -> pl.DataFrame:
        sel = self.index.filter(pl.col("split") == split)
        if views is not None:
            col = view_col if view_col in sel.columns else "view"
            sel = sel.filter(pl.col(col).is_in(views))
        return sel


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


class ClipReportDataset(Dataset):
    """One (clip, report) pair per item, as in the paper; random temporal offset and light augmentation when
    `train`, deterministic otherwise. Items carry `study` (index into the cache's studies) for retrieval.

    `video` is uint8 (T, C, H, W) straight from the cache; `gain`/`bias` are the clip's augmentation (1 and 0
    when not training). `model_input` turns them into the encoder's float input."""

    def __init__(self, cache: ClipCache, rows: pl.DataFrame, num_frames: int, train: bool):
        self.cache, self.num_frames, self.train = cache, num_frames, train
        self.rows = rows["row"].to_numpy()
        self.study = np.array([cache.study_row[s] for s in rows["study_id"]])

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        stored = self.cache.meta["frames"]
        off = int(torch.randint(max_offset(stored, self.num_frames) + 1, ()).item()) if self.train else 0
        clip = self.cache.clips[self.rows[i]][frame_indices(stored, self.num_frames, off)]
        video = frames_tensor(clip)
        if self.train:
            gain, bias = 0.85 + 0.3 * torch.rand(()), 0.05 * (torch.rand(()) - 0.5)
        else:
            gain, bias = torch.tensor(1.0), torch.tensor(0.0)
        s = self.study[i]
        return {"video": video, "gain": gain, "bias": bias,
                "input_ids": torch.from_numpy(self.cache.input_ids[s].astype(np.int64)),
                "attention_mask": torch.from_numpy(self.cache.attention_mask[s].astype(np.int64)),
                "study": torch.tensor(s)}


def cache_inputs(raw: str | Path, data: str | Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The clips to cache and their studies: kept clips (data/filtered) of studies the split uses (data/split),
    studies with study_id, report, patient_id, split."""
    split = pl.read_parquet(Path(data) / "split" / "studies.parquet").filter(pl.col("excluded") == "")
    studies = pl.read_parquet(Path(raw) / "studies.parquet").select("study_id", "report").join(
        split.select("study_id", "patient_id", "split"), on="study_id")
    videos = pl.read_parquet(Path(data) / "filtered" / "videos.parquet").filter(pl.col("kept"))
    return videos.filter(pl.col("study_id").is_in(studies["study_id"].implode())), studies


def run_cache(ctx) -> dict:
    """Stage `cache`: every kept clip decoded once (params `cache`) and every report tokenized once
    (text.max_length) into data/cache; returns metrics/cache.json."""
    from .text import load_tokenizer

    videos, studies = cache_inputs(ctx.raw, ctx.data)
    c = ctx.cache
    meta = build_cache(ctx.raw, videos, studies, load_tokenizer(ctx.data / "tokenizer"), ctx.out("cache"), c.frames,
                       c.stride, c.size, ctx.text.max_length, ctx.base.workers)
    if meta["clips"] == 0 or meta["decode_errors"]:
        raise ValueError(f"cache: {meta['clips']} clips cached, {meta['decode_errors']} could not be decoded "
                         f"(see {ctx.out('cache') / 'rejected.parquet'})")
    return meta

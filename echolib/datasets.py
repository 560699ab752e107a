"""The (clip, report) datasets training, evaluation and pretraining read from a clip store (`echolib.store`).

One item is one clip and its study's report, as in the paper: a window of the clip's stored frames (a random
offset and a per-clip gain/bias in training), and the report's tokens (its finding sentences reordered at random
in training, as the authors' loader does). `ClipReportDataset` reads the memory-mapped store by index with an
`EpochSampler` (resumable mid-epoch); `StreamingClips` streams the shards, split by rank and DataLoader worker.
`model_input` turns the uint8 frames into every encoder's float input, after the batch reaches the device.
"""

from __future__ import annotations

import itertools
import os

import numpy as np
import polars as pl
import torch
from torch.utils.data import Dataset

from .store import ClipCache, ShardStore, StoreBase, decode_clip


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


# --- streaming the shards ----------------------------------------------------------------------------


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


def worker_context(store) -> str | None:
    """The start method of DataLoader workers reading `store`: a sharded store's workers decode video (PyAV) and
    hold polars tables, whose thread pools a fork copies mid-lock (a worker then waits on a futex forever), so they
    start from a clean forkserver; the memory-mapped cache keeps fork, which shares its pages for free."""
    return "forkserver" if getattr(store, "kind", None) == "shards" else None


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

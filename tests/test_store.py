"""The sharded clip store: H.264 round trip, shards with a manifest, resuming, the streaming loader split by rank
and worker, determinism per seed and epoch, and training/evaluation reading it like the memory-mapped cache."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch

from echolib.cache import build_cache, cache_inputs
from echolib.datasets import StreamingClips, epoch_shards, worker_context
from echolib.store import decode_clip, encode_clip, open_store


@pytest.fixture(scope="module")
def shard_store(tiny_project, tmp_path_factory):
    from echolib.text import load_tokenizer

    out = tmp_path_factory.mktemp("shards") / "cache"
    videos, studies = cache_inputs(tiny_project / "data" / "raw", tiny_project / "data")
    meta = build_cache(tiny_project / "data" / "raw", videos, studies, load_tokenizer(tiny_project / "data" / "tokenizer"),
                       out, frames=10, fps=8.0, size=64, max_length=256, workers=2, progress=False, store="shards",
                       shard_mb=0.03)
    return out, meta


def test_h264_round_trip_is_close_and_small():
    from echolib.synth.render import ClipSpec, render_clip
    from tests.test_synth import NORMAL

    clip = render_clip(NORMAL, ClipSpec("4CH", True, 0.8, 8.0, 10, 64, 3))
    data = encode_clip(clip, 8.0)
    back = decode_clip(data)
    assert back.shape == clip.shape and len(data) < clip.nbytes / 5
    psnr = 10 * np.log10(255**2 / np.mean((back.astype(float) - clip) ** 2))
    assert psnr > 30, psnr


def test_shards_hold_every_clip_once_with_checksums(shard_store, tiny_project):
    out, meta = shard_store
    store, cache = open_store(out), open_store(tiny_project / "data" / "cache")
    assert store.kind == "shards" and cache.kind == "memmap" and meta["shards"] > 3
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and sum(s["clips"] for s in manifest["shards"]) == store.index.height == cache.index.height
    assert {s["split"] for s in manifest["shards"]} == {"train", "valid", "test"}
    # a clip decodes to the memory-mapped cache's frames, up to the codec's error
    row = store.index.row(0, named=True)
    (r, frames), = list(store.iter_frames(store.index.head(1)))
    ref = cache.clips[cache.index.filter(pl.col("video_id") == row["video_id"])["row"].item()]
    assert r == row["row"] and frames.shape == ref.shape
    assert np.abs(frames.astype(float) - ref).mean() < 6
    assert meta["bytes_per_clip"] < cache.meta["bytes"] / cache.index.height / 5


def test_a_rerun_keeps_finished_shards_and_rewrites_missing_or_corrupt_ones(shard_store, tiny_project, tmp_path):
    import shutil

    from echolib.store import write_shards

    out, _ = shard_store
    copy = tmp_path / "cache"
    shutil.copytree(out, copy)
    names = sorted(p.name for p in (copy / "shards").glob("*.tar"))
    gone, corrupt, kept = names[0], names[1], names[2]
    (copy / "shards" / gone).unlink()
    (copy / "shards" / corrupt).write_bytes(b"not a tar")
    stamp = (copy / "shards" / kept).stat().st_mtime_ns
    videos, studies = cache_inputs(tiny_project / "data" / "raw", tiny_project / "data")
    videos = videos.join(studies.select("study_id", "patient_id", "split"), on="study_id").with_row_index("row")
    manifest = write_shards(tiny_project / "data" / "raw", videos, copy, 10, 8.0, 64, 0.03, workers=1, progress=False)
    assert manifest["complete"] and (copy / "shards" / gone).is_file()
    assert (copy / "shards" / kept).stat().st_mtime_ns == stamp  # untouched
    old = {s["name"]: s["sha256"] for s in json.loads((out / "manifest.json").read_text())["shards"]}
    assert {s["name"]: s["sha256"] for s in manifest["shards"]} == old  # byte-identical shards again


def _keys(ds):
    return [item["key"] for item in ds]


def test_streaming_is_deterministic_per_seed_and_epoch_and_split_by_rank(shard_store, monkeypatch):
    store = open_store(shard_store[0])
    ds = StreamingClips(store, "train", None, 8, True, seed=3, shuffle_buffer=8)
    a, b = _keys(ds), _keys(ds)
    ds.set_epoch(1)
    c = _keys(ds)
    assert a == b and sorted(a) == sorted(c) and a != c  # same seed and epoch: same order; next epoch: another
    assert sorted(a) == sorted(store.select("train")["video_id"].to_list()) and len(a) == len(ds)
    per_rank = {}
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        per_rank[rank] = _keys(ds)
    assert not set(per_rank[0]) & set(per_rank[1]) and len(per_rank[0]) == len(per_rank[1]) == len(ds)
    shards = [s["name"] for s in store.shards if s["split"] == "train"]
    mine0, quota = epoch_shards(shards, ds.counts, 3, 1, 0, 2)
    assert quota == min(sum(ds.counts[s] for s in mine0), sum(ds.counts[s] for s in set(shards) - set(mine0)))


def _batch_keys(batch):
    return [x["key"] for x in batch]


def test_workers_split_a_ranks_shards(shard_store):
    """Two DataLoader workers started as training starts them (a forkserver: forked ones hung on a lock copied
    from a thread pool, once in a loaded CI run)."""
    store = open_store(shard_store[0])
    ds = StreamingClips(store, "train", ["4CH", "LAX"], 8, True, seed=0)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, collate_fn=_batch_keys,
                                         multiprocessing_context=worker_context(store), timeout=120)
    seen = [k for batch in loader for k in batch]
    assert sorted(seen) == sorted(_keys(ds)) == sorted(store.select("train", ["4CH", "LAX"])["video_id"].to_list())


@pytest.mark.slow
def test_two_process_ddp_ranks_read_disjoint_clips_whose_union_is_the_epoch(shard_store, tmp_path):
    """torch.distributed (gloo) with 2 CPU processes, as under torchrun: every rank streams its shards."""
    import subprocess
    import sys

    code = f"""
import json, os, torch.distributed as dist
from echolib.datasets import StreamingClips
from echolib.store import open_store
dist.init_process_group("gloo")
ds = StreamingClips(open_store({str(shard_store[0])!r}), "train", None, 8, True, seed=5)
keys = [x["key"] for x in ds]
out = [None] * dist.get_world_size()
dist.all_gather_object(out, keys)
if dist.get_rank() == 0:
    json.dump(out, open({str(tmp_path / 'keys.json')!r}, "w"))
dist.destroy_process_group()
"""
    script = tmp_path / "ddp.py"
    script.write_text(code)
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--master-port=29531",
                        str(script)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    k0, k1 = json.loads((tmp_path / "keys.json").read_text())
    store = open_store(shard_store[0])
    shards = [s["name"] for s in store.shards if s["split"] == "train"]
    counts = dict(store.select("train").group_by("shard").len().iter_rows())
    quota = epoch_shards(shards, counts, 5, 0, 0, 2)[1]
    assert not set(k0) & set(k1) and len(k0) == len(k1) == quota
    assert set(k0) | set(k1) <= set(store.select("train")["video_id"].to_list())


def test_training_and_evaluation_read_shards_like_the_cache(shard_store, tiny_project, tmp_path):
    import shutil

    import yaml

    from echolib.evaluate import embed_clips
    from echolib.models import load_clip_model
    from echolib.train import train_run

    proj = tmp_path / "proj"
    shutil.copytree(tiny_project, proj, symlinks=True)
    shutil.rmtree(proj / "data" / "cache")
    shutil.copytree(shard_store[0], proj / "data" / "cache")
    params = yaml.safe_load((proj / "params.yaml").read_text())
    params["cache"]["store"] = "shards"
    (proj / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
    summary = train_run("SingleVideo", 0, proj / "params.yaml", out_root=proj / "runs")
    assert summary["global_steps"] == params["train"]["steps"] and summary["best_val_mcmrr"] > 0
    model, frames, _ = load_clip_model(proj / "runs" / "SingleVideo" / "seed0" / "model.pt")
    store = open_store(proj / "data" / "cache")
    rows = store.select("test", ["4CH"])
    emb = embed_clips(model, store, rows, frames)
    assert emb.shape[0] == rows.height and torch.isfinite(emb).all()


def test_pretraining_streams_its_clips_from_shards_once_per_epoch_split_by_worker(shard_store, monkeypatch):
    """Self-supervised pretraining on the sharded store: the clips of the pretraining patients (half the training
    patients here), every one once per epoch, in another order the next epoch, and two workers' shares disjoint
    halves of an epoch; each clip as the store decodes it."""
    import types

    from echolib.pretrain import ShardClips, pretrain_rows

    store = open_store(shard_store[0])
    rows = pretrain_rows(store.index, 0.5, 0)
    want = store.index[rows]["video_id"].to_list()
    assert 0 < len(want) < store.index.filter(pl.col("split") == "train").height
    it = iter(ShardClips(store, want, seed=3, buffer=8))
    first, second = [next(it) for _ in want], [next(it)[0] for _ in want]
    assert sorted(k for k, _ in first) == sorted(want) == sorted(second) and [k for k, _ in first] != second
    key, clip = first[0]
    (_, expected), = store.iter_frames(store.index.filter(pl.col("video_id") == key))
    assert np.array_equal(clip, expected)
    parts = []
    for w in (0, 1):
        monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda w=w: types.SimpleNamespace(id=w, num_workers=2))
        it = iter(ShardClips(store, want, seed=3, buffer=8))
        parts.append([next(it)[0] for _ in range((len(want) + 1 - w) // 2)])
    assert not set(parts[0]) & set(parts[1]) and sorted(parts[0] + parts[1]) == sorted(want)
    # one clip over two workers: the worker without one stops instead of stalling the loader
    monkeypatch.undo()
    loader = torch.utils.data.DataLoader(ShardClips(store, want[:1], seed=3), batch_size=2, num_workers=2,
                                         collate_fn=list, timeout=60,  # a stall fails after a minute
                                         multiprocessing_context=worker_context(store))  # as pretraining starts them
    batches = iter(loader)  # the first batch is worker 0's; the next would be worker 1's, which has no clip
    assert [[k for k, _ in next(batches)] for _ in range(2)] == [want[:1] * 2] * 2


def test_pretrain_encoder_reads_the_sharded_store_with_worker_processes(shard_store, tiny_project, tmp_path):
    import dataclasses

    from echolib import config as C
    from echolib.accel import device_for
    from echolib.models import create_video_encoder
    from echolib.models.pretrained import load_weights
    from echolib.pretrain import pretrain_encoder, pretrain_rows

    p = C.load(tiny_project / "params.yaml")
    cfg = C.PretrainConfig.from_dict(dict(steps=3, batch_size=4, lr=1e-3, temperature=0.1, mask_ratio=0.9))
    s = pretrain_encoder("convnext_st", "tiny", shard_store[0], tmp_path / "ssl", 0.5, cfg, 0,
                         dataclasses.replace(p.train, num_workers=2, accelerator="cpu"))
    store = open_store(shard_store[0])
    assert (s["store"], s["device"], s["splits_seen"]) == ("shards", "cpu", ["train"])
    assert s["clips"] == len(pretrain_rows(store.index, 0.5, 0)) and np.isfinite(s["final_loss"])
    assert load_weights(create_video_encoder("convnext_st"), tmp_path / "ssl" / "encoder.pt")["layout"] == "echolib-ssl"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="^train.accelerator is gpu, but torch finds no CUDA device here$"):
            device_for(dataclasses.replace(p.train, accelerator="gpu"))
        assert device_for(dataclasses.replace(p.train, accelerator="auto", precision="auto")) == (torch.device("cpu"), None)

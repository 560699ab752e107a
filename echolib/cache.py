"""The cache stage: every kept clip decoded once, resampled in time to one rate (`cache.fps`, nearest frame from
each clip's own frame rate, so that a window of frames spans the same time in every clip and heart rate shows as
it is) and in size, into a clip store (`echolib.store`: a memory-mapped array or WebDataset shards); every report
tokenized once as finding sentences, so that training can reorder them (the authors' loader shuffles a report's
findings)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from .store import write_memmap, write_shards


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
        errors, short = write_memmap(raw, videos, out / "clips.u8", shape, fps, size, workers, progress)
        extra = {"bytes": int((out / "clips.u8").stat().st_size)}
        index = videos.filter(~pl.col("row").is_in(list(errors)))
    else:
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

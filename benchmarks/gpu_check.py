"""The GPU check (issue #16): the paper-profile video model at the paper's shapes, bf16, fed from the sharded store.

    python benchmarks/gpu_check.py --project .gpucheck/project --steps 300 --batch 16 --workers 12 --out OUT

1. Grows the bundle's training shards to `--clips` samples (the same H.264 clips under new keys: decoding costs what
   it costs at any content), then trains MultiVideo's model (ViViT-B, 32 x 224, 12-layer BERT, CLIP loss, AdamW,
   bf16 autocast) for `--steps` steps fed by `StreamingClips` in `--workers` DataLoader workers, and prints step time,
   clips/s, model FLOPs utilisation (FLOPs of one step counted by torch's FlopCounterMode, over the card's dense
   bf16 peak), peak memory and the fraction of time spent waiting for data.
2. Runs the same through `python -m echolib.train --run MultiVideo` (Lightning, DDP over every visible GPU) for
   `--train-steps` steps and reports its throughput.
3. With `--pretrain-steps N`: self-supervised pretraining (`echolib.pretrain.pretrain_encoder`, what `init: ssl` and
   the fig2 stage run) of each encoder of `--pretrain` (NAME:BATCH, paper sizes) on the GPU from the sharded store
   with `--workers` decoding workers: clips/s, peak memory, first and last loss; a batch that runs out of memory is
   recorded and the next smaller one of `--pretrain` tried.
Writes OUT/gpu_check.json. On a CPU (`--device cpu`, tiny sizes) it checks that the script itself works.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
import torch  # noqa: E402

#: dense bf16 peak of the card (vendor figures, SXM parts); MFU is reported against it
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


def grow_shards(cache: Path, clips: int) -> int:
    """Copy the training samples under new keys until the store's training split holds `clips` samples."""
    import webdataset as wds

    from echolib.io.files import write_json

    manifest = json.loads((cache / "manifest.json").read_text())
    index = pl.read_parquet(cache / "index.parquet")
    train = index.filter(pl.col("split") == "train")
    if train.height >= clips:
        return train.height
    samples = [s for s in wds.DataPipeline(wds.SimpleShardList(
        [str(cache / "shards" / s["name"]) for s in manifest["shards"] if s["split"] == "train"]),
        wds.tarfile_to_samples())]
    by_key = {s["__key__"]: s for s in samples}
    rows, n, shard, per_shard = [], 0, 0, 256
    base = train.to_dicts()
    while train.height + n < clips:
        name = f"grown-{shard:06d}.tar"
        with wds.TarWriter(str(cache / "shards" / name), mtime=1) as sink:
            for _ in range(min(per_shard, clips - train.height - n)):
                src = base[n % len(base)]
                key = f"{src['video_id']}-g{n}"
                meta = json.loads(by_key[src["video_id"]]["json"])
                sink.write({"__key__": key, "mp4": by_key[src["video_id"]]["mp4"], "json": {**meta, "video_id": key}})
                rows.append({**src, "video_id": key, "shard": name, "row": index.height + n})
                n += 1
        manifest["shards"].append({"name": name, "split": "train", "clips": per_shard, "bytes": 0, "sha256": "",
                                   "errors": {}, "short": 0, "video_ids": []})
        shard += 1
    pl.concat([index, pl.DataFrame(rows, schema=index.schema)]).write_parquet(cache / "index.parquet")
    write_json(cache / "manifest.json", manifest)
    return train.height + n


def flops_of_step(model, loss_fn, batch: dict, device: str) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        loss = step_loss(model, loss_fn, batch, device)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def step_loss(model, loss_fn, batch: dict, device: str):
    from echolib.datasets import model_input

    video = model_input(batch["video"].to(device, non_blocking=True), batch["gain"].to(device),
                        batch["bias"].to(device))
    with torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16,
                        enabled=device.startswith("cuda")):
        v, t, scale = model(video, batch["input_ids"].to(device), batch["attention_mask"].to(device))
        return loss_fn(v.float(), t.float(), scale.float())


def direct(args, project: Path, params, device: str) -> dict:
    """Part 1: a plain PyTorch loop over the streaming loader."""
    from echolib.datasets import StreamingClips
    from echolib.lit import collate_trim, param_groups
    from echolib.loss import ClipLoss
    from echolib.models import build_model
    from echolib.store import open_store
    from echolib.text import vocab_size

    data = ROOT / params.base.data_root
    store = open_store(data / "cache")
    run = params.runs["MultiVideo"]
    model, frames = build_model(run, vocab_size=vocab_size(data / "tokenizer"), stored_frames=store.meta["frames"],
                                max_length=params.text.max_length, text_layers=params.text.layers)
    model = model.to(device)
    ds = StreamingClips(store, "train", list(run.views), frames, True, seed=0, shuffle_buffer=64)
    loader = torch.utils.data.DataLoader(ds, batch_size=args.batch, num_workers=args.workers, collate_fn=collate_trim,
                                         pin_memory=device.startswith("cuda"), drop_last=True,
                                         persistent_workers=False, prefetch_factor=4 if args.workers else None)
    opt = torch.optim.AdamW(param_groups(model, 0.1), lr=1e-5, fused=device.startswith("cuda"))
    loss_fn = ClipLoss()
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    it, epoch, waits, steps_t, flops = iter(loader), 0, [], [], None

    def next_batch():
        nonlocal it, epoch
        try:
            return next(it)
        except StopIteration:
            epoch += 1
            ds.set_epoch(epoch)
            it = iter(loader)
            return next(it)

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    for step in range(args.steps + args.warmup):
        t0 = time.perf_counter()
        batch = next_batch()
        t1 = time.perf_counter()
        if flops is None:
            flops = flops_of_step(model, loss_fn, batch, device)
        loss = step_loss(model, loss_fn, batch, device)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync()
        t2 = time.perf_counter()
        if step >= args.warmup:
            waits.append(t1 - t0)
            steps_t.append(t2 - t0)
    step_s = float(np.mean(steps_t))
    name = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
    peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
    return {
        "device": name, "model": f"{run.encoder} ({run.size}) + BERT {params.text.layers} layers",
        "frames": frames, "size": store.meta["size"], "batch": args.batch, "workers": args.workers,
        "steps": len(steps_t), "step_s": round(step_s, 4), "step_s_median": round(float(np.median(steps_t)), 4),
        "clips_per_s": round(args.batch / step_s, 1), "data_wait_fraction": round(float(np.sum(waits) / np.sum(steps_t)), 4),
        "flops_per_step": flops, "achieved_tflops": round(flops / step_s / 1e12, 1),
        "mfu": round(flops / step_s / peak, 3) if peak else None,
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.startswith("cuda") else None,
        "final_loss": float(loss.detach()),
    }


def through_train(args, project: Path) -> dict:
    """Part 2: `python -m echolib.train` (Lightning; DDP on every visible GPU)."""
    import yaml

    params = yaml.safe_load((project / "params.yaml").read_text())
    gpus = torch.cuda.device_count()
    params["train"].update(devices=max(gpus, 1), strategy="ddp" if gpus > 1 else "auto", steps=args.train_steps,
                           val_check_clips=args.train_steps * params["train"]["batch_size"] * max(gpus, 1),
                           accelerator="gpu" if gpus else "cpu", num_workers=args.workers)
    params["train"]["batch_size"] = args.batch  # per process (GPU), as in the direct loop
    path = project / "params_check.yaml"
    path.write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    t0 = time.time()
    r = subprocess.run([sys.executable, "-m", "echolib.train", "--run", "MultiVideo", "--seed", "0", "--params",
                        str(path), "--out-root", str(project / "runs")],
                       cwd=ROOT, capture_output=True, text=True, env=env, timeout=args.train_timeout)
    out = {"returncode": r.returncode, "wall_s": round(time.time() - t0, 1)}
    lines = [line for line in r.stdout.splitlines() if line.startswith("{")]
    if r.returncode == 0 and lines:
        s = json.loads(lines[-1])
        out.update({k: s[k] for k in ("global_steps", "train_seconds", "clips_per_second", "precision",
                                      "best_val_mcmrr")})
        out["devices"] = torch.cuda.device_count()
    else:
        out["tail"] = (r.stdout[-1500:] + r.stderr[-2500:])
    return out


def pretraining(args, params) -> dict:
    """Part 3: self-supervised pretraining of paper-size encoders on the GPU, fed from the sharded store."""
    import dataclasses
    import tempfile

    from echolib.pretrain import pretrain_encoder

    cuda = torch.cuda.is_available()
    train = dataclasses.replace(params.train, accelerator="gpu" if cuda else "cpu", num_workers=args.workers)
    results, done = {}, set()
    for item in args.pretrain.split(","):
        name, batch = item.split(":")
        if name in done:
            continue  # a larger batch of this encoder ran: the smaller ones are only for running out of memory
        cfg = dataclasses.replace(params.pretrain, steps=args.pretrain_steps, batch_size=int(batch))
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        try:
            with tempfile.TemporaryDirectory() as tmp:  # the encoder file stays on the machine
                s = pretrain_encoder(name, args.pretrain_size, ROOT / params.base.data_root / "cache", tmp, 1.0, cfg,
                                     0, train)
            done.add(name)
            results[item] = {
                **{k: s[k] for k in ("objective", "device", "store", "clips", "seconds", "clips_per_second",
                                      "first_loss", "final_loss")},
                "size": args.pretrain_size, "batch": int(batch), "steps": args.pretrain_steps,
                "workers": args.workers,
                "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None}
        except torch.OutOfMemoryError as e:
            results[item] = {"error": "out of memory", "detail": str(e)[:300]}
        except Exception as e:  # recorded; the other encoders still run
            done.add(name)
            results[item] = {"error": f"{type(e).__name__}: {e}"[:1500]}
        print(item, json.dumps(results[item]), flush=True)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--project", default=".gpucheck/project")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=12)
    ap.add_argument("--clips", type=int, default=6000, help="grow the training shards to this many samples")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--train-steps", type=int, default=100)
    ap.add_argument("--train-timeout", type=int, default=240)
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--skip-direct", action="store_true")
    ap.add_argument("--pretrain-steps", type=int, default=0, help="part 3 (0: skipped)")
    ap.add_argument("--pretrain", default="videomae:32,convnext:32,vivit:32,vivit:16,vivit:8",
                    help="ENCODER:BATCH, ...: an encoder's smaller batches are tried only after running out of memory")
    ap.add_argument("--pretrain-size", default="paper", choices=["tiny", "paper"])
    ap.add_argument("--out", default=os.environ.get("OUT", "benchmarks/results"))
    a = ap.parse_args()
    from echolib import config

    project = Path(a.project).resolve()
    params = config.load(project / "params.yaml")
    torch.backends.cuda.matmul.allow_tf32 = True
    result = {"train_clips": grow_shards(ROOT / params.base.data_root / "cache", a.clips)}
    print("shards grown:", result, flush=True)
    if not a.skip_direct:
        result["direct"] = direct(a, project, params, a.device)
        print(json.dumps(result["direct"], indent=2), flush=True)
        torch.cuda.empty_cache() if torch.cuda.is_available() else None
    if not a.skip_train:
        result["echolib_train"] = through_train(a, project)
        print(json.dumps(result["echolib_train"], indent=2), flush=True)
    if a.pretrain_steps:
        result["pretraining"] = pretraining(a, params)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "gpu_check.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

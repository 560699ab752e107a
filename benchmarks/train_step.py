"""Training step time: fed by the real DataLoader (clip cache) vs the same step on in-memory tensors.

    python benchmarks/train_step.py --params params.yaml --run MultiVideo --steps 20
writes benchmarks/results/train_step-<run>.json. Target: loader-fed / in-memory <= 1.10.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from echolib.lit import EchoClipModule
from echolib.train import setup_run


def step(module, opt, batch):
    loss, _, _ = module.model_step(batch)
    opt.zero_grad()
    loss.backward()
    opt.step()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--run", default="MultiVideo")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out", default="benchmarks/results")
    a = ap.parse_args()
    r = setup_run(a.run, a.params)
    model, frames, dm, batch_size, run, train = r.model, r.frames, r.datamodule, r.batch_size, r.run, r.train
    module = EchoClipModule(model, train.loss, run.lr)
    opt = torch.optim.AdamW(model.parameters(), lr=run.lr)
    def forever():
        while True:
            yield from dm.train_dataloader()

    loader = forever()
    step(module, opt, next(loader))  # warm-up (workers start, allocations)
    t0 = time.perf_counter()
    batches = []
    for _ in range(a.steps):
        b = next(loader)
        batches.append(b)
        step(module, opt, b)
    fed = (time.perf_counter() - t0) / a.steps
    t0 = time.perf_counter()
    for b in batches:
        step(module, opt, b)
    mem = (time.perf_counter() - t0) / a.steps
    result = {"run": a.run, "encoder": run.encoder, "frames": frames, "batch_size": batch_size,
              "num_workers": train.num_workers, "steps": a.steps, "loader_fed_s_per_step": round(fed, 4),
              "in_memory_s_per_step": round(mem, 4), "ratio": round(fed / mem, 3),
              "clips_per_s_in_memory": round(batch_size / mem, 1), "torch_threads": torch.get_num_threads(),
              "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
              "device": "cpu"}
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / f"train_step-{a.run}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

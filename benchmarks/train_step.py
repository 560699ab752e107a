"""Training step time: fed by the real DataLoader (clip cache) vs the same step on in-memory tensors.

    python benchmarks/train_step.py --params params.yaml --run MultiVideo --steps 20 --rounds 3
writes benchmarks/results/train_step-<run>.json (median seconds per step over the rounds).
Target: loader-fed / in-memory <= 1.10.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from echolib.lit import EchoClipModule
from echolib.train import setup_run


def step(module, opt, batch):
    loss, _, _ = module.model_step(module.on_after_batch_transfer(dict(batch), 0))
    opt.zero_grad()
    loss.backward()
    opt.step()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--run", default="MultiVideo")
    ap.add_argument("--steps", type=int, default=20, help="steps per round")
    ap.add_argument("--rounds", type=int, default=3, help="loader-fed / in-memory rounds; medians are reported")
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
    fed_rounds, mem_rounds = [], []
    for _ in range(a.rounds):  # interleaved rounds: a shared VM's speed drifts by 10-20 % over minutes
        t0 = time.perf_counter()
        batches = []
        for _ in range(a.steps):
            b = next(loader)
            batches.append(b)
            step(module, opt, b)
        fed_rounds.append((time.perf_counter() - t0) / a.steps)
        t0 = time.perf_counter()
        for b in batches:
            step(module, opt, b)
        mem_rounds.append((time.perf_counter() - t0) / a.steps)
    fed, mem = statistics.median(fed_rounds), statistics.median(mem_rounds)
    result = {"run": a.run, "encoder": run.encoder, "frames": frames, "batch_size": batch_size,
              "num_workers": train.num_workers, "steps": a.steps, "rounds": a.rounds, "loader_fed_s_per_step": round(fed, 4),
              "in_memory_s_per_step": round(mem, 4), "ratio": round(fed / mem, 3),
              "ratio_per_round": [round(f / m, 3) for f, m in zip(fed_rounds, mem_rounds, strict=True)],
              "clips_per_s_in_memory": round(batch_size / mem, 1), "torch_threads": torch.get_num_threads(),
              "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
              "device": "cpu"}
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / f"train_step-{a.run}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

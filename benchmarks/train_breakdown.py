"""Where one training step's time goes (issue #25), run by hand; writes benchmarks/results/train_breakdown.json.

    python benchmarks/train_breakdown.py [--steps 12] [--patients 40] [--variants baseline,foreach,...]

A small synthetic project at the default profile's shapes (64 px, 10 stored frames, batch 32) is made in a temporary
folder once; then, for each run's encoder (MultiVideo: convnext_st over 8 frames; SingleImage: convnext over one
frame), the median time per step of: loading the batch (the DataLoader as training uses it), the video tower
forward and backward, the text tower forward and backward, the loss, the optimiser step; and one validation pass
(embedding the validation clips and their reports, ranking). Backward is split between the towers by
back-propagating the loss to the two embeddings first, then each tower from its embedding's gradient: the sum is
one ordinary backward. Variants (measured in the same run, each on the same batches):

- baseline: as `python -m echolib.train` runs today
- threads1: torch.set_num_threads(1) (one process, one core)
- foreach: AdamW with foreach=True (one kernel per parameter group instead of one per tensor)
- channels_last: the ConvNeXt towers and their input in channels-last memory format
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402


def make_project(folder: Path, patients: int) -> Path:
    """A project whose data stages ran (true views as labels), at the default profile's shapes."""
    from echolib import config
    from echolib.cache import run_cache
    from echolib.splits import run_split
    from echolib.synth import generate
    from echolib.text import run_tokenizer
    from echolib.views import run_filter_views
    from tests.conftest import make_project as project
    from tests.conftest import run_stage_entry, tiny_params

    params = tiny_params(views={"source": "label"}, split={"train": 0.8, "valid": 0.1, "test": 0.1})
    params["train"].update(batch_size=32, num_workers=0)
    d = project(folder / "p", params)
    synth = config.SynthConfig.from_dict({**config.preset("default", "synth").to_dict(), "n_patients": patients})
    generate(d / "data" / "raw", synth, seed=0, workers=2, progress=False)
    for stage, fn in (("filter_views", run_filter_views), ("split", run_split), ("tokenizer", run_tokenizer),
                      ("cache", run_cache)):
        run_stage_entry(d, stage, fn)
    return d


def _timer():
    times: dict[str, list[float]] = {}

    @contextlib.contextmanager
    def part(name):
        t = time.perf_counter()
        yield
        times.setdefault(name, []).append(time.perf_counter() - t)

    return times, part


def measure(project: Path, run: str, variant: str, steps: int) -> dict:
    from echolib.lit import EchoClipModule, param_groups
    from echolib.train import setup_run

    torch.manual_seed(0)
    if variant == "threads1":
        torch.set_num_threads(1)
    r = setup_run(run, project / "params.yaml", seed=0)
    model, dm = r.model, r.datamodule
    module = EchoClipModule(model, r.train.loss, r.run.lr)
    if variant == "channels_last":
        model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(param_groups(model, 0.1), lr=r.run.lr, betas=(0.9, 0.98), eps=1e-6,
                            foreach=True if variant == "foreach" else None)
    times, part = _timer()
    loader = iter(dm.train_dataloader())
    for i in range(steps + 2):
        with part("data loading"):
            try:
                batch = next(loader)
            except StopIteration:
                loader = iter(dm.train_dataloader())
                batch = next(loader)
            batch = module.on_after_batch_transfer(dict(batch), 0)
            if variant == "channels_last" and batch["video"].ndim == 4:
                batch["video"] = batch["video"].contiguous(memory_format=torch.channels_last)
        with part("video forward"):
            v = model.encode_video(batch["video"])
        with part("text forward"):
            t = model.encode_text(batch["input_ids"], batch["attention_mask"])
        with part("loss"):
            vd, td = v.detach().requires_grad_(), t.detach().requires_grad_()
            loss = module.loss_fn(vd, td, model.scale())
            opt.zero_grad()
            loss.backward()
        with part("video backward"):
            v.backward(vd.grad)
        with part("text backward"):
            t.backward(td.grad)
        with part("optimiser"):
            opt.step()
        if i < 2:  # warm-up steps are not counted
            for k in times:
                times[k].clear()
    per_step = {k: round(1000 * statistics.median(v), 2) for k, v in times.items()}
    per_step["step"] = round(sum(per_step.values()), 2)
    # one validation pass as the training loop makes it: every validation clip and its report, then ranks
    t0 = time.perf_counter()
    module.eval()
    with torch.no_grad():
        for b in dm.val_dataloader():
            module.validation_step(module.on_after_batch_transfer(dict(b), 0), 0)
        module.on_validation_epoch_end = module.on_validation_epoch_end  # (logging needs a trainer: ranks here)
        from echolib.lit import study_level_metrics

        vv, tt, ss = (torch.cat(x) for x in zip(*module._val, strict=True))
        study_level_metrics(vv, tt, ss)
    validation = time.perf_counter() - t0
    return {"run": run, "encoder": r.run.encoder, "variant": variant, "batch_size": r.batch_size,
            "frames": r.frames, "ms_per_step": per_step, "clips_per_s": round(1000 * r.batch_size / per_step["step"], 1),
            "validation_s": round(validation, 2), "val_clips": len(dm.val_set), "train_clips": len(dm.train_set)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--patients", type=int, default=40)
    ap.add_argument("--runs", default="MultiVideo,SingleImage")
    ap.add_argument("--variants", default="baseline,threads1,foreach,channels_last")
    ap.add_argument("--project", default=None, help="reuse a project made before (its folder)")
    a = ap.parse_args()
    folder = Path(a.project) if a.project else Path(tempfile.mkdtemp(prefix="echolib-train-breakdown-"))
    project = folder if a.project else make_project(folder, a.patients)
    results = []
    for run in a.runs.split(","):
        for variant in a.variants.split(","):
            # each variant in its own process: thread settings and memory formats do not leak into the next
            code = (f"import sys, json; sys.path.insert(0, {str(ROOT)!r}); from benchmarks.train_breakdown import "
                    f"measure; from pathlib import Path; print(json.dumps(measure(Path({str(project)!r}), "
                    f"{run!r}, {variant!r}, {a.steps})))")
            import subprocess

            r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=project,
                               env={**os.environ, "PYTHONHASHSEED": "0"})
            if r.returncode:
                raise SystemExit(r.stderr[-3000:])
            res = json.loads(r.stdout.strip().splitlines()[-1])
            results.append(res)
            print(json.dumps(res), flush=True)
    out = ROOT / "benchmarks" / "results" / "train_breakdown.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"cores": os.cpu_count(), "torch": torch.__version__, "project": str(project),
                               "results": copy.deepcopy(results)}, indent=2) + "\n")
    print(out)


if __name__ == "__main__":
    main()

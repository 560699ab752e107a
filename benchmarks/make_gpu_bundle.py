"""Prepare the GPU check's bundle (run here, on a CPU; the device machine reaches nothing outside the repo).

    python benchmarks/make_gpu_bundle.py --patients 8 --out .gpucheck

Writes OUT/project: params.yaml (the paper profile: 224 px, 32 frames at 24/s, ViViT-B, 12-layer BERT, the
sharded store) and data/ with a small synthetic benchmark at those sizes, its split, tokenizer and sharded store,
made by the same stage entry functions as the pipeline (views from the synthetic truth, so no view classifier has
to be trained at 224 px). The raw clips are removed afterwards: only the store travels. OUT/wheels gets what the
device's Python lacks (polars, webdataset, braceexpand, timm) when `--wheels` is given.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=".gpucheck")
    ap.add_argument("--patients", type=int, default=8)
    ap.add_argument("--train-steps", type=int, default=100)
    ap.add_argument("--wheels", action="store_true", help="download the device's missing wheels (Python 3.12)")
    ap.add_argument("--params-only", action="store_true",
                    help="rewrite OUT/project/params.yaml from this params.yaml (after the config changed), keep data/")
    a = ap.parse_args()
    import yaml

    from echolib import config
    from echolib.cache import run_cache
    from echolib.splits import run_split
    from echolib.stage import context, injected, spec
    from echolib.synth import run_synthesize
    from echolib.text import run_tokenizer
    from echolib.views import run_filter_views

    out = (ROOT / a.out).resolve()
    project = out / "project"
    if not a.params_only:
        shutil.rmtree(project, ignore_errors=True)
    project.mkdir(parents=True, exist_ok=True)
    params = config.apply_profile(config.load_params(ROOT / "params.yaml"), "paper")
    params["base"].update(data_root=str((project / "data").relative_to(ROOT)), seeds=[0], workers=2)
    params["synth"]["n_patients"] = a.patients
    params["views"]["source"] = "label"
    params["split"].update(train=0.7, valid=0.15, test=0.15)
    params["text"]["vocab_size"] = 8000
    params["train"].update(steps=a.train_steps, devices=1, strategy="auto", val_check_clips=a.train_steps * 64,
                           num_workers=12)
    config.validate(params)
    (project / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False))
    if a.params_only:
        return
    for stage, fn in (("synthesize", run_synthesize), ("filter_views", run_filter_views), ("split", run_split),
                      ("tokenizer", run_tokenizer), ("cache", run_cache)):
        ctx = context(stage, "pipeline", root=ROOT, **injected(spec(stage, ROOT, params), params))
        result = fn(ctx)
        print(stage, {k: result[k] for k in list(result)[:8]} if isinstance(result, dict) else "", flush=True)
    shutil.rmtree(project / "data" / "raw" / "videos")  # the store is what the check reads
    if a.wheels:
        wheels = out / "wheels"
        wheels.mkdir(exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        "--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux_2_17_x86_64",
                        "--platform", "manylinux2014_x86_64", "-d", str(wheels), "polars==1.20.0", "webdataset==1.0.2",
                        "braceexpand==0.1.7", "timm==1.0.31"], check=True)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{out}: {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()

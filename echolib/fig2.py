"""The paper's Fig. 2: retrieval against the size of the pretraining set, video against image (stage `fig2`).

For each run of `fig2.runs` (SingleImage and MultiVideo; MultiVideo is scored on 4CH clips only, MultiVideo-4CH,
so that both see the same clips of a study):
- scratch: Table 1's own models (the same seeds), nothing retrained;
- self-supervised: the run's encoder pretrained (`echolib.pretrain`, `pretrain.*` settings) on each fraction of
  the training patients in `fig2.sizes` (nested sets), then trained as in Table 1 (`--init local:...`);
- local weights (`fig2.local`, e.g. ImageNet-21k or VideoMAE checkpoints on disk): trained from them the same way.
Every model is scored on the Table 1 test studies; CIs come from the paired bootstrap over studies (and seeds)
that Table 1 uses, and the image-video gap at each initialisation is a paired difference with its CI.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import polars as pl

from . import encoders
from .compare import bootstrap_ci, load_ranks

METRICS = ("mcmrr_v2r", "mcmrr_r2v", "r10_v2r", "r10_r2v")


def scored_variant(run: str, views: list[str]) -> str:
    """The variant Fig. 2 scores: a multi-view run on its 4CH clips (MultiVideo-4CH), any other run as itself."""
    from .evaluate import variants_of

    return f"{run}-4CH" if f"{run}-4CH" in variants_of(run, views) else run


def size_label(fraction: float) -> str:
    return f"ssl-{fraction:g}"


def _done(folder: Path) -> bool:
    return (folder / "summary.json").is_file()


def run_fig2(ctx) -> dict:
    """Stage `fig2`: pretrain, train and evaluate every (run, initialisation) pair not yet done in this attempt's
    folder (an interrupted attempt continues), then the points, gaps and times of Fig. 2 (metrics/fig2.json)."""
    from .evaluate import evaluate_run
    from .pretrain import pretrain_encoder

    cfg, out = ctx.fig2, ctx.out("fig2")
    out.mkdir(parents=True, exist_ok=True)
    if not cfg.sizes and not cfg.local:
        why = "fig2.sizes is [] and fig2.local is {}: nothing to compare (the Fig. 2 experiment: README, 'Fig. 2')"
        (out / "SKIPPED.txt").write_text(why + "\n")
        return {"skipped": why}
    runs = {r: ctx.runs[r] for r in cfg.runs}
    missing_seeds = [s for s in cfg.seeds if not all((ctx.data / "eval" / r / scored_variant(r, list(runs[r].views))
                                                      / f"seed{s}" / "ranks.parquet").is_file() for r in runs)]
    if missing_seeds:
        raise FileNotFoundError(f"fig2.seeds {missing_seeds}: Table 1's evaluation has no such seed of {list(runs)} "
                                "(the scratch points); use seeds of base.seeds")
    times: dict = {"pretrain": {}, "train": {}}
    inits: dict[str, dict[str, str]] = {}  # label -> run -> init spec
    sizes: dict[str, dict] = {}
    for fraction in cfg.sizes:
        label = size_label(fraction)
        for r, run in runs.items():
            pre = out / "pretrain" / f"{run.encoder}-{fraction:g}"
            if not _done(pre):
                t0 = time.time()
                pretrain_encoder(run.encoder, run.size, ctx.data / "cache", pre, fraction, ctx.pretrain, ctx.base.seed,
                                 ctx.train)
                times["pretrain"][f"{run.encoder}-{fraction:g}"] = round(time.time() - t0, 1)
            s = json.loads((pre / "summary.json").read_text())
            times["pretrain"].setdefault(f"{run.encoder}-{fraction:g}", s["seconds"])
            sizes[label] = {"fraction": fraction, "patients": s["patients"], "clips": s["clips"]}
            inits.setdefault(label, {})[r] = f"local:{pre / 'encoder.pt'}"
    for label, by_run in cfg.local.items():
        inits[label] = {r: f"local:{p}" for r, p in by_run.items()}
    for label, by_run in inits.items():
        for r, init in by_run.items():
            root = out / "runs" / label
            for seed in cfg.seeds:
                if not _done(root / r / f"seed{seed}"):
                    t0 = time.time()
                    ctx.run_module("echolib.train", "--run", r, "--seed", str(seed), "--out-root", root, "--init",
                                   init, "--resume-if-possible")
                    times["train"][f"{r}@{label}/seed{seed}"] = round(time.time() - t0, 1)
            ev = out / "eval" / label / r
            if not (ev / scored_variant(r, list(runs[r].views))).is_dir():
                evaluate_run(root / r, ctx.data / "cache", ctx.data / "split" / "studies.parquet", ev, None,
                             n_boot=ctx.evaluate.n_bootstrap, seed=ctx.base.seed, probe_studies=0,
                             level=ctx.evaluate.level)
    return fig2_results(ctx.data / "eval", out / "eval", runs, inits, sizes, [f"seed{s}" for s in cfg.seeds],
                        ctx.evaluate.n_bootstrap, ctx.base.seed, ctx.evaluate.level) | {"seconds": times}


def fig2_results(table1_eval: Path, fig2_eval: Path, runs: dict, inits: dict, sizes: dict, seeds: list[str],
                 n_boot: int, seed: int, level: float) -> dict:
    """Points (run, initialisation, metric: value and CI) and the image-video gap at each initialisation."""
    ranks: dict[str, list[pl.DataFrame]] = {}
    for r, run in runs.items():
        v = scored_variant(r, list(run.views))
        ranks[f"{v}@scratch"] = [pl.read_parquet(table1_eval / r / v / s / "ranks.parquet") for s in seeds]
        for label, by_run in inits.items():
            if r in by_run:
                ranks[f"{v}@{label}"] = load_ranks(fig2_eval / label, all_seeds=True)[v]
    image = [r for r, run in runs.items() if len(run.views) == 1 and run.encoder in encoders.names("image")]
    video = [r for r in runs if r not in image]
    pairs = []
    for label in ["scratch", *inits]:
        for vr in video:
            for ir in image:
                a, b = f"{scored_variant(vr, list(runs[vr].views))}@{label}", f"{ir}@{label}"
                if a in ranks and b in ranks:
                    pairs.append((a, b))
    res = bootstrap_ci(ranks, n=n_boot, seed=seed, level=level, pairs=pairs)
    points = []
    for key, m in res["runs"].items():
        variant, label = key.split("@")
        for metric in METRICS:
            points.append({"model": variant, "init": label, "fraction": sizes.get(label, {}).get("fraction"),
                           "pretrain_clips": sizes.get(label, {}).get("clips"),
                           "pretrain_patients": sizes.get(label, {}).get("patients"), "metric": metric,
                           **{k: m[metric][k] for k in ("value", "lo", "hi")}})
    gaps = [{"difference": k, "init": k.split("@")[-1], "metric": metric,
             **{x: d[metric][x] for x in ("value", "lo", "hi")}}
            for k, d in res["differences"].items() for metric in METRICS]
    return {"n_studies": res["n_studies"], "seeds": seeds, "level": level, "sizes": sizes, "points": points,
            "gaps": gaps}


def times_frame(metrics: dict) -> pl.DataFrame:
    """metrics/fig2.json's seconds as a table: what (pretrain, train), step, seconds."""
    return pl.DataFrame([{"what": k, "step": n, "seconds": s} for k, d in metrics.get("seconds", {}).items()
                         for n, s in d.items()])


def load_points(path: str | Path) -> pl.DataFrame:
    m = json.loads(Path(path).read_text()) if Path(path).is_file() else {}
    return pl.DataFrame(m.get("points", []))

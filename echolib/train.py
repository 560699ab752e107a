"""`python -m echolib.train --run NAME [--seed S] [--resume]`: contrastive training of one ablation run.

Reads the parameters the stage train@NAME lists in dvc.yaml (base.seed/seeds/data_root, train, text, pretrain,
runs.NAME and the run whose exposure it matches): from the file the stage gives it (`--stage-params`, written by
the runner; params.yaml is then never read) or, run by hand, from params.yaml as that stage sees it. Also reads the
clip cache (data/cache) and the tokenizer (data/tokenizer or text.pretrained_dir); writes data/runs/NAME/seed<S>/ with checkpoints/ (last + best on validation MCMRR,
the mean of both directions), dvclive/ (loss, lr, logit scale, validation R@10/MCMRR per validation), model.pt
(best weights + how to rebuild) and summary.json. Started as a subprocess by the train notebook: Lightning DDP cannot run inside a kernel.
Multi-GPU: train.accelerator=gpu, train.devices=N (DDP); multi-node: train.num_nodes under torchrun/SLURM.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import time
from pathlib import Path

import torch

from . import config as C
from .accel import precision_of
from .curves import lightning_logger
from .io.files import mark_output
from .io.safe import for_terminal
from .io.weights import load_torch
from .models import EchoClip, build_model

MONITOR = "val/mcmrr"  # model selection and early stopping: validation MCMRR, both directions (lower is better)


def world_size(train) -> int:
    """Processes that share one optimisation step (each takes a batch): devices x nodes under DDP, else 1."""
    return train.devices * train.num_nodes if train.strategy != "auto" or train.devices > 1 else 1


def train_clips(index, views) -> int:
    """A run's training clips: the clips of the training split whose (predicted) view is one of `views`."""
    train = index.filter(index["split"] == "train")
    view_col = "pred_view" if "pred_view" in train.columns else "view"
    return train.filter(train[view_col].is_in(list(views))).height


def run_budget(ctx, name: str, index, run=None) -> dict:
    """How long run `name` trains, and why: with `exposure_of` another run, as many steps as it takes to see as
    many clips of this run's views as that run sees in its budget; else, budget `epochs`, runs.NAME.epochs (0:
    train.epochs) passes over the run's own training clips (the paper's design: every run the same epochs), or,
    budget `steps`, runs.NAME.steps (0: train.steps) steps (the compute-matched comparison). `run`: run `name`'s
    settings as overridden (the budget sweep).
    Returns {"steps", "basis", "epochs" (as asked for, or the passes its steps make), "passes" (over the run's own
    training clips: the last batch rounds up), "train_clips"}."""
    run = run or ctx.runs[name]
    batch = (run.batch_size or ctx.train.batch_size) * world_size(ctx.train)
    clips = train_clips(index, run.views)
    if run.exposure_of != name:
        other = run_budget(ctx, run.exposure_of, index)
        seen = train_clips(index, ctx.runs[run.exposure_of].views)
        share = clips / max(seen, 1)
        other_batch = (ctx.runs[run.exposure_of].batch_size or ctx.train.batch_size) * world_size(ctx.train)
        steps, basis = max(1, round(other["steps"] * other_batch * share / batch)), f"exposure of {run.exposure_of}"
    elif run.budget == "epochs":
        epochs = run.epochs or ctx.train.epochs
        if not epochs:
            raise C.ConfigError(f"params: 'runs.{name}.budget' is epochs but runs.{name}.epochs and train.epochs are 0")
        steps, basis = max(1, math.ceil(epochs * clips / batch)), "epochs"
    else:
        steps, basis = run.steps or ctx.train.steps, "steps"
    passes = round(steps * batch / max(clips, 1), 3)
    return {"steps": steps, "basis": basis, "train_clips": clips,
            "epochs": float(epochs) if basis == "epochs" else passes, "passes": passes}


def run_steps(ctx, name: str, index) -> int:
    """Optimisation steps of run `name` (`run_budget`)."""
    return run_budget(ctx, name, index)["steps"]


def exposure_basis(ctx, name: str, index) -> dict:
    """What an exposure-matched run is computed from: run `name`'s views, steps and batch size (recorded in its
    summary, so that the compare stage can tell when that run has changed since)."""
    other = ctx.runs[name]
    steps, batch = run_steps(ctx, name, index), other.batch_size or ctx.train.batch_size
    return {"run": name, "views": list(other.views), "steps": steps, "batch_size": batch, "clips": steps * batch}


def _stage_context(ctx_or_params, name: str):
    """A stage context as given, or train@NAME's parameters read from a params.yaml path (a test, a user)."""
    from .stage import Context, stage_context

    if isinstance(ctx_or_params, Context):
        if name not in ctx_or_params.params.get("runs", {}):
            raise C.ConfigError(f"run {name!r} is not among the runs stage {ctx_or_params.name} lists: "
                                f"{sorted(ctx_or_params.params.get('runs', {}))}")
        return ctx_or_params
    path = Path(ctx_or_params).resolve()
    runs = C.load_params(path).get("runs") or {}
    if name not in runs:
        raise C.ConfigError(f"run {name!r} is not in {path.name} runs: {sorted(runs)}")
    return stage_context("train", name, C.project_root(path.parent), path)


@dataclasses.dataclass
class RunSetup:
    base: object  # the stage's sections (echolib.stage.SectionView: its listed keys only)
    train: object
    text: object
    run: object
    data: Path
    tokenizer_dir: Path
    vocab_size: int
    model: EchoClip
    frames: int
    datamodule: object
    batch_size: int
    cache_meta: dict
    steps: int
    pretrain: object
    budget: dict = dataclasses.field(default_factory=dict)  # run_budget: steps, basis, epochs, train clips


def setup_run(name: str, ctx, seed: int = 0, init: str | None = None,
              ssl_weights: str | Path | None = None, epochs: float | None = None) -> RunSetup:
    """Everything a run needs before training: its parameters, the model and the data module (set up). Reports
    are tokenized in the clip store already: only the tokenizer's vocabulary size is read here. `ctx`: the stage's
    context (or a params.yaml path: train@NAME's). `init` overrides the run's `init` (Fig. 2 trains a run from
    several); `ssl_weights` is the file `init: ssl` loads; `epochs` trains the run for that many epochs of its own
    clips whatever its budget (the budget sweep)."""
    from .lit import ClipDataModule
    from .models.factory import init_weights
    from .text import vocab_size

    ctx = _stage_context(ctx, name)
    base, train, text = ctx.base, ctx.train, ctx.text
    run = ctx.runs[name]
    if init:
        C.init_spec(init, "--init")
        run = run.replace(init=init)
    if epochs:
        run = run.replace(budget="epochs", epochs=float(epochs), exposure_of=name)
    data = ctx.data
    tokenizer_dir = Path(text.pretrained_dir) if text.pretrained_dir else data / "tokenizer"
    n_vocab = vocab_size(tokenizer_dir)
    if not (data / "cache" / "meta.json").is_file():
        raise FileNotFoundError(f"{data / 'cache'}: no clip store (run the cache stage first: dvc repro cache)")
    cache_meta = json.loads((data / "cache" / "meta.json").read_text())
    model, frames = build_model(run.encoder, size=run.size, weights=init_weights(run.init, ssl_weights),
                                vocab_size=n_vocab, stored_frames=cache_meta["frames"], max_length=text.max_length,
                                text_layers=text.layers, pretrained_dir=text.pretrained_dir, loss=train.loss)
    batch = run.batch_size or train.batch_size
    dm = ClipDataModule(str(data / "cache"), list(run.views), frames, batch, train.num_workers,
                        text.shuffle_findings, text.max_findings, seed)
    dm.setup()
    budget = run_budget(ctx, name, dm.cache.index, run)
    return RunSetup(base, train, text, run, data, tokenizer_dir, n_vocab, model, frames, dm, batch, cache_meta,
                    budget["steps"], ctx.pretrain, budget)


class ResumeError(RuntimeError):
    """A run cannot resume (no checkpoint, or one written with other settings); the message says which."""


def run_signature(r: RunSetup, seed: int) -> str:
    """What makes two training runs the same run: its settings, the seed and the clip store it reads."""
    import hashlib

    keys = ("shape", "frames", "fps", "size", "store", "clips", "studies", "max_length")
    blob = json.dumps({"run": r.run.to_dict(), "train": r.train.to_dict(), "text": r.text.to_dict(), "seed": seed,
                       "pretrain": r.pretrain.to_dict() if r.run.init == "ssl" else None,
                       "steps": r.steps, "cache": {k: r.cache_meta.get(k) for k in keys}}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _prepare_folder(out: Path, resume: bool | str, signature: str) -> bool:
    """Whether to resume from out/checkpoints/last.ckpt. resume=True requires that checkpoint and its signature;
    "auto" resumes when it matches and starts afresh otherwise (a damaged checkpoint too, said in one line); a
    fresh run moves an earlier run aside, so that two runs never mix. A folder echolib did not make is refused."""
    from .io.files import claim_output, remove_path
    from .io.weights import CheckpointError

    last = out / "checkpoints" / "last.ckpt"
    found = None
    if last.is_file():
        try:
            found = load_torch(last, "training checkpoint").get("echolib", {}).get("signature")
        except CheckpointError as e:
            if resume is True:
                raise ResumeError(f"--resume: {e}") from None
            print(f"warning: {e}; this run starts afresh", flush=True)
    if resume is True and found is None:
        raise ResumeError(f"--resume: no checkpoint to resume from at {last}")
    if resume is True and found != signature:
        raise ResumeError(f"--resume: {last} was written by a run with other settings (signature {found}, this run "
                          f"{signature}); start afresh without --resume")
    if resume and found == signature:
        return True
    if out.exists() and any(out.iterdir()):
        claim_output(out)
        aside = out.with_name(f".{out.name}.replaced")
        claim_output(aside)
        remove_path(aside)
        out.rename(aside)
        print(f"an earlier run in {out} was moved aside to {aside.name}")
    return False


def ssl_weights_for(name: str, ctx, out_root: Path) -> Path:
    """`init: ssl`: the run's encoder pretrained (self-supervised, all training patients, pretrain.* settings,
    base.seed) into OUT_ROOT/NAME/pretrain once for all its seeds; reused while those settings hold."""
    from .pretrain import pretrain_encoder

    ctx = _stage_context(ctx, name)
    run, out = ctx.runs[name], out_root / name / "pretrain"
    want = {"encoder": run.encoder, "size": run.size, "fraction": 1.0, "seed": ctx.base.seed,
            **ctx.pretrain.to_dict()}
    done = out / "summary.json"
    if os.environ.get("RANK", "0") != "0":  # torchrun / SLURM: rank 0 pretrains, the others wait for its file
        while not done.is_file():
            time.sleep(5)
    if done.is_file() and (out / "encoder.pt").is_file():
        have = json.loads(done.read_text())
        if all(have.get(k) == v for k, v in want.items() if k in have):
            return out / "encoder.pt"
    pretrain_encoder(run.encoder, run.size, ctx.data / "cache", out, 1.0, ctx.pretrain, ctx.base.seed, ctx.train)
    return out / "encoder.pt"


def authors_steps(run, n_clips: int, batch: int) -> int:
    """Fine-tuning steps of an `encoder: authors` run: `steps` (budget steps) or `epochs` passes over its n_clips
    training clips in batches of `batch` (budget epochs). 0 there means the checkpoint is scored as published,
    not the train.* default that 0 means for the other runs."""
    if run.budget == "steps":
        return int(run.steps)
    return math.ceil(run.epochs * n_clips / batch) if run.epochs else 0


def register_authors_run(name: str, seed: int, ctx, root: Path) -> dict:
    """A run of the authors' released model (encoder: authors, init: local:FILE). With no fine-tuning steps
    (`authors_steps`) nothing is trained: the checkpoint is read once to check it. Otherwise it is fine-tuned
    (`finetune_authors`) and the result written in their layout beside the run. OUT/NAME/seedS/model.pt points to
    the checkpoint with the tokenizer it needs (text.pretrained_dir, their bert-base-japanese-v3), so that evaluate
    scores it like any run."""
    from .config import init_spec
    from .models.authors import load_authors_checkpoint

    run = ctx.runs[name]
    path = Path(init_spec(run.init)[1]).resolve()
    if not ctx.text.pretrained_dir:
        raise C.ConfigError(f"runs.{name}: the authors' model needs their tokenizer: set text.pretrained_dir to a "
                            "local copy of tohoku-nlp/bert-base-japanese-v3")
    net = load_authors_checkpoint(path)
    out = root / name / f"seed{seed}"
    out.mkdir(parents=True, exist_ok=True)
    summary = {"run": name, "seed": seed, "encoder": "authors", "size": run.size, "init": run.init,
               "frames": net.num_frames, "video_tower": net.visual.kind, "views": list(run.views), "steps": 0,
               "epochs_run": 0, "global_steps": 0, "train_clips": 0, "val_studies": 0, "train_seconds": 0.0,
               "clips_per_second": None, "best_val_mcmrr": None,
               "note": "the authors' released checkpoint, scored as published: nothing trained"}
    named = str(path)
    if run.budget == "steps" and run.steps or run.budget == "epochs" and run.epochs:
        tuned_path, tuned = finetune_authors(net, name, seed, ctx, out)
        named = tuned_path.name  # in the run's folder: found beside model.pt wherever the folder is moved
        summary.update(tuned, note=f"the authors' checkpoint fine-tuned here ({tuned['global_steps']} steps), "
                                   "saved in their layout")
    torch.save({"authors_checkpoint": named, "run": run.to_dict(), "frames": net.num_frames,
                "tokenizer_dir": str(Path(ctx.text.pretrained_dir).resolve())}, out / "model.pt")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def finetune_authors(net, name: str, seed: int, ctx, out: Path) -> tuple[Path, dict]:
    """Fine-tune the authors' model (AuthorsClip) on the archive's training clips of the run's views: each clip
    read from its own video file with their preprocessing, reports tokenized by their tokenizer to 256 tokens
    (`TheirClips`); the pipeline's contrastive loss, AdamW at the run's lr with train.weight_decay, linear warm-up
    (train.warmup_steps) then cosine, as every run here; bf16 mixed precision on a GPU (train.precision). Writes
    OUT/checkpoint_finetuned.pt in their layout (`save_authors_checkpoint`); returns its path and the summary's
    training figures."""
    import warnings

    import lightning as L
    import polars as pl

    from .lit import EchoClipModule, StepProgress
    from .models.authors import TheirClips, save_authors_checkpoint
    from .store import open_store
    from .text import load_tokenizer

    run, train = ctx.runs[name], ctx.train
    split = pl.read_parquet(ctx.data / "split" / "studies.parquet")
    keep = set(split.filter(pl.col("split") == "train")["study_id"])
    rows = open_store(ctx.data / "cache").index.filter(pl.col("study_id").is_in(keep)
                                                       & pl.col("pred_view").is_in(list(run.views))).sort("row")
    if rows.is_empty():
        raise ValueError(f"runs.{name}: no training clip of views {list(run.views)} to fine-tune on")
    raw = ctx.raw
    videos = pl.read_parquet(raw / "videos.parquet").select("video_id", "path")
    path_of = dict(videos.iter_rows())
    reports = dict(pl.read_parquet(raw / "studies.parquet").select("study_id", "report").iter_rows())
    ds = TheirClips([str(raw / path_of[v]) for v in rows["video_id"]], rows["study_id"].to_list(), reports,
                    load_tokenizer(ctx.text.pretrained_dir), net.num_frames)
    batch = min(run.batch_size or train.batch_size, len(ds))
    steps = authors_steps(run, len(ds), batch)
    gen = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, drop_last=True, generator=gen,
                                         num_workers=train.num_workers, persistent_workers=train.num_workers > 0)
    module = EchoClipModule(net.train(), train.loss, run.lr, train.weight_decay, train.warmup_steps, steps)
    trainer = L.Trainer(max_steps=steps, devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
                        precision=precision_of(train), callbacks=[StepProgress(f"fine-tune {name} seed {seed}")])
    t0 = time.time()
    with warnings.catch_warnings():  # fine-tuning selects nothing on validation: Lightning's note does not apply
        warnings.filterwarnings("ignore", message=".*validation_step.* no `val_dataloader`")
        trainer.fit(module, loader)
    seconds = time.time() - t0
    ck = save_authors_checkpoint(net.eval(), out / "checkpoint_finetuned.pt", name=f"echolib fine-tuned {name}",
                                 epoch=math.ceil(trainer.global_step * batch / len(ds)))
    return ck, {"steps": steps, "global_steps": int(trainer.global_step), "train_clips": len(ds),
                "batch_size": batch, "epochs_run": round(trainer.global_step * batch / len(ds), 3),
                "train_seconds": round(seconds, 1), "clips_per_second": round(trainer.global_step * batch / seconds, 2),
                "truncated_reports": int(ds.truncated)}


def train_run(name: str, seed: int, ctx="params.yaml", resume: bool | str = False,
              fast_dev_run: bool = False, out_root: str | Path | None = None, init: str | None = None,
              epochs: float | None = None) -> dict:
    """Train run `name` with `seed` into OUT_ROOT/NAME/seedSEED. `ctx`: the stage's context (its listed
    parameters), or a params.yaml path (then train@NAME's keys of it). `resume`: True continues from the run's
    last checkpoint (exactly: model, optimiser, schedule, every random state and the position in the epoch),
    "auto" does so when that checkpoint belongs to the same run, False starts afresh. `init` overrides the run's
    own (scratch | ssl | local:PATH); `epochs` the run's budget (that many epochs of its own clips)."""
    import warnings

    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    from .lit import EchoClipModule, ResumeState, StepProgress, ValidateAtLastStep

    ctx = _stage_context(ctx, name)
    if train_threads := ctx.train.torch_threads:
        torch.set_num_threads(train_threads)
    L.seed_everything(seed, workers=True, verbose=False)
    root = Path(out_root or ctx.data / "runs")
    if ctx.runs[name].encoder == "authors":
        return register_authors_run(name, seed, ctx, root)
    ssl = ssl_weights_for(name, ctx, root) if (init or ctx.runs[name].init) == "ssl" else None
    r = setup_run(name, ctx, seed, init, ssl, epochs)
    train, text, run = r.train, r.text, r.run
    model, frames, dm, batch, cache_meta = r.model, r.frames, r.datamodule, r.batch_size, r.cache_meta
    out = root / name / f"seed{seed}"
    signature = run_signature(r, seed)
    resuming = _prepare_folder(out, resume, signature) if not fast_dev_run else False
    out.mkdir(parents=True, exist_ok=True)
    mark_output(out)
    world = world_size(train)
    steps = r.steps
    val_every = min(steps, max(1, round(train.val_check_clips / (batch * world))))  # the same clips for every run
    module = EchoClipModule(model, train.loss, run.lr, train.weight_decay, train.warmup_steps, steps)
    ckpt = ModelCheckpoint(dirpath=out / "checkpoints", filename="best", monitor=MONITOR, mode="min", save_top_k=1)
    last_ckpt = ModelCheckpoint(dirpath=out / "checkpoints", filename="step{step}", save_top_k=0, save_last=True,
                                every_n_train_steps=train.checkpoint_steps)
    callbacks = [ResumeState(signature), ckpt, last_ckpt, ValidateAtLastStep(),
                 StepProgress(f"train {name} seed {seed}")] + (
        [EarlyStopping(monitor=MONITOR, mode="min", patience=train.patience)] if train.patience else [])
    if kill_at := int(os.environ.get("ECHOLIB_KILL_AT_STEP", "0")):  # fault injection for the resume test
        callbacks.insert(0, _KillAt(kill_at))
    # our sampler continues mid-epoch itself (EpochSampler.resume_at): Lightning's warning does not apply
    warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")
    logger = lightning_logger(out, resuming)
    for logger_name in ("lightning.pytorch", "lightning.fabric"):  # its banners, tips and end-of-fit notice: INFO
        logging.getLogger(logger_name).setLevel(logging.WARNING)
    trainer = L.Trainer(
        enable_model_summary=False,  # the model is described on the training page, not as a table in the log
        accelerator=train.accelerator, devices=train.devices, num_nodes=train.num_nodes, strategy=train.strategy,
        precision=precision_of(train), max_steps=steps, max_epochs=-1, gradient_clip_val=train.grad_clip,
        callbacks=callbacks, logger=logger, log_every_n_steps=max(1, min(50, val_every // 4)),
        fast_dev_run=fast_dev_run, enable_progress_bar=False, default_root_dir=str(out), num_sanity_val_steps=0,
        deterministic=False, min_steps=-(-train.min_clips // (batch * world)) if train.min_clips else None,
        val_check_interval=val_every, check_val_every_n_epoch=None,
    )
    last = out / "checkpoints" / "last.ckpt"
    t0 = time.time()
    trainer.fit(module, datamodule=dm, ckpt_path=str(last) if resuming else None, weights_only=True)
    seconds = time.time() - t0
    if trainer.global_rank != 0:
        return {}
    best = ckpt.best_model_path
    if best and not fast_dev_run:
        state = load_torch(best, "best checkpoint")["state_dict"]
        module.load_state_dict(state)
    summary = {
        "run": name, "seed": seed, "encoder": run.encoder, "size": run.size, "init": run.init, "frames": frames,
        "views": list(run.views), "lr": run.lr, "batch_size": batch, "train_clips": len(dm.train_set),
        "val_clips": len(dm.val_set), "steps": steps,
        "exposure_of": exposure_basis(ctx, run.exposure_of, dm.cache.index) if run.exposure_of != name else None,
        "budget": r.budget,
        "epochs_run": round(trainer.global_step * batch * world / max(len(dm.train_set), 1), 2),
        "global_steps": trainer.global_step,
        "train_seconds": round(seconds, 1),
        "clips_per_second": round(trainer.global_step * batch * world / max(seconds, 1e-9), 1),
        "best_val_mcmrr": float(ckpt.best_model_score) if ckpt.best_model_score is not None else None,
        "val_studies": int(trainer.callback_metrics.get("val/n_studies", 0)),
        "best_checkpoint": best, "precision": precision_of(train),
    }
    torch.save({"state_dict": module.model.state_dict(), "run": run.to_dict(), "frames": frames, "size": cache_meta["size"], "cache_frames": cache_meta["frames"],
                "cache_fps": cache_meta["fps"], "vocab_size": r.vocab_size,
                "max_length": text.max_length, "text_layers": model_text_layers(module.model),
                "loss": train.loss, "tokenizer_dir": str(r.tokenizer_dir)},
               out / "model.pt")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


class _KillAt:
    """SIGKILL this process at the start of training step `step` (after the checkpoints of the step before)."""

    def __new__(cls, step: int):
        from lightning.pytorch.callbacks import Callback

        class KillAt(Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                if trainer.global_step == step:
                    import signal

                    os.kill(os.getpid(), signal.SIGKILL)

        return KillAt()


def model_text_layers(model: EchoClip) -> int:
    return int(model.text_encoder.backbone.config.num_hidden_layers)


def summarize_seeds(run_dir: str | Path) -> dict:
    """Mean and spread across seeds of each run's summary numbers (seed*/summary.json)."""
    import numpy as np

    summaries = [json.loads(p.read_text()) for p in sorted(Path(run_dir).glob("seed*/summary.json"))]
    if not summaries:
        raise FileNotFoundError(f"{run_dir}: no seed*/summary.json (did training run?)")
    out = {"run": summaries[0]["run"], "seeds": [s["seed"] for s in summaries], "per_seed": summaries}
    for key in ("best_val_mcmrr", "train_seconds", "global_steps", "clips_per_second"):
        vals = np.array([s[key] for s in summaries if s.get(key) is not None], dtype=float)
        if len(vals):
            out[key] = {"mean": float(vals.mean()), "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0}
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m echolib.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a run name under `runs:` in params.yaml")
    ap.add_argument("--seed", type=int, default=None, help="one seed (default: every seed in base.seeds)")
    ap.add_argument("--params", default="params.yaml", help="run by hand: the project's params.yaml, read as the "
                    "stage train@RUN lists it")
    ap.add_argument("--stage-params", default=None, help="the parameters file a stage wrote for this process "
                    "(then params.yaml is not read)")
    ap.add_argument("--resume", action="store_true", help="continue exactly from checkpoints/last.ckpt (error if none)")
    ap.add_argument("--resume-if-possible", action="store_true",
                    help="continue from checkpoints/last.ckpt when it belongs to this run, else start afresh")
    ap.add_argument("--fast-dev-run", action="store_true")
    ap.add_argument("--out-root", default=None, help="folder for RUN/seedS (default: <data_root>/runs)")
    ap.add_argument("--epochs", type=float, default=None, help="train this many epochs of the run's own clips, "
                    "whatever its budget (the budget sweep)")
    ap.add_argument("--init", default=None, help="the video/image tower's start, overriding the run's init: scratch | "
                    "ssl | local:PATH")
    a = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        if a.stage_params:
            from .stage import load_context

            os.environ[C.STAGE_PARAMS_ENV] = "1"  # this process and its children never read params.yaml
            ctx = _stage_context(load_context(a.stage_params), a.run)
        else:
            ctx = _stage_context(a.params, a.run)
    except (C.ConfigError, FileNotFoundError) as e:
        raise SystemExit(f"error: {for_terminal(e)}") from None
    seeds = [a.seed] if a.seed is not None else (ctx.runs[a.run].seeds or ctx.base.seeds)
    for seed in seeds:
        try:
            s = train_run(a.run, seed, ctx, "auto" if a.resume_if_possible else a.resume, a.fast_dev_run,
                          a.out_root, a.init, a.epochs)
        except (C.ConfigError, ResumeError, FileNotFoundError, ValueError) as e:
            raise SystemExit(f"error: {for_terminal(e)}") from None
        if s:
            print(json.dumps(s), flush=True)


def run_train(ctx) -> dict:
    """Stage `train@RUN`: `python -m echolib.train --run RUN` in a subprocess (Lightning's DDP cannot start in a
    kernel) given the stage's parameters, every seed of base.seeds, into data/runs/RUN; returns the mean and spread
    over seeds."""
    out_root = ctx.out("runs")
    # an attempt interrupted before (its staging kept by the runner) continues where it stopped
    ctx.run_module("echolib.train", "--run", ctx.key, "--out-root", out_root, "--resume-if-possible")
    summary = summarize_seeds(out_root / ctx.key)
    if len(summary["seeds"]) != len(ctx.run.seeds or ctx.base.seeds):
        raise RuntimeError(f"train@{ctx.key}: seeds {summary['seeds']} trained, expected {ctx.run.seeds or ctx.base.seeds}")
    if ctx.run.encoder != "authors" and any(s["best_val_mcmrr"] is None for s in summary["per_seed"]):
        raise RuntimeError(f"train@{ctx.key}: a seed has no validation score")
    return summary


if __name__ == "__main__":
    main()

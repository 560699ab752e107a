"""View classifier (a small timm CNN on a few frames of a clip), temperature calibration and view filtering.

The paper keeps clips that a separately trained classifier assigns to LAX, SAX, 2CH, 3CH or 4CH with
probability >= 0.9. Here the classifier trains on clips of one group of patients, is calibrated (temperature
scaling) on a second and evaluated on a third, so its 0.9 means about 90 % correct on patients it never saw.

CLI (run as a subprocess by the view_classifier notebook):
    python -m echolib.views train --data data/raw --out data/views --model mobilenetv3_small_100 ...
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import polars as pl

from .io.files import OutputError, claim_output, mark_output
from .io.safe import for_terminal
from .io.video import VideoDecodeError, read_clip
from .proc import map_jobs
from .progress import bar
from .splits import split_patients
from .vocab import CLASSES

DROP_OTHER, DROP_LOW, DROP_NOT_KEPT, DROP_UNREADABLE = "predicted OTHER", "low confidence", "view not kept", \
    "unreadable"


def clip_frames(path: str | Path, n_frames: int, frames: int, size: int) -> np.ndarray:
    """`frames` frames spread evenly over the clip, resized: uint8 (frames, size, size, 3)."""
    stride = max(1, n_frames // frames)
    return read_clip(path, frames, stride=stride, size=size)


def _load_one(job):
    path, n_frames, frames, size = job
    try:
        return clip_frames(path, n_frames, frames, size), ""
    except VideoDecodeError as e:
        return np.zeros((frames, size, size, 3), np.uint8), str(e)


def load_clips(root: str | Path, videos: pl.DataFrame, frames: int, size: int, workers: int = 0,
               progress: bool = True) -> tuple[np.ndarray, list[str]]:
    """Decode every clip of `videos` (a few frames each) with a process pool; returns array and errors."""
    jobs = [(str(Path(root) / p), n, frames, size) for p, n in zip(videos["path"], videos["n_frames"], strict=True)]
    out = np.zeros((len(jobs), frames, size, size, 3), np.uint8)
    errors = [""] * len(jobs)

    def place(i, result):
        out[i], errors[i] = result

    map_jobs(_load_one, jobs, workers, "decode", "clip", progress, each=place, keep=False)
    return out, errors


def to_tensor(clips: np.ndarray):
    """uint8 (N, F, H, W, 3) -> float (N, F*3, H, W) in [0, 1] (frames stacked as channels)."""
    import torch

    x = torch.from_numpy(clips).float().div_(255.0)
    n, f, h, w, c = x.shape
    return x.permute(0, 1, 4, 2, 3).reshape(n, f * c, h, w)


def create_model(name: str, frames: int):
    import timm

    return timm.create_model(name, pretrained=False, num_classes=len(CLASSES), in_chans=3 * frames)


def predict_logits(model, clips: np.ndarray, batch_size: int = 256) -> np.ndarray:
    import torch

    model.eval()
    outs = []
    with torch.inference_mode():
        for i in range(0, len(clips), batch_size):
            outs.append(model(to_tensor(clips[i:i + batch_size])).float().numpy())
    return np.concatenate(outs) if outs else np.zeros((0, len(CLASSES)), np.float32)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature minimising the negative log-likelihood on held-out clips (golden-section on log T)."""

    def nll(log_t: float) -> float:
        p = softmax(logits, math.exp(log_t))
        return float(-np.log(p[np.arange(len(labels)), labels] + 1e-12).mean())

    lo, hi = math.log(0.05), math.log(20.0)
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    for _ in range(80):
        if nll(a) < nll(b):
            hi = b
        else:
            lo = a
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    return math.exp((lo + hi) / 2)


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> tuple[pl.DataFrame, float]:
    """Reliability table (confidence bin: mean confidence, accuracy, count) and expected calibration error."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            rows.append({"bin": b, "confidence": float(conf[m].mean()), "accuracy": float(correct[m].mean()),
                         "count": int(m.sum())})
            ece += m.mean() * abs(conf[m].mean() - correct[m].mean())
    return pl.DataFrame(rows), float(ece)


def confusion(true: np.ndarray, pred: np.ndarray) -> pl.DataFrame:
    """Long confusion table over CLASSES (true, predicted, count)."""
    k = len(CLASSES)
    m = np.zeros((k, k), int)
    np.add.at(m, (true, pred), 1)
    return pl.DataFrame([{"true": CLASSES[i], "predicted": CLASSES[j], "count": int(m[i, j])}
                         for i in range(k) for j in range(k)])


def per_view_scores(true: np.ndarray, pred: np.ndarray) -> dict[str, dict[str, float]]:
    out = {}
    for i, c in enumerate(CLASSES):
        tp = int(((pred == i) & (true == i)).sum())
        out[c] = {"precision": tp / max(int((pred == i).sum()), 1), "recall": tp / max(int((true == i).sum()), 1),
                  "support": int((true == i).sum())}
    return out


def classifier_split(patient_ids, seed: int) -> pl.DataFrame:
    """The classifier's own patient groups: fit 60 %, calibrate 20 %, evaluate 20 %."""
    s = split_patients(patient_ids, ratios=(0.6, 0.2, 0.2), seed=seed + 7919)
    return s.with_columns(pl.col("split").replace({"train": "fit", "valid": "calibrate", "test": "evaluate"})
                          .alias("vc_group")).drop("split")


def label_indices(views) -> np.ndarray:
    """View names -> class indices (CLASSES order)."""
    return np.array([CLASSES.index(v) for v in views])


def _augment(x, gen):
    """Light training-only augmentation: gain and small shifts (views must survive probe movement)."""
    import torch

    n = x.shape[0]
    gain = 0.8 + 0.4 * torch.rand(n, 1, 1, 1, generator=gen)
    dx, dy = (int(v) for v in torch.randint(-3, 4, (2,), generator=gen))
    return (torch.roll(x, shifts=(dy, dx), dims=(2, 3)) * gain).clamp_(0, 1)


def train(data: str | Path, out: str | Path, model_name: str, frames: int, size: int, epochs: int, batch_size: int,
          lr: float, max_train_clips: int, seed: int = 0, workers: int = 0, progress: bool = True) -> dict:
    """Fit the classifier on one patient group, calibrate on a second, evaluate on a third; save to `out`."""
    import torch

    from .loop import Stepper

    torch.manual_seed(seed)
    data, out = Path(data), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    studies = pl.read_parquet(data / "studies.parquet", columns=["study_id", "patient_id"])
    videos = pl.read_parquet(data / "videos.parquet").join(studies, on="study_id")
    if "view" not in videos.columns:
        raise ValueError(f"{data / 'videos.parquet'}: no 'view' column: the classifier needs clips of known view "
                         "(a labelled source such as paper-csv, or views.source: label)")
    unknown = videos.filter(~pl.col("view").is_in(list(CLASSES)) | pl.col("view").is_null())
    if unknown.height:  # unlabelled clips or labels outside the classes cannot teach the classifier
        print(f"view classifier: {unknown.height} clips without a usable view label left out of training "
              f"(labels seen: {sorted(map(str, unknown['view'].unique().to_list()))[:10]}; known: {list(CLASSES)})")
        videos = videos.filter(pl.col("view").is_in(list(CLASSES)))
    if videos.height == 0:
        raise ValueError(f"{data / 'videos.parquet'}: no clip has a view label among {list(CLASSES)}")
    videos = videos.join(classifier_split(videos["patient_id"], seed), on="patient_id")
    fit = videos.filter(pl.col("vc_group") == "fit")
    fit = fit.sample(min(max_train_clips, fit.height), seed=seed, shuffle=True)
    cal = videos.filter(pl.col("vc_group") == "calibrate")
    cal = cal.sample(min(max_train_clips // 2, cal.height), seed=seed)
    ev = videos.filter(pl.col("vc_group") == "evaluate")
    t0 = time.time()
    x_fit, _ = load_clips(data, fit, frames, size, workers, progress)
    y_fit = torch.from_numpy(label_indices(fit["view"]))
    model = create_model(model_name, frames)
    stepper = Stepper(model, lr, weight_decay=0.01, steps=epochs * math.ceil(len(fit) / batch_size), warmup=0.15,
                      short_guard=False)
    gen = torch.Generator().manual_seed(seed)
    history = []
    with bar(epochs * math.ceil(len(fit) / batch_size), "view classifier: train", "step", progress) as b:
        for epoch in range(epochs):
            model.train()
            order = torch.randperm(len(fit), generator=gen)
            losses = []
            for i in range(0, len(order), batch_size):
                idx = order[i:i + batch_size]
                x = _augment(to_tensor(x_fit[idx.numpy()]), gen)
                losses.append(stepper.step(torch.nn.functional.cross_entropy(model(x), y_fit[idx])))
                b.update(1)
            history.append({"epoch": epoch, "train_loss": float(np.mean(losses))})
            print(f"epoch {epoch}: loss {history[-1]['train_loss']:.4f}", flush=True)
    del x_fit
    x_cal, _ = load_clips(data, cal, frames, size, workers, progress)
    temperature = fit_temperature(predict_logits(model, x_cal), label_indices(cal["view"]))
    del x_cal
    x_ev, _ = load_clips(data, ev, frames, size, workers, progress)
    logits = predict_logits(model, x_ev)
    y_ev = label_indices(ev["view"])
    raw, calibrated = softmax(logits), softmax(logits, temperature)
    pred = calibrated.argmax(1)
    rel_raw, ece_raw = reliability(raw, y_ev)
    rel_cal, ece_cal = reliability(calibrated, y_ev)
    torch.save({"state_dict": model.state_dict(), "model": model_name, "frames": frames, "size": size,
                "temperature": temperature, "classes": CLASSES}, out / "model.pt")
    ev.select("video_id", "view").with_columns(
        predicted=pl.Series([CLASSES[i] for i in pred]), prob=pl.Series(calibrated.max(1)),
        prob_uncalibrated=pl.Series(raw.max(1)),
    ).write_parquet(out / "eval_predictions.parquet")
    pl.concat([rel_raw.with_columns(calibration=pl.lit("before")),
               rel_cal.with_columns(calibration=pl.lit("after"))]).write_parquet(out / "reliability.parquet")
    metrics = {
        "model": model_name, "frames": frames, "size": size, "fit_clips": fit.height, "calibration_clips": cal.height,
        "evaluation_clips": ev.height, "accuracy": float((pred == y_ev).mean()), "temperature": temperature,
        "ece_before": ece_raw, "ece_after": ece_cal, "per_view": per_view_scores(y_ev, pred),
        "train_seconds": round(time.time() - t0, 1), "history": history,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def load_model(model_dir: str | Path):
    from .io.weights import load_torch

    path = Path(model_dir) / "model.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no view classifier here (run the view_classifier stage first)")
    ckpt = load_torch(path, "view classifier")
    model = create_model(ckpt["model"], ckpt["frames"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), ckpt


def predict(model_dir: str | Path, data: str | Path, videos: pl.DataFrame, workers: int = 0,
            progress: bool = True, chunk: int = 4096) -> pl.DataFrame:
    """Calibrated view prediction for every clip: video_id, pred_view, view_prob, decode_error."""
    model, ckpt = load_model(model_dir)
    preds, probs, errors = [], [], []
    for i in range(0, videos.height, chunk):
        part = videos.slice(i, chunk)
        x, err = load_clips(data, part, ckpt["frames"], ckpt["size"], workers, progress)
        p = softmax(predict_logits(model, x), ckpt["temperature"])
        preds += [CLASSES[k] for k in p.argmax(1)]
        probs += p.max(1).tolist()
        errors += err
    return videos.select("video_id").with_columns(pred_view=pl.Series(preds, dtype=pl.String),
                                                  view_prob=pl.Series(probs, dtype=pl.Float64),
                                                  decode_error=pl.Series(errors, dtype=pl.String))


def apply_filter(pred: pl.DataFrame, threshold: float = 0.9, keep=CLASSES[:5]) -> pl.DataFrame:
    """Add `kept` and `drop_reason` (unreadable, predicted OTHER, low confidence, view not kept)."""
    keep = list(keep)
    reason = (pl.when(pl.col("decode_error") != "").then(pl.lit(DROP_UNREADABLE))
              .when(pl.col("pred_view") == "OTHER").then(pl.lit(DROP_OTHER))
              .when(pl.col("view_prob") < threshold).then(pl.lit(DROP_LOW))
              .when(~pl.col("pred_view").is_in(keep)).then(pl.lit(DROP_NOT_KEPT))
              .otherwise(pl.lit("")))
    return pred.with_columns(drop_reason=reason).with_columns(kept=pl.col("drop_reason") == "")


def from_labels(videos: pl.DataFrame, source_path: str = "videos.parquet") -> pl.DataFrame:
    """The view a source carries instead of the classifier's: the paper CSV's view_label/view_prob, or the
    synthetic benchmark's true `view` (probability 1)."""
    if {"view_label", "view_prob"} <= set(videos.columns):
        label, prob = pl.col("view_label"), pl.col("view_prob").cast(pl.Float64)
    elif "view" in videos.columns and "view_label" not in videos.columns:
        label, prob = pl.col("view"), pl.lit(1.0, dtype=pl.Float64)
    else:
        missing = [c for c in ("view_label", "view_prob") if c not in videos.columns]
        raise ValueError(f"{source_path}: views.source is 'label' but column(s) {missing} are missing")
    return videos.select("video_id", label.alias("pred_view"), prob.alias("view_prob"), decode_error=pl.lit(""))


def main(argv: list[str] | None = None) -> None:
    """`python -m echolib.views train --out DIR [--params params.yaml]`: the view_classifier stage's training on
    the data and settings it lists (views.*, base.seed, base.workers), into DIR, outside the pipeline."""
    from . import config as C
    from .stage import stage_context

    ap = argparse.ArgumentParser(prog="python -m echolib.views")
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train + calibrate + evaluate the view classifier (params.yaml's views.*)")
    t.add_argument("--out", required=True)
    t.add_argument("--params", default="params.yaml", help="the project's params.yaml")
    a = ap.parse_args(argv)
    try:
        params = Path(a.params).resolve()
        ctx = stage_context("view_classifier", root=C.project_root(params.parent), params_file=params)
        claim_output(a.out, [ctx.raw])  # new, empty or echolib's own: nothing of anyone else's is replaced
    except (OutputError, C.ConfigError, FileNotFoundError) as e:
        raise SystemExit(f"error: {for_terminal(e)}") from None
    m = train_classifier(ctx, a.out)
    print(json.dumps({k: m[k] for k in ("accuracy", "temperature", "ece_before", "ece_after", "train_seconds")}))


def train_classifier(ctx, out: str | Path) -> dict:
    """The classifier a view_classifier stage context describes (views.*, base.seed, base.workers), trained on
    its input tables into `out` (marked as echolib's)."""
    cfg = ctx.views
    Path(out).mkdir(parents=True, exist_ok=True)
    mark_output(out)
    return train(ctx.raw, out, cfg.model, cfg.frames, cfg.size, cfg.epochs, cfg.batch_size, cfg.lr,
                 cfg.max_train_clips, ctx.base.seed, ctx.base.workers)



def filter_summary(filtered: pl.DataFrame, threshold: float, source: str) -> dict:
    """Counts for metrics/filter.json: kept, dropped by reason, studies left without a clip, and (when the true
    view is known) the kept clips' view accuracy and how many OTHER clips got through."""
    kept_per_study = filtered.group_by("study_id").agg(pl.col("kept").sum())
    out = {
        "clips": filtered.height, "kept": int(filtered["kept"].sum()),
        "dropped_by_reason": dict(filtered.filter(~pl.col("kept")).group_by("drop_reason").len().iter_rows()),
        "studies_without_kept_clip": int((kept_per_study["kept"] == 0).sum()),
        "threshold": threshold, "source": source,
    }
    if "view" in filtered.columns:
        k = filtered.filter(pl.col("kept"))
        out["kept_view_accuracy"] = float((k["view"] == k["pred_view"]).mean()) if k.height else None
        out["other_kept"] = int((k["view"] == "OTHER").sum())
    return out


#: what metrics/views.json keeps of the classifier's metrics
VIEW_METRICS = ("model", "accuracy", "temperature", "ece_before", "ece_after", "fit_clips", "evaluation_clips",
                "train_seconds")


def run_view_classifier(ctx) -> dict:
    """Stage `view_classifier`: train, calibrate and evaluate the classifier (params `views`) in the stage's own
    process, into data/views; returns the metrics kept in metrics/views.json."""
    m = train_classifier(ctx, ctx.out("views"))
    return {k: m[k] for k in VIEW_METRICS}


def run_filter_views(ctx) -> dict:
    """Stage `filter_views`: every clip's calibrated view and probability (or the source's own label), kept when
    its view is in `views.keep` at probability >= `views.threshold`; writes data/filtered/videos.parquet."""
    cfg = ctx.views
    videos = pl.read_parquet(ctx.raw / "videos.parquet")
    if cfg.source == "classifier":
        pred = predict(ctx.data / "views", ctx.raw, videos, workers=ctx.base.workers)
    else:
        pred = from_labels(videos, str(ctx.raw / "videos.parquet"))
    filtered = apply_filter(pred, cfg.threshold, cfg.keep)
    cols = ["video_id", "study_id", "path", "n_frames", "fps"] + (["view"] if "view" in videos.columns else [])
    filtered = videos.select(cols).join(filtered, on="video_id")
    if filtered["video_id"].n_unique() != videos.height:
        raise ValueError(f"view filter: {videos.height} clips in, {filtered.height} decisions out")
    out = ctx.out("filtered")
    out.mkdir(parents=True, exist_ok=True)
    filtered.write_parquet(out / "videos.parquet")
    print(f"kept {filtered['kept'].sum()} of {filtered.height} clips")
    return filter_summary(filtered, cfg.threshold, cfg.source)


def classifier_charts(model_dir: str | Path) -> dict:
    """The view classifier's confusion matrix (evaluation patients) and reliability plot (before/after
    temperature scaling), from what `train` saved in `model_dir`."""
    import altair as alt

    model_dir = Path(model_dir)
    ev = pl.read_parquet(model_dir / "eval_predictions.parquet")
    cm = confusion(label_indices(ev["view"]), label_indices(ev["predicted"]))
    base = alt.Chart(cm.to_pandas()).encode(x=alt.X("predicted:N", sort=list(CLASSES)),
                                            y=alt.Y("true:N", sort=list(CLASSES)))
    matrix = (base.mark_rect().encode(color=alt.Color("count:Q", scale=alt.Scale(type="symlog")))
              + base.mark_text().encode(text="count:Q")).properties(width=260, height=260)
    rel = pl.read_parquet(model_dir / "reliability.parquet")
    diag = alt.Chart(pl.DataFrame({"x": [0.0, 1.0]}).to_pandas()).mark_line(color="gray", strokeDash=[4, 4]) \
        .encode(x="x:Q", y="x:Q")
    pts = alt.Chart(rel.to_pandas()).mark_line(point=True).encode(
        x=alt.X("confidence:Q", scale=alt.Scale(domain=[0, 1])), y=alt.Y("accuracy:Q", scale=alt.Scale(domain=[0, 1])),
        color="calibration:N", tooltip=["confidence", "accuracy", "count"])
    return {"confusion": matrix, "reliability": (diag + pts).properties(width=300, height=300)}


if __name__ == "__main__":
    main()

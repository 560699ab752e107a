"""`python -m echolib.retrieve --model RUN_DIR --study FOLDER --reports REPORTS.parquet -k 5`

Embeds every clip of one study folder (through the same view filter as the pipeline, or with --view-source
all | labels:FILE.csv where no view classifier is at hand), averages them into the study embedding and prints the k most similar reports with their similarity. `--model` is a trained run folder
(holding model.pt) or one of the authors' released checkpoints (checkpoint_*.pt, scored with their
preprocessing; `--tokenizer` names a local copy of the bert-base-japanese-v3 tokenizer).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import torch

from .ingest.adapters import VIDEO_SUFFIXES
from .io.safe import for_terminal
from .io.video import read_at_rate
from .io.weights import CheckpointError
from .models.authors import AuthorsCheckpointError


class RetrievalInputError(ValueError):
    """The study folder or report table cannot be used; the message says which and why."""


def study_clips(folder: str | Path, workdir: str | Path) -> pl.DataFrame:
    """video_id, path, n_frames, fps of every usable clip in a study folder. Video files and DICOM cines alike go
    through ingestion's de-identification (the imaging sector kept, ECG trace, labels and burned-in text outside it
    blanked; text inside it blanked too) into `workdir`, with a throw-away salt; what cannot be used is named,
    never dropped silently."""
    import secrets

    from .ingest.adapters import dicom_items, video_items
    from .ingest.core import Rejections, hashed, ingest

    folder, workdir = Path(folder), Path(workdir)
    if not folder.is_dir():
        raise RetrievalInputError(f"{folder}: not a folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if not files:
        raise RetrievalInputError(f"{folder}: the study folder is empty")
    rejected = Rejections()
    videos = [p for p in files if p.suffix.lower() in VIDEO_SUFFIXES]
    items = video_items(folder, videos) if videos else dicom_items(folder, rejected)
    salt = secrets.token_bytes(32)
    tables = ingest(items, workdir, salt, rejected=rejected, workers=1, progress=False, require_reports=False)
    for r in tables["rejected"].iter_rows(named=True):  # listed, never dropped silently
        print(f"skipped clip {for_terminal(r['source'])}: {for_terminal(r['reason'])}")
    if tables["videos"].height == 0:
        what = "no usable video file" if videos else "no video file and no usable DICOM cine"
        raise RetrievalInputError(f"{folder}: {what}; e.g. "
                                  f"{tables['rejected'].select('source', 'reason').head(5).to_dicts()}")
    clips = tables["videos"].select("video_id", pl.col("path").map_elements(lambda p: str(workdir / p),
                                                                           return_dtype=pl.String), "n_frames", "fps")
    if videos:  # a video file keeps its own name (its path in the folder, without suffix): what --view-source
        # labels:FILE and the user know it by; DICOM cines keep their hashed ids
        names = {hashed(salt, "instance", it.instance or it.source, "V"): str(Path(it.source).with_suffix(""))
                 for it in items}
        clips = clips.with_columns(video_id=pl.col("video_id").replace_strict(names))
    return clips


def _clip_tensor(path: str, fps: float, ck: dict, frames: int) -> torch.Tensor:
    """The frames the model saw in training: the cache's rate, frames and size, then the evaluation window."""
    from .datasets import frame_indices, frames_tensor, model_input

    stored, _ = read_at_rate(path, ck["cache_frames"], fps, ck["cache_fps"], size=ck["size"])
    return model_input(frames_tensor(stored[frame_indices(len(stored), frames, 0)])).unsqueeze(0)


def read_candidates(reports: str | Path) -> pl.DataFrame:
    """The candidate reports: a parquet table with study_id and report, none empty."""
    try:
        table = pl.read_parquet(reports)
    except (OSError, pl.exceptions.ComputeError) as e:
        raise RetrievalInputError(f"{reports}: not a readable parquet table ({type(e).__name__})") from None
    missing = [c for c in ("study_id", "report") if c not in table.columns]
    if missing:
        raise RetrievalInputError(f"{reports}: column(s) {missing} missing")
    if table.height == 0:
        raise RetrievalInputError(f"{reports}: the table of candidate reports is empty")
    empty = table.filter(pl.col("report").is_null() | (pl.col("report").str.strip_chars() == ""))
    if empty.height:
        raise RetrievalInputError(f"{reports}: {empty.height} candidate report(s) are empty, e.g. study "
                                  f"{empty['study_id'][0]}")
    return table


def retrieve(model_dir: str | Path, study: str | Path, reports: str | Path, k: int = 5,
             views_dir: str | Path = "data/views", threshold: float = 0.9, tokenizer: str | Path | None = None,
             views: list[str] | None = None, view_source: str = "classifier") -> pl.DataFrame:
    """Top-k reports for one study folder, with similarity, rank and the number of clips used. `model_dir`: a
    run folder with model.pt, or an authors' checkpoint file (then `tokenizer` is required and `views`, by
    default all five, are the views it embeds). `view_source`: how its clips are chosen (`select_views`)."""
    scorer = load_scorer(model_dir, tokenizer, views)
    with tempfile.TemporaryDirectory(prefix="echolib-retrieve-") as work:
        return _retrieve(scorer, study_clips(study, work), study, reports, k, views_dir, threshold, view_source)


class Scorer:
    """What retrieval needs of a model: the model, the views it embeds, a clip's input tensor, the tokenizer."""

    def __init__(self, model, views: list[str], clip, tokenizer, max_length: int):
        self.model, self.views, self.clip, self.tokenizer, self.max_length = model, views, clip, tokenizer, max_length


def load_scorer(model: str | Path, tokenizer: str | Path | None = None, views: list[str] | None = None) -> Scorer:
    from .models import load_clip_model
    from .models.factory import run_views
    from .text import load_tokenizer
    from .vocab import VIEWS

    path = Path(model)
    if path.is_file():  # the authors' layout
        from .models.authors import AUTHORS_MAX_LENGTH, clip_input, load_authors_checkpoint

        net = load_authors_checkpoint(path)
        if not tokenizer:
            raise RetrievalInputError(f"{path}: an authors' checkpoint needs --tokenizer DIR (a local copy of the "
                                      f"tohoku-nlp/bert-base-japanese-v3 tokenizer)")
        tok = load_tokenizer(tokenizer)
        if len(tok) > net.text.transformer.config.vocab_size:
            raise RetrievalInputError(f"{tokenizer}: {len(tok)} tokens, more than the checkpoint's vocabulary "
                                      f"({net.text.transformer.config.vocab_size}): not the tokenizer it was trained with")
        return Scorer(net, list(views or VIEWS), lambda r: clip_input(r["path"], net.num_frames).unsqueeze(0), tok,
                      AUTHORS_MAX_LENGTH)
    net, frames, ck = load_clip_model(path / "model.pt")
    return Scorer(net, list(views or run_views(ck)), lambda r: _clip_tensor(r["path"], r["fps"], ck, frames),
                  load_tokenizer(tokenizer or ck["tokenizer_dir"]), ck["max_length"])


def select_views(clips: pl.DataFrame, views: list[str], source: str = "classifier", views_dir="data/views",
                 threshold: float = 0.9, study="") -> tuple[pl.DataFrame, str]:
    """The clips a model embeds, and one line that says how they were chosen. `source`: "classifier" (the view
    classifier in `views_dir`, clips of the model's views at p >= threshold), "all" (every clip, no view filter),
    or "labels:FILE" (a CSV with columns `clip` (file name or stem) and `view`: the clips labelled with one of the
    model's views; a clip without a label is named, never dropped silently)."""
    from .views import apply_filter, predict

    n = clips.height
    if source == "all":
        return clips, f"views: all {n} clips, no view filter (--view-source all)"
    if source.startswith("labels:"):
        path = Path(source[len("labels:"):])
        if not path.is_file():
            raise RetrievalInputError(f"--view-source {source}: {path} does not exist")
        try:
            lab = pl.read_csv(path, infer_schema_length=0)
        except Exception as e:  # noqa: BLE001 - any unreadable table is one line naming it
            raise RetrievalInputError(f"--view-source {source}: {path} is not a readable CSV ({type(e).__name__})") from None
        if not {"clip", "view"} <= set(lab.columns):
            raise RetrievalInputError(f"--view-source {source}: {path} needs columns clip and view, has {lab.columns}")
        lab = lab.select(pl.col("clip").str.replace(r"\.[^.]*$", "").alias("video_id"),
                         pl.col("view").str.strip_chars().str.to_uppercase().alias("pred_view"))
        for vid in clips.join(lab, on="video_id", how="anti")["video_id"]:
            print(f"skipped clip {for_terminal(vid)}: no label in {for_terminal(path.name)}")
        kept = clips.join(lab, on="video_id").filter(pl.col("pred_view").is_in(views))
        if kept.height == 0:
            raise RetrievalInputError(f"{study}: no clip labelled with a view of this model ({views}) in {path.name}")
        return kept, f"views: labels from {path.name}: {kept.height} of {n} clips of {views}"
    if source != "classifier":
        raise RetrievalInputError(f"--view-source {source}: use classifier, all or labels:FILE.csv")
    try:
        pred = apply_filter(predict(views_dir, "/", clips, workers=1, progress=False), threshold)
    except FileNotFoundError:
        if (Path(views_dir) / "model.pt").is_file():
            raise
        raise RetrievalInputError(f"no view classifier in {views_dir} (train one with the view_classifier stage, "
                                  f"name one with --views-model DIR, or choose --view-source all | labels:FILE.csv)"
                                  ) from None
    kept = clips.join(pred, on="video_id").filter(pl.col("kept") & pl.col("pred_view").is_in(views))
    if kept.height == 0:
        seen = pred.select("pred_view", "view_prob", "drop_reason").to_dicts()
        raise RetrievalInputError(f"{study}: no usable view for this model (needs {views} at p >= {threshold}); "
                                  f"the view filter saw {seen}")
    return kept, f"views: the view classifier in {views_dir}: {kept.height} of {n} clips of {views} at p >= {threshold}"


def _retrieve(scorer: Scorer, clips: pl.DataFrame, study, reports, k: int, views_dir, threshold: float,
              view_source: str = "classifier") -> pl.DataFrame:
    from .interpret import embed_sentences

    model = scorer.model
    kept, how = select_views(clips, scorer.views, view_source, views_dir, threshold, study)
    print(for_terminal(how))  # it names the user's files and folders
    with torch.inference_mode():
        embs = [model.encode_video(scorer.clip(r)) for r in kept.iter_rows(named=True)]
        study_emb = torch.nn.functional.normalize(torch.cat(embs).mean(0, keepdim=True), dim=-1)
    table = read_candidates(reports)
    text = torch.cat([embed_sentences(model, scorer.tokenizer, table["report"][i:i + 256].to_list(),
                                      scorer.max_length) for i in range(0, table.height, 256)])
    sims = (study_emb @ text.T)[0].numpy()
    top = np.argsort(-sims)[:k]
    return table[top.tolist()].select("study_id", "report").with_columns(
        similarity=pl.Series(sims[top].round(4)), rank=pl.Series(np.arange(1, len(top) + 1)),
        clips_used=pl.lit(kept.height))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m echolib.retrieve", description=__doc__)
    ap.add_argument("--model", required=True, help="a trained run folder holding model.pt (data/runs/RUN/seedS), "
                    "or one of the authors' released checkpoint_*.pt files")
    ap.add_argument("--tokenizer", help="a local tokenizer folder (required with an authors' checkpoint: their "
                    "bert-base-japanese-v3)")
    ap.add_argument("--views", help="comma-separated views to embed (default: the run's; all five for an authors' "
                    "checkpoint)")
    ap.add_argument("--study", required=True, help="folder with the study's clips (video files or DICOM cines)")
    ap.add_argument("--reports", required=True, help="parquet with study_id and report columns")
    ap.add_argument("-k", type=int, default=5)
    ap.add_argument("--views-model", default="data/views", help="the view classifier's folder (--view-source "
                    "classifier)")
    ap.add_argument("--view-source", default="classifier", help="classifier (default: --views-model at "
                    "--threshold) | all (every clip, no view filter) | labels:FILE.csv (columns clip, view)")
    ap.add_argument("--threshold", type=float, default=0.9)
    a = ap.parse_args(argv)
    if a.k < 1:
        raise SystemExit(f"error: -k must be at least 1, got {a.k}")
    if not 0 <= a.threshold <= 1:
        raise SystemExit(f"error: --threshold must lie in [0, 1], got {a.threshold}")
    try:
        views = [v.strip() for v in a.views.split(",") if v.strip()] if a.views else None
        res = retrieve(a.model, a.study, a.reports, a.k, a.views_model, a.threshold, a.tokenizer, views,
                       a.view_source)
    except (RetrievalInputError, FileNotFoundError, AuthorsCheckpointError, CheckpointError) as e:
        raise SystemExit(f"error: {for_terminal(e)}") from None
    for r in res.iter_rows(named=True):  # report text comes from a user's table: no escape sequence reaches the terminal
        print(f"{r['rank']}. {for_terminal(r['study_id'])}  similarity {r['similarity']:.3f}\n"
              f"   {for_terminal(r['report'][:200])}")


if __name__ == "__main__":
    main()

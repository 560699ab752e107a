"""Study-level evaluation of a trained run: embeddings of the test clips, ranks both ways, zero-shot and probe.

A study's video embedding is the mean of its clips' embeddings (re-normalised); every evaluated study's report
is a candidate. Evaluation uses the test studies that have a 4CH clip (the paper's 5,515 of 7,050), so every run
is scored on the same studies; MultiVideo-4CH is the MultiVideo model restricted to 4CH clips at inference.
Comparing runs (Table 1, bootstrap CIs, differences) is `echolib.compare`.
"""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import polars as pl
import torch

from . import encoders
from .datasets import frame_indices, frames_tensor, model_input
from .models import load_clip_model
from .progress import bar as progress_bar
from .ranking import (
    KS,
    metrics_from_ranks,
    query_ranks,
    ranks_from_embeddings,
    ranks_leaving_out_groups,
    study_embeddings,
)
from .store import StoreBase, open_store

METRICS = ("mcmrr_v2r", "mcmrr_r2v", "median_rank_v2r", "median_rank_r2v", *(f"r{k}_v2r" for k in KS),
           *(f"r{k}_r2v" for k in KS))


class ArchiveClips:
    """A model that reads each clip from the archive's own video file with its own preprocessing and tokenizes
    reports itself: the authors' released checkpoints (224 px, their mean and std, the first 2T frames at stride
    2, their tokenizer and 256 tokens). The clips and studies scored are the pipeline's (view filter, split)."""

    def __init__(self, model, raw_dir: str | Path, tokenizer, max_length: int):
        self.model, self.tokenizer, self.max_length = model, tokenizer, max_length
        raw_dir = Path(raw_dir)
        videos = pl.read_parquet(raw_dir / "videos.parquet")
        self.path = {v: str(raw_dir / p) for v, p in zip(videos["video_id"], videos["path"], strict=True)}
        studies = pl.read_parquet(raw_dir / "studies.parquet")
        self.report = dict(zip(studies["study_id"], studies["report"], strict=True))

    def encode_video(self, x):
        return self.model.encode_video(x)

    def encode_text(self, ids, mask):
        return self.model.encode_text(ids, mask)

    def scale(self):
        return self.model.scale()

    @torch.inference_mode()
    def embed_rows(self, rows: pl.DataFrame, batch_size: int = 8) -> torch.Tensor:
        from .models.authors import clip_input

        out = []
        ids = rows["video_id"].to_list()
        with progress_bar(len(ids), "embed clips (the archive's files)", "clip") as bar:
            for i in range(0, len(ids), batch_size):
                x = torch.stack([clip_input(self.path[v], self.model.num_frames) for v in ids[i:i + batch_size]])
                out.append(self.model.encode_video(x).float())
                bar.update(len(x))
        return torch.cat(out) if out else torch.zeros(0, 1)

    @torch.inference_mode()
    def embed_study_reports(self, study_ids: list[str], batch_size: int = 64) -> torch.Tensor:
        from .interpret import embed_sentences

        texts = [self.report[s] for s in study_ids]
        return torch.cat([embed_sentences(self.model, self.tokenizer, texts[i:i + batch_size], self.max_length)
                          for i in range(0, len(texts), batch_size)])


#: frame-order ablations of a video run (evaluation only): what its embedding owes to the order of the frames
ORDERS = ("reversed", "shuffled", "still")


def reorder(idx: np.ndarray, order: str | None, gen: np.random.Generator) -> np.ndarray:
    """The evaluation window's frame indices as an ablation reads them: reversed, shuffled (a new permutation per
    clip from `gen`), or still (the middle frame repeated); unchanged for None."""
    if order is None:
        return idx
    if order == "reversed":
        return idx[::-1].copy()
    if order == "shuffled":
        return idx[gen.permutation(len(idx))]
    if order == "still":
        return np.full_like(idx, idx[len(idx) // 2])
    raise ValueError(f"unknown frame order {order!r}; known: {ORDERS}")


@torch.inference_mode()
def embed_clips(model, cache: StoreBase, rows: pl.DataFrame, frames: int, batch_size: int = 64,
                order: str | None = None, seed: int = 0) -> torch.Tensor:
    """Video embeddings of the clips of `rows` (in order): the evaluation window (`frames` from offset 0), its
    frames in another `order` for the temporal ablations (`reorder`)."""
    if isinstance(model, ArchiveClips):
        return model.embed_rows(rows)
    gen = np.random.default_rng([seed, 0x0D0E])
    out, batch = [], []

    def flush():
        out.append(model.encode_video(model_input(torch.stack(batch))).float())
        batch.clear()

    with progress_bar(len(rows), "embed clips", "clip") as bar:
        for _, clip in cache.iter_frames(rows):
            batch.append(frames_tensor(clip[reorder(frame_indices(len(clip), frames, 0), order, gen)]))
            if len(batch) == batch_size:
                flush()
                bar.update(batch_size)
        if batch:
            bar.update(len(batch))
            flush()
    return torch.cat(out) if out else torch.zeros(0, 1)


@torch.inference_mode()
def embed_reports(model, cache: StoreBase, study_ids: list[str], batch_size: int = 128) -> torch.Tensor:
    if isinstance(model, ArchiveClips):
        return model.embed_study_reports(study_ids)
    idx = [cache.study_row[s] for s in study_ids]
    out = []
    for i in range(0, len(idx), batch_size):
        ids = torch.from_numpy(cache.input_ids[idx[i:i + batch_size]].astype(np.int64))
        mask = torch.from_numpy(cache.attention_mask[idx[i:i + batch_size]].astype(np.int64))
        n = int(mask.sum(1).max())
        out.append(model.encode_text(ids[:, :n], mask[:, :n]).float())
    return torch.cat(out)


class ClipEmbeddings:
    """`embed_clips` of one model with each clip embedded once: the variants of a run (all views, 4CH, matched
    draws, the probe's training studies, the view dropout) share clips, and each (clip, frames) pair is embedded the
    first time a variant asks for it and reused after. A frame-order ablation (`order`) is embedded afresh (its
    shuffles depend on the call). `computed` counts the clips embedded, `asked` those requested."""

    def __init__(self, model, cache: StoreBase):
        self.model, self.cache, self.memo = model, cache, {}
        self.computed = self.asked = 0

    def __call__(self, rows: pl.DataFrame, frames: int, order: str | None = None, seed: int = 0) -> torch.Tensor:
        self.asked += len(rows)
        if order is not None or "row" not in rows.columns:
            self.computed += len(rows)
            return embed_clips(self.model, self.cache, rows, frames, order=order, seed=seed)
        keys = [(r, frames) for r in rows["row"].to_list()]
        todo, seen = [], set()
        for i, k in enumerate(keys):  # one position per clip not embedded yet
            if k not in self.memo and k not in seen:
                seen.add(k)
                todo.append(i)
        if todo:
            new = embed_clips(self.model, self.cache, rows[todo], frames)
            self.computed += len(todo)
            for i, e in zip(todo, new, strict=True):
                self.memo[keys[i]] = e
        return torch.stack([self.memo[k] for k in keys]) if keys else torch.zeros(0, 1)


def match_clip_counts(rows: pl.DataFrame, like: pl.DataFrame, seed: int = 0) -> pl.DataFrame:
    """Per study, a seeded random draw from `rows` of as many clips as the study has in `like` (at least one):
    a multi-view model averaging as many clips as a single-view model does."""
    want = dict(like.group_by("study_id").len().iter_rows())
    shuffled = rows.sample(fraction=1.0, shuffle=True, seed=seed).with_columns(
        k=pl.int_range(pl.len()).over("study_id"))
    n = shuffled["study_id"].replace_strict(want, default=1, return_dtype=pl.Int64)
    return shuffled.filter(pl.col("k") < n).drop("k").sort("row")


def embed_studies(model, frames: int, cache: StoreBase, rows: pl.DataFrame, studies: list[str],
                  order: str | None = None, seed: int = 0, embed: ClipEmbeddings | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings of the clips in `rows` and of `studies` (mean of each study's clip embeddings, re-normalised),
    in the order of `studies`; every study must have a row. `order`: a frame-order ablation (`reorder`). `embed`:
    a ClipEmbeddings of `model` shared with other calls (each clip embedded once)."""
    clip_emb = (embed or ClipEmbeddings(model, cache))(rows, frames, order, seed)
    study_emb, order = study_embeddings(clip_emb, rows["study_id"].to_list())
    pos = {s: i for i, s in enumerate(order)}
    return clip_emb, study_emb[[pos[s] for s in studies]]


def probe_train_studies(cache: StoreBase, split: pl.DataFrame, views: list[str], n: int, seed: int = 0
                        ) -> pl.DataFrame:
    """The clips of views `views` of up to `n` training studies (a seeded draw) that have such a clip: what a
    linear probe of the run's study embeddings is fitted on."""
    train = split.filter(pl.col("split") == "train")["study_id"].to_list()
    rows = cache.index.filter(pl.col("study_id").is_in(train) & pl.col("pred_view").is_in(views))
    ids = sorted(rows["study_id"].unique())
    if len(ids) > n:
        keep = np.random.default_rng(seed).choice(len(ids), size=n, replace=False)
        rows = rows.filter(pl.col("study_id").is_in([ids[i] for i in keep]))
    return rows


def evaluate_views(model, frames: int, cache: StoreBase, studies: list[str], views: list[str],
                   match_views: list[str] | None = None, seed: int = 0, patients: list[str] | None = None,
                   order: str | None = None, embed: ClipEmbeddings | None = None) -> dict:
    """Study-level ranks on `studies` using only clips of `views`, plus the per-clip variant. With `match_views`,
    each study averages only as many clips (drawn at random from `views`) as it has clips of `match_views`. With
    `patients` (aligned with `studies`), the ranks also with the other studies of each query's patient left out of
    the candidates (rank_*_xp) and how many there were (same_patient)."""
    rows = cache.index.filter(pl.col("study_id").is_in(studies) & pl.col("pred_view").is_in(views))
    if match_views:
        like = cache.index.filter(pl.col("study_id").is_in(studies) & pl.col("pred_view").is_in(match_views))
        rows = match_clip_counts(rows, like, seed)
    missing = sorted(set(studies) - set(rows["study_id"].unique()))
    if missing:
        raise ValueError(f"{len(missing)} evaluation studies have no clip of views {views}, e.g. {missing[:3]}")
    clip_emb, study_emb = embed_studies(model, frames, cache, rows, studies, order, seed, embed)
    pos_eval = {s: i for i, s in enumerate(studies)}
    text = torch.nn.functional.normalize(embed_reports(model, cache, studies), dim=-1)
    v2r, r2v = ranks_from_embeddings(study_emb, text)
    # per clip: each clip against every study report (video -> report only)
    clip_ranks = query_ranks(torch.nn.functional.normalize(clip_emb, dim=-1), text,
                             [pos_eval[s] for s in rows["study_id"]])
    per_clip = {"n_clips": int(len(clip_ranks)), "mcmrr_v2r": float(clip_ranks.mean()),
                **{f"r{k}_v2r": float((clip_ranks <= k).mean()) for k in KS}}
    counts = dict(rows.group_by("study_id").len().iter_rows())
    top1 = torch.cat([(study_emb[i:i + 4096] @ text.T).argmax(1) for i in range(0, len(studies), 4096)])
    ranks = pl.DataFrame({"study_id": studies, "rank_v2r": v2r, "rank_r2v": r2v,
                          "n_clips": [counts[s] for s in studies], "top1_v2r": [studies[i] for i in top1.tolist()]})
    if patients is not None:
        xv, xr = ranks_leaving_out_groups(study_emb, text, patients)
        same = pl.DataFrame({"p": patients}).group_by("p").len()
        others = dict(zip(same["p"], same["len"] - 1, strict=True))
        ranks = ranks.with_columns(rank_v2r_xp=pl.Series(xv), rank_r2v_xp=pl.Series(xr),
                                   same_patient=pl.Series([others[p] for p in patients], dtype=pl.Int64))
    return {"metrics": metrics_from_ranks(v2r, r2v), "per_clip": per_clip, "ranks": ranks,
            "study_emb": study_emb, "text_emb": text}


#: the view-dropout ranks of a seed, in its run's own variant folder (eval/RUN/RUN/seedS/), one row per study and row
DROPOUT_FILE = "view_dropout.parquet"


def dropout_subsets(views: list[str]) -> dict[str, list[str]]:
    """The view-dropout rows of a multi-view run, label -> views kept: all, each view removed, each view alone."""
    return {"all": list(views), **{f"without-{v}": [w for w in views if w != v] for v in views},
            **{f"only-{v}": [v] for v in views}}


def view_dropout(model, frames: int, cache: StoreBase, studies: list[str], views: list[str],
                 embed: ClipEmbeddings | None = None) -> dict[str, pl.DataFrame]:
    """Which views carry a multi-view run's retrieval (issue #27): on the evaluation studies that have a clip of
    every view in `views` (one fixed set of studies and candidates, so that every row compares with every other),
    the study-level ranks (video -> report and back) with all views, with each view removed, and with each view
    alone (`dropout_subsets`). Each clip is embedded once; a subset's study embedding is the mean of its clips'.
    {} when fewer than two studies have every view."""
    rows = cache.index.filter(pl.col("study_id").is_in(studies) & pl.col("pred_view").is_in(views))
    per = rows.group_by("study_id").agg(pl.col("pred_view").n_unique().alias("k"))
    complete = sorted(per.filter(pl.col("k") == len(set(views)))["study_id"])
    if len(complete) < 2:
        return {}
    rows = rows.filter(pl.col("study_id").is_in(complete))
    clip_emb = (embed or ClipEmbeddings(model, cache))(rows, frames)
    text = torch.nn.functional.normalize(embed_reports(model, cache, complete), dim=-1)
    view_of, study_of = rows["pred_view"].to_numpy(), rows["study_id"].to_list()
    out = {}
    for label, keep in dropout_subsets(views).items():
        mask = np.isin(view_of, keep)
        ids = [s for s, m in zip(study_of, mask, strict=True) if m]
        emb, order = study_embeddings(clip_emb[torch.from_numpy(mask)], ids)
        pos = {s: i for i, s in enumerate(order)}
        v2r, r2v = ranks_from_embeddings(emb[[pos[s] for s in complete]], text)
        out[label] = pl.DataFrame({"study_id": complete, "rank_v2r": v2r, "rank_r2v": r2v})
    return out


def variants_of(run_name: str, views: list[str], image: bool = False) -> dict[str, tuple]:
    """Inference variants of a run, name -> (views used, views whose clip count is matched, frames per clip or
    None for the model's own, frame order or None). A run that sees several views also gets `<run>-4CH` (4CH clips
    only: what its clips are worth) and `<run>-matched` (all views, but only as many clips per study as the study
    has 4CH clips: what averaging more clips is worth); an image model also `<run>-1frame` (one frame per clip
    instead of the mean of every frame, the paper's rule); a video model of the 4CH view `<run>-reversed`,
    `-shuffled` and `-still` (its frames reversed, shuffled, or one frame repeated: what it owes to their order
    and to motion)."""
    out = {run_name: (views, None, None, None)}
    if len(views) > 1 and "4CH" in views:
        out[f"{run_name}-4CH"] = (["4CH"], None, None, None)
        out[f"{run_name}-matched"] = (views, ["4CH"], None, None)
    if image:
        out[f"{run_name}-1frame"] = (views, None, 1, None)
    elif list(views) == ["4CH"]:
        out.update({f"{run_name}-{o}": (views, None, None, o) for o in ORDERS})
    return out


def evaluate_run(run_dir: str | Path, cache_dir: str | Path, split_path: str | Path, out_dir: str | Path,
                 studies_path: str | Path | None = None, n_boot: int = 1000, seed: int = 0,
                 probe_studies: int = 1000, level: float = 0.95, raw_dir: str | Path | None = None) -> dict:
    """Evaluate every seed of a run (and its 4CH-only variant) on the 4CH test studies.

    Ranks go to out_dir/<variant>/<seed>/ranks.parquet (out_dir is the run's own evaluation folder). With
    `studies_path` (ground-truth findings, as the synthetic benchmark has), zero-shot interpretation goes to
    result["interpret"][variant][seed] and, when `probe_studies` > 0, a linear probe of the study embeddings
    fitted on up to that many training studies to result["probe"][variant][seed]; the per-study predictions of
    both go to out_dir/<variant>/<seed>/findings.parquet. A run of the authors' released model reads its clips
    from the video files under `raw_dir` (ArchiveClips)."""
    from .interpret import interpret, probe
    from .models.factory import run_views
    from .text import load_tokenizer
    from .vocab import FINDINGS

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    cache = open_store(cache_dir)
    split = pl.read_parquet(split_path)
    studies = sorted(set(split.filter(pl.col("eval_4ch"))["study_id"]) & set(cache.study_ids))
    if not studies:
        raise ValueError(f"{split_path}: no test study with a 4CH clip to evaluate on")
    seeds = sorted(run_dir.glob("seed*/model.pt"))
    if not seeds:
        raise FileNotFoundError(f"{run_dir}: no seed*/model.pt (did the train stage run?)")
    patients = None
    if "patient_id" in split.columns:
        patient_of = dict(zip(split["study_id"], split["patient_id"], strict=True))
        patients = [patient_of[s] for s in studies]
    result: dict = {"n_studies": len(studies), "variants": {}, "interpret": {}, "probe": {}, "clip_embeddings": {},
                    "queries_with_same_patient_candidates": sum(
                        n for n in collections.Counter(patients or []).values() if n > 1)}
    truth = known = None
    if studies_path is not None:
        known = pl.read_parquet(studies_path)
        truth = pl.DataFrame({"study_id": studies}).join(known, on="study_id", how="left")
    for model_pt in seeds:
        model, frames, ck = load_clip_model(model_pt)
        seed_dir = model_pt.parent.name
        tok = load_tokenizer(ck["tokenizer_dir"]) if truth is not None or "authors_checkpoint" in ck else None
        if "authors_checkpoint" in ck:
            from .models.authors import AUTHORS_MAX_LENGTH

            if raw_dir is None:
                raise ValueError(f"{model_pt}: the authors' model reads the video files: pass raw_dir")
            model = ArchiveClips(model, raw_dir, tok, AUTHORS_MAX_LENGTH)
        image = ck["run"]["encoder"] in encoders.names("image")
        embed = ClipEmbeddings(model, cache)  # every variant of this seed shares its clips' embeddings
        for name, (views, match, n_frames, order) in variants_of(run_dir.name, run_views(ck), image).items():
            if order is not None and isinstance(model, ArchiveClips):
                continue  # the authors' model reads its own frames from the files
            r = evaluate_views(model, n_frames or frames, cache, studies, views, match, seed, patients, order, embed)
            d = out_dir / name / seed_dir
            d.mkdir(parents=True, exist_ok=True)
            r["ranks"].write_parquet(d / "ranks.parquet")
            v = result["variants"].setdefault(name, {"views": views, "matched_to": match, "per_seed": {}})
            v["per_seed"][seed_dir] = {"study": r["metrics"], "per_clip": r["per_clip"]}
            if truth is not None and match is None and n_frames is None and order is None:
                zs = interpret(model, tok, r["study_emb"], truth, n_boot, seed, level, study_ids=studies)
                found = [zs.pop("predictions")]
                result["interpret"].setdefault(name, {})[seed_dir] = zs
                if probe_studies > 0:
                    rows = probe_train_studies(cache, split, views, probe_studies, seed)
                    ids = sorted(rows["study_id"].unique())
                    train_truth = pl.DataFrame({"study_id": ids}).join(known, on="study_id", how="left")
                    _, train_emb = embed_studies(model, frames, cache, rows, ids, embed=embed)
                    pr = probe(train_emb, train_truth, r["study_emb"], truth, FINDINGS, n_boot, seed, level,
                               test_ids=studies)
                    found.append(pr.pop("predictions"))
                    result["probe"].setdefault(name, {})[seed_dir] = pr
                pl.concat(found).write_parquet(d / "findings.parquet")
        views_all = run_views(ck)
        if len(views_all) > 1 and (dropped := view_dropout(model, frames, cache, studies, views_all, embed)):
            d = out_dir / run_dir.name / seed_dir  # beside the run's own ranks, under another name (DROPOUT_FILE)
            pl.concat([df.with_columns(views=pl.lit(k)) for k, df in dropped.items()]).write_parquet(d / DROPOUT_FILE)
            drop = result.setdefault("view_dropout", {"views": views_all, "per_seed": {}})
            drop["n_studies"] = len(next(iter(dropped.values())))
            drop["per_seed"][seed_dir] = {k: metrics_from_ranks(df["rank_v2r"].to_numpy(), df["rank_r2v"].to_numpy())
                                          for k, df in dropped.items()}
        result["clip_embeddings"][seed_dir] = {"asked": embed.asked, "computed": embed.computed}
    for v in result["variants"].values():
        per = [s["study"] for s in v["per_seed"].values()]
        v["study"] = {m: float(np.mean([p[m] for p in per])) for m in METRICS}
        v["study_sd"] = {m: float(np.std([p[m] for p in per], ddof=1)) if len(per) > 1 else 0.0 for m in METRICS}
        v["study"]["n"] = len(studies)
        clips = [s["per_clip"] for s in v["per_seed"].values()]
        v["per_clip"] = {m: float(np.mean([c[m] for c in clips])) for m in clips[0]}
    return result



def run_evaluate(ctx) -> dict[str, dict]:
    """Stage `evaluate@RUN`: every seed of data/runs/RUN on the test studies with a 4CH clip, ranks and findings
    into data/eval/RUN; returns {"retrieval": metrics/retrieval/RUN.json, "interpret": metrics/interpret/RUN.json}."""
    e = ctx.evaluate
    res = evaluate_run(ctx.data / "runs" / ctx.key, ctx.data / "cache", ctx.data / "split" / "studies.parquet",
                       ctx.out("eval", ctx.key), studies_path=ctx.raw / "studies.parquet", n_boot=e.n_bootstrap,
                       seed=ctx.base.seed, probe_studies=e.probe_studies, level=e.level, raw_dir=ctx.raw)
    for name, v in res["variants"].items():
        m = v["study"]
        if not (1 <= m["mcmrr_v2r"] <= res["n_studies"] and 0 <= m["r10_v2r"] <= 1):
            raise ValueError(f"evaluate@{ctx.key}: {name} has impossible metrics {m}")
    interp = {"zero_shot": res.pop("interpret"), "probe": res.pop("probe")}
    return {"retrieval": res, "interpret": interp}

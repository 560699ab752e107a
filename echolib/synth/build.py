"""Generate the synthetic benchmark: patients.parquet, studies.parquet, videos.parquet and the videos.

Deterministic: every clip has its own seed derived from (seed, clip index), studies are drawn sequentially
from one generator, and videos are encoded single-threaded; the same profile and seed give identical tables
and identical decoded frames whatever the number of worker processes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import polars as pl

from ..io.files import claim_output
from ..io.tables import write_tables
from ..io.video import write_video
from ..proc import map_jobs
from ..vocab import FINDINGS, OTHER_KINDS, VIEWS
from .findings import sample_patients, sample_studies
from .render import ClipSpec, render_clip
from .reports import write_report

CLIPS_PER_VIEW_P = {"LAX": [0.1, 0.6, 0.22, 0.08], "SAX": [0.15, 0.6, 0.2, 0.05], "2CH": [0.12, 0.62, 0.2, 0.06],
                    "3CH": [0.15, 0.6, 0.2, 0.05], "4CH": [0.16, 0.5, 0.26, 0.08]}
DOPPLER_P = {"LAX": 0.35, "SAX": 0.1, "2CH": 0.3, "3CH": 0.35, "4CH": 0.4, "A5C": 0.4, "subcostal": 0.1,
             "spectral": 0.0}
RENDER_KEYS = ("ef", "rwma_territory", "rwma_grade", "lvdd", "ivst", "pwt", "lad", "aod", "rv_dilation",
               "effusion", "as_grade", "mr", "ar", "tr", "heart_rate")


def _plan_clips(studies: list[dict], rng: np.random.Generator) -> list[dict]:
    clips = []
    for s in studies:
        views = []
        for v in VIEWS:
            views += [v] * int(rng.choice(4, p=CLIPS_PER_VIEW_P[v]))
        views += list(rng.choice(OTHER_KINDS, size=int(rng.poisson(0.9)), p=[0.4, 0.35, 0.25]))
        order = rng.permutation(len(views))
        for j, k in enumerate(order):
            kind = str(views[k])
            poor = rng.random() < 0.1
            clips.append({
                "video_id": f"{s['study_id']}-V{j:02d}",
                "study_id": s["study_id"],
                "view": kind if kind in VIEWS else "OTHER",
                "other_kind": "" if kind in VIEWS else kind,
                "fps": float(rng.choice([30, 40, 45, 50])),
                "doppler": bool(rng.random() < DOPPLER_P[kind]),
                "quality": round(float(rng.uniform(0.15, 0.45) if poor else rng.uniform(0.55, 1.0)), 3),
                "clip_seed": int(rng.integers(2**63 - 1)),
            })
    return clips


def _one_thread_per_worker() -> None:
    """In a worker process (one per core), torch's sampling uses one thread: two threads per worker on every core
    only wait for each other."""
    import multiprocessing

    global _THREADS_SET
    if not _THREADS_SET and multiprocessing.parent_process() is not None:
        import torch

        torch.set_num_threads(1)
        _THREADS_SET = True


_THREADS_SET = False


def _render_one(job: tuple) -> tuple[str, int, int, int, int]:
    clip, state, out_dir, synth = job
    _one_thread_per_worker()
    kind = clip["other_kind"] or clip["view"]
    n_frames = max(2, round(synth.seconds * clip["fps"]))  # a time axis at the clip's own frame rate
    spec = ClipSpec(kind, clip["doppler"], clip["quality"], clip["fps"], n_frames, synth.size, clip["clip_seed"])
    frames = render_clip(state, spec, control=synth.control)
    path = Path(out_dir) / clip["path"]
    # spectral strips are flat graphics: lossless is small for them, and x264 was not byte-reproducible on them
    write_video(path, frames, clip["fps"], lossless=kind == "spectral", quality=synth.quality)
    t, h, w, _ = frames.shape
    return clip["video_id"], t, h, w, path.stat().st_size


def generate(out_dir: str | Path, synth, seed: int = 0, workers: int = 0, progress: bool = True
             ) -> dict[str, pl.DataFrame]:
    """Write the benchmark under `out_dir` and return its three tables.

    `synth` holds n_patients, size, seconds, control, quality, report_style (params.yaml's `synth` section, or
    `echolib.config.preset(profile, "synth")`); `workers` = 0 uses every core.
    """
    out = Path(out_dir)
    claim_output(out)  # new, empty or echolib's own: its old videos may go
    if (out / "videos").exists():
        shutil.rmtree(out / "videos")
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xEC40]))
    patients = sample_patients(synth.n_patients, rng)
    studies = sample_studies(patients, rng)
    sex = {p["patient_id"]: p["sex"] for p in patients}
    prev: dict[str, dict] = {}
    for s in studies:
        s["aod"] = 32.0 if sex[s["patient_id"]] == "M" else 29.0
        s["report"] = write_report(s, rng, prev.get(s["patient_id"]), synth.report_style)
        prev[s["patient_id"]] = s
    clips = _plan_clips(studies, rng)
    for c in clips:
        c["path"] = f"videos/{c['study_id']}/{c['video_id']}.mp4"
    by_study = {s["study_id"]: {k: s[k] for k in RENDER_KEYS} for s in studies}
    jobs = [(c, by_study[c["study_id"]], str(out), synth) for c in clips]
    results = {r[0]: r for r in map_jobs(_render_one, jobs, workers, "render", "clip", progress)}
    for c in clips:
        _, c["n_frames"], c["height"], c["width"], c["bytes"] = results[c["video_id"]]
    tables = _tables(patients, studies, clips)
    write_tables(out, tables)
    return tables


PATIENT_COLUMNS = ("patient_id", "sex", "age", "height_cm", "n_studies")
STUDY_COLUMNS = ("study_id", "patient_id", "study_index", "study_date", "report", "ef", *FINDINGS,
                 "lvh_pattern", "lvdd", "ivst", "pwt", "lad", "aod", "heart_rate",
                 "m_lvdd", "m_lvds", "m_ivst", "m_pwt", "m_ef", "m_lad", "m_aod", "m_ea", "m_trpg", "m_av_vmax",
                 "m_av_meanpg", "m_lavi", "m_lvmi", "m_rvd")
VIDEO_COLUMNS = ("video_id", "study_id", "path", "view", "other_kind", "fps", "n_frames", "height", "width",
                 "doppler", "quality", "bytes")


def _tables(patients, studies, clips) -> dict[str, pl.DataFrame]:
    return {
        "patients": pl.DataFrame([{k: p[k] for k in PATIENT_COLUMNS} for p in patients]),
        "studies": pl.DataFrame([{k: s[k] for k in STUDY_COLUMNS} for s in studies]),
        "videos": pl.DataFrame([{k: c[k] for k in VIDEO_COLUMNS} for c in clips]),
    }


def run_synthesize(ctx) -> dict:
    """Stage `synthesize`: the benchmark under data/raw (params: base.seed, base.workers, synth); its metrics."""
    from .summary import stage_metrics

    return stage_metrics(generate(ctx.out("raw"), ctx.synth, ctx.base.seed, ctx.base.workers))

"""Shared ingestion core: de-identified keys, per-clip decode -> sector mask -> video, and the output tables.

Every adapter turns its source into `Item`s; `ingest()` writes the same tables as the synthetic generator
(patients.parquet, studies.parquet, videos.parquet) plus rejected.parquet (source, reason). Identifiers (patient
ID and name, birth date, accession, institution, UIDs, free-text tags) are read into memory only to group
clips; tables, videos and messages carry salted hashes instead. `source` paths in rejected.parquet are relative
to the source root, so that a rejected file can be found and fixed by whoever holds the archive.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import os
import secrets
from pathlib import Path

import numpy as np
import polars as pl

from ..io.dicom import DicomError, load_cine
from ..io.mask import apply_mask, sector_mask
from ..io.tables import write_tables
from ..io.video import VideoDecodeError, read_clip, video_info, write_video
from ..proc import map_jobs
from ..progress import track

VIDEO_QUALITY = 3  # MPEG-4 fixed quantiser for the masked clips (2 best .. 31)
MIN_SIDE = 32  # a cine smaller than this (pixels, either way) is not an echo clip


@dataclasses.dataclass
class Item:
    """One candidate clip. Raw keys are identifiers: they live in memory only and are hashed before output."""

    source: str                  # path relative to the source root (recorded for rejected files)
    path: Path
    kind: str = "dicom"          # dicom | video
    patient: str | None = None   # None: the DICOM PatientID
    study: str | None = None     # None: the DICOM StudyInstanceUID
    instance: str | None = None  # None: the DICOM SOPInstanceUID
    order: str = ""              # sorts a patient's studies (a date); never written out
    report: str | None = None
    fps: float | None = None     # a frame rate given by the source (video files)
    extra: dict = dataclasses.field(default_factory=dict)  # non-identifying columns: view_label, view_prob, ef
    report_keys: tuple = ()      # other raw keys a reports CSV may use for this study (accession number)


class Rejections:
    """Collects (source, reason) rows; every dropped file or report row ends up here."""

    def __init__(self):
        self.rows: list[dict] = []

    def add(self, source: str, reason: str, step: str) -> None:
        self.rows.append({"source": str(source), "reason": reason, "step": step})

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(self.rows, schema={"source": pl.String, "reason": pl.String, "step": pl.String})


def load_salt(path: str | Path) -> bytes:
    """The de-identification salt; created (random, owner-only) on first use. Keep it out of git and of shared data."""
    path = Path(path).expanduser()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
        print(f"created a new de-identification salt in {path} (keep it private; the same salt gives the same keys)")
    salt = path.read_bytes().strip()
    if len(salt) < 16:
        raise ValueError(f"{path}: salt is too short ({len(salt)} bytes; need at least 16)")
    return salt


def hashed(salt: bytes, kind: str, raw: str, prefix: str) -> str:
    return prefix + hashlib.sha256(salt + b"\0" + kind.encode() + b"\0" + str(raw).encode()).hexdigest()[:16]


def read_headers(items: list[Item], rejected: Rejections, progress: bool = True) -> list[Item]:
    """Fill keys of DICOM items from their headers; drop (and record) files that are not usable cines."""
    from ..io.dicom import check_cine_header, read_dataset

    kept = []
    for it in track(items, len(items), "read headers", "file", enabled=progress):
        if it.kind != "dicom":
            kept.append(it)
            continue
        try:
            ds = read_dataset(it.path, stop_before_pixels=True)
            check_cine_header(ds)
        except DicomError as e:
            rejected.add(it.source, str(e), "header")
            continue
        except Exception as e:
            rejected.add(it.source, f"unreadable DICOM header ({type(e).__name__})", "header")
            continue
        it.patient = it.patient or str(ds.get("PatientID", "") or "")
        it.study = it.study or str(ds.get("StudyInstanceUID", "") or "")
        it.instance = it.instance or str(ds.get("SOPInstanceUID", "") or "")
        it.order = it.order or f"{ds.get('StudyDate', '') or ''}{ds.get('StudyTime', '') or ''}"
        acc = str(ds.get("AccessionNumber", "") or "")
        it.report_keys = tuple(k for k in (acc,) if k)
        missing = [n for n, v in (("PatientID", it.patient), ("StudyInstanceUID", it.study),
                                  ("SOPInstanceUID", it.instance)) if not v]
        if missing:
            rejected.add(it.source, f"missing {', '.join(missing)} (cannot group by patient/study)", "header")
            continue
        kept.append(it)
    return kept


def drop_duplicates(items: list[Item], rejected: Rejections) -> list[Item]:
    seen, kept = {}, []
    for it in items:
        key = it.instance or it.source
        if key in seen:
            rejected.add(it.source, f"duplicate SOP instance (same instance as {seen[key]})", "header")
            continue
        seen[key] = it.source
        kept.append(it)
    return kept


def _process(job) -> dict:
    """Decode, mask and write one clip. Returns a row, or {"reject": reason}. Runs in a worker process."""
    it, out_dir, rel = job
    try:
        if it.kind == "dicom":
            cine = load_cine(it.path)
            frames, fps, fps_source, regions = cine.frames, cine.fps, cine.fps_source, cine.regions
        else:
            info = video_info(it.path)
            frames = read_clip(it.path, info["n_frames"])
            regions = []
            fps, fps_source = (it.fps or info["fps"]), ("source table" if it.fps else "container")
            if len(frames) < 2:
                return {"reject": "single-frame video"}
    except (DicomError, VideoDecodeError) as e:
        return {"reject": str(e).split(": ", 1)[-1] if isinstance(e, VideoDecodeError) else str(e)}
    except Exception as e:  # anything unexpected in a third-party decoder: recorded, never fatal
        return {"reject": f"decode failed ({type(e).__name__})"}
    t, h, w = frames.shape[:3]
    if min(h, w) < MIN_SIDE:
        return {"reject": f"implausibly small image ({w}x{h} px; at least {MIN_SIDE} px each way)"}
    if not np.isfinite(fps) or not 1 <= fps <= 1000:
        return {"reject": f"implausible frame rate {fps} fps"}
    try:
        mask, minfo = sector_mask(frames, regions)
        masked = apply_mask(frames, mask)
        masked = masked[:, : h - h % 2, : w - w % 2]  # yuv420p needs even sizes
        path = Path(out_dir) / rel
        write_video(path, masked, fps, lossless=False, quality=VIDEO_QUALITY)
    except Exception as e:  # masking or encoding a strange cine: recorded with its reason, never fatal
        return {"reject": f"cannot be masked or encoded ({type(e).__name__}: {str(e)[:100]})"}
    return {"n_frames": t, "height": masked.shape[1], "width": masked.shape[2], "fps": float(fps),
            "fps_source": fps_source, "mask_fraction": round(minfo["fraction"], 4), "mask_method": minfo["method"],
            "regions_ignored": minfo["regions_ignored"], "bytes": path.stat().st_size,
            "warning": "no frame timing in the file: 30 fps assumed" if fps_source == "default" else ""}


def ingest(items: list[Item], out_dir: str | Path, salt: bytes, reports: dict[str, str] | None = None,
           rejected: Rejections | None = None, workers: int = 0, progress: bool = True,
           require_reports: bool = True) -> dict[str, pl.DataFrame]:
    """Write patients/studies/videos/rejected tables and masked videos under out_dir; return the tables.

    `rejected` may already hold what the adapter dropped (missing files, bad report rows). With
    `require_reports` (training data), a study without a report is a recorded reject with its clips; retrieval
    of a single study folder needs none.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rejected = rejected if rejected is not None else Rejections()
    items = drop_duplicates(read_headers(items, rejected, progress), rejected)
    keys = []  # (patient_id, study_id, video_id): salted hashes, the only keys that leave this function
    for it in items:
        keys.append((hashed(salt, "patient", it.patient, "P"), hashed(salt, "study", f"{it.patient}\0{it.study}", "S"),
                     hashed(salt, "instance", it.instance or it.source, "V")))
        if reports is not None and it.report is None:
            it.report = next((reports[k] for k in (it.study, *it.report_keys) if k in reports), None)
    jobs = [(it, str(out), f"videos/{sid}/{vid}.mp4") for it, (_, sid, vid) in zip(items, keys, strict=True)]
    results = map_jobs(_process, jobs, workers, "decode + mask", "clip", progress)
    rows = []
    for (it, _, rel), (pid, sid, vid), r in zip(jobs, keys, results, strict=True):
        if "reject" in r:
            rejected.add(it.source, r["reject"], "pixels")
            continue
        rows.append({"video_id": vid, "study_id": sid, "patient_id": pid, "path": rel,
                     "order": it.order, "report": it.report, **r, **it.extra})
    tables = build_tables(rows, rejected, reports is not None, require_reports)
    write_tables(out, tables)
    return tables


def build_tables(rows: list[dict], rejected: Rejections, reports_expected: bool, require_reports: bool = True
                 ) -> dict[str, pl.DataFrame]:
    videos = pl.DataFrame(rows) if rows else pl.DataFrame(schema={"video_id": pl.String, "study_id": pl.String,
                                                                   "patient_id": pl.String, "path": pl.String,
                                                                   "order": pl.String, "report": pl.String})
    if "view_label" in videos.columns and "view" not in videos.columns:
        videos = videos.with_columns(view=pl.col("view_label"))  # labelled sources train the view classifier
    studies = (videos.group_by("study_id", maintain_order=True)
               .agg(pl.col("patient_id").first(), pl.col("order").min(),
                    pl.col("report").drop_nulls().first(),
                    *([pl.col("ef").drop_nulls().first()] if "ef" in videos.columns else []))
               .sort("patient_id", "order", "study_id")
               .with_columns(study_index=pl.col("study_id").cum_count().over("patient_id").cast(pl.Int64)))
    report = pl.col("report").cast(pl.String)
    no_report = studies.filter(report.is_null() | (report.str.strip_chars() == "")) if require_reports \
        else studies.clear()
    for sid, n in zip(no_report["study_id"], videos.filter(pl.col("study_id").is_in(no_report["study_id"].implode()))
                      .group_by("study_id", maintain_order=True).len().sort("study_id")["len"], strict=False):
        where = "in the reports CSV" if reports_expected else "in the source (give a reports CSV: ingest.reports)"
        rejected.add(f"study {sid}", f"no report {where}: the study and its {n} clip(s) are left out", "report")
    studies = studies.filter(~pl.col("study_id").is_in(no_report["study_id"].implode()))
    videos = videos.filter(pl.col("study_id").is_in(studies["study_id"].implode()))
    patients = studies.group_by("patient_id", maintain_order=True).agg(n_studies=pl.len())
    videos = videos.drop("order", "report", "patient_id")
    return {"patients": patients, "studies": studies.drop("order"), "videos": videos, "rejected": rejected.frame()}


def summary(tables: dict[str, pl.DataFrame]) -> str:
    rej = tables["rejected"]
    lines = [f"kept: {tables['videos'].height} clips, {tables['studies'].height} studies, "
             f"{tables['patients'].height} patients", f"rejected: {rej.height}"]
    counts = collections.Counter(rej["reason"].to_list())
    lines += [f"  {n:6d}  {reason}" for reason, n in counts.most_common()]
    return "\n".join(lines)


def walk_files(src: Path, rejected: Rejections | None = None) -> list[Path]:
    """Every regular file under src (any extension), sorted; hidden files included (DICOM names are arbitrary).
    A folder that cannot be read is recorded in `rejected`, never skipped silently."""
    files = []

    def unreadable(err: OSError) -> None:
        if rejected is not None:
            where = Path(err.filename).relative_to(src) if err.filename else src
            rejected.add(str(where), f"folder cannot be read ({err.strerror or type(err).__name__})", "walk")

    for folder, _, names in os.walk(src, onerror=unreadable):
        files += [Path(folder) / n for n in names if (Path(folder) / n).is_file()]
    return sorted(files)

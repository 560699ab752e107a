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

from ..io.dicom import MAX_DECODED_MB, DicomError, decoded_mb, load_cine
from ..io.files import shown
from ..io.mask import MaskError, deidentify
from ..io.safe import for_terminal, strip_controls
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
        print(f"created a new de-identification salt in {shown(path)} (keep it private; the same salt gives the "
              "same keys)")
    salt = path.read_bytes().strip()
    if len(salt) < 16:
        raise ValueError(f"{path}: salt is too short ({len(salt)} bytes; need at least 16)")
    return salt


def check_salt_place(salt: str | Path, forbidden: dict[str, str | Path], what: str = "--salt-file") -> None:
    """The salt may not lie inside a folder that is shared or replaced (`forbidden`: label -> folder)."""
    here = Path(salt).expanduser().resolve()
    for label, folder in forbidden.items():
        if Path(folder).resolve() in here.parents:
            raise ValueError(f"{what}: the de-identification salt may not lie inside {label} (it would be shared "
                             "or replaced with it); keep it outside, e.g. .echolib-salt in the project folder")


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


@dataclasses.dataclass(frozen=True)
class PixelOptions:
    """How clips are decoded and de-identified (params `ingest.max_decoded_mb`, `ingest.allow_unmasked`)."""

    max_decoded_mb: float = MAX_DECODED_MB  # a larger cine is a recorded reject, decided before decoding
    allow_unmasked: bool = False  # keep the whole image of a clip whose sector is not found (text still blanked)


DEFAULT_PIXELS = PixelOptions()

#: the reason recorded for a file whose worker process was killed while decoding it
KILLED = ("the process decoding this file was killed (out of memory? lower ingest.max_decoded_mb or "
          "base.workers)")


def _process(job) -> dict:
    """Decode, de-identify and write one clip. Returns a row, or {"reject": reason}. Runs in a worker process.
    No reason names a file or quotes a decoder's message (which may): rejected.parquet's `source` column does."""
    it, out_dir, rel, opts = job
    try:
        if it.kind == "dicom":
            cine = load_cine(it.path, opts.max_decoded_mb)
            frames, fps, fps_source, regions = cine.frames, cine.fps, cine.fps_source, cine.regions
        else:
            info = video_info(it.path)
            if (mb := decoded_mb(info["n_frames"], info["height"], info["width"])) > opts.max_decoded_mb:
                return {"reject": f"video too large to decode: {mb:,.0f} MB as 8-bit RGB (limit "
                                  f"{opts.max_decoded_mb:,.0f} MB: ingest.max_decoded_mb)"}
            frames = read_clip(it.path, info["n_frames"])
            regions = []
            fps, fps_source = (it.fps or info["fps"]), ("source table" if it.fps else "container")
            if len(frames) < 2:
                return {"reject": "single-frame video"}
    except VideoDecodeError as e:
        return {"reject": e.reason}
    except DicomError as e:
        return {"reject": str(e)}
    except Exception as e:  # anything unexpected in a third-party decoder: recorded, never fatal
        return {"reject": f"decode failed ({type(e).__name__})"}
    t, h, w = frames.shape[:3]
    if min(h, w) < MIN_SIDE:
        return {"reject": f"implausibly small image ({w}x{h} px; at least {MIN_SIDE} px each way)"}
    if not np.isfinite(fps) or not 1 <= fps <= 1000:
        return {"reject": f"implausible frame rate {fps} fps"}
    try:
        frames, minfo = deidentify(frames, regions, opts.allow_unmasked)  # in place: no second copy of the clip
    except MaskError as e:
        return {"reject": f"no sector found, so burned-in text cannot be removed: {e} (ingest.allow_unmasked keeps "
                          "such clips whole, text blanked)"}
    except Exception as e:
        return {"reject": f"cannot be de-identified ({type(e).__name__})"}
    try:
        path = Path(out_dir) / rel
        write_video(path, frames[:, : h - h % 2, : w - w % 2], fps, lossless=False, quality=VIDEO_QUALITY)
    except Exception as e:  # encoding a strange cine: recorded with its reason, never fatal
        return {"reject": f"cannot be encoded ({type(e).__name__})"}
    return {"n_frames": t, "height": h - h % 2, "width": w - w % 2, "fps": float(fps),
            "fps_source": fps_source, "mask_fraction": round(minfo["fraction"], 4), "mask_method": minfo["method"],
            "text_pixels": minfo["text_pixels"], "noise_floor": minfo["noise_floor"],
            "regions_ignored": minfo["regions_ignored"], "bytes": path.stat().st_size,
            "warning": "no frame timing in the file: 30 fps assumed" if fps_source == "default" else ""}


def _killed(job) -> dict:
    return {"reject": KILLED}


def keep_one_per_instance(items: list[Item], results: list[dict], rels: list[str], out: Path,
                          rejected: Rejections) -> list[tuple[Item, str, dict]]:
    """Files sharing an instance UID (copies): the first one that decoded is kept, under the instance's own name;
    the others are recorded rejects (and their written clips removed). No reason names the other file."""
    by_instance: dict[str, list[int]] = collections.defaultdict(list)
    for i, it in enumerate(items):
        by_instance[it.instance or it.source].append(i)
    kept = []
    for idx in by_instance.values():
        good = [i for i in idx if "reject" not in results[i]]
        winner = good[0] if good else None
        for i in idx:
            r = results[i]
            if i == winner:
                canonical = rels[idx[0]]
                if rels[i] != canonical:
                    (out / rels[i]).replace(out / canonical)
                kept.append((items[i], canonical, r))
            elif winner is None:
                rejected.add(items[i].source, r["reject"], "pixels")
            else:
                if "reject" not in r:
                    (out / rels[i]).unlink(missing_ok=True)
                why = "" if "reject" not in r else f": this copy cannot be used ({r['reject']})"
                rejected.add(items[i].source, f"duplicate SOP instance (another copy of it is kept){why}", "pixels")
    order = {id(it): k for k, it in enumerate(items)}
    return sorted(kept, key=lambda x: order[id(x[0])])


def ingest(items: list[Item], out_dir: str | Path, salt: bytes, reports: dict[str, str] | None = None,
           rejected: Rejections | None = None, workers: int = 0, progress: bool = True,
           require_reports: bool = True, options: PixelOptions = DEFAULT_PIXELS) -> dict[str, pl.DataFrame]:
    """Write patients/studies/videos/rejected tables and de-identified videos under out_dir; return the tables.

    `rejected` may already hold what the adapter dropped (missing files, bad report rows). With
    `require_reports` (training data), a study without a report is a recorded reject with its clips; retrieval
    of a single study folder needs none. A report key (study UID or accession number) that names studies of
    more than one patient attaches to none of them: a recorded reject.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rejected = rejected if rejected is not None else Rejections()
    items = read_headers(items, rejected, progress)
    keys = {}  # id(item) -> (patient_id, study_id, video_id): salted hashes, the only keys that leave this function
    for it in items:
        keys[id(it)] = (hashed(salt, "patient", it.patient, "P"),
                        hashed(salt, "study", f"{it.patient}\0{it.study}", "S"),
                        hashed(salt, "instance", it.instance or it.source, "V"))
    shared = _attach_reports(items, reports)
    seen: collections.Counter = collections.Counter()
    rels = []
    for it in items:
        _, sid, vid = keys[id(it)]
        seen[vid] += 1  # copies of one instance are written side by side until one is chosen
        rels.append(f"videos/{sid}/{vid}.mp4" if seen[vid] == 1 else f"videos/{sid}/{vid}~{seen[vid]}.mp4")
    jobs = [(it, str(out), rel, options) for it, rel in zip(items, rels, strict=True)]
    results = map_jobs(_process, jobs, workers, "decode + de-identify", "clip", progress, died=_killed)
    rows = []
    for it, rel, r in keep_one_per_instance(items, results, rels, out, rejected):
        pid, sid, vid = keys[id(it)]
        rows.append({"video_id": vid, "study_id": sid, "patient_id": pid, "path": rel,
                     "order": it.order, "report": it.report, **r, **it.extra})
    ambiguous = {keys[id(it)][1]: n for it in items if (n := shared.get(id(it)))}
    tables = build_tables(rows, rejected, reports is not None, require_reports, ambiguous)
    write_tables(out, tables)
    return tables


def _attach_reports(items: list[Item], reports: dict[str, str] | None) -> dict[int, int]:
    """Set each item's report from `reports` by its study UID or accession number, unless the key that matched
    also names a study of another patient: then no report, and {id(item): patients sharing the key} says why.
    Control characters in report text are removed (they never belong to a report and can reach a terminal)."""
    shared: dict[int, int] = {}
    if reports is not None:
        matched = {}
        for it in items:
            if it.report is None:
                matched[id(it)] = next((k for k in (it.study, *it.report_keys) if k in reports), None)
        patients: dict[str, set] = collections.defaultdict(set)
        for it in items:
            if (k := matched.get(id(it))) is not None:
                patients[k].add(it.patient)
        for it in items:
            k = matched.get(id(it))
            if k is None:
                continue
            if len(patients[k]) > 1:
                shared[id(it)] = len(patients[k])
            else:
                it.report = reports[k]
    for it in items:
        if it.report is not None:
            it.report = strip_controls(it.report)
    return shared


def build_tables(rows: list[dict], rejected: Rejections, reports_expected: bool, require_reports: bool = True,
                 ambiguous: dict[str, int] | None = None) -> dict[str, pl.DataFrame]:
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
    ambiguous = ambiguous or {}
    counts = videos.filter(pl.col("study_id").is_in(no_report["study_id"].implode())).group_by("study_id").len()
    for sid, n in counts.sort("study_id").iter_rows():
        if sid in ambiguous:
            why = (f"its report key (study UID or accession number) also names studies of {ambiguous[sid] - 1} other "
                   "patient(s), so whose report it is cannot be told")
        else:
            why = "no report " + ("in the reports CSV" if reports_expected else
                                  "in the source (give a reports CSV: ingest.reports)")
        rejected.add(f"study {sid}", f"{why}: the study and its {n} clip(s) are left out", "report")
    studies = studies.filter(~pl.col("study_id").is_in(no_report["study_id"].implode()))
    videos = videos.filter(pl.col("study_id").is_in(studies["study_id"].implode()))
    patients = studies.group_by("patient_id", maintain_order=True).agg(n_studies=pl.len())
    videos = videos.drop("order", "report", "patient_id")
    return {"patients": patients, "studies": studies.drop("order"), "videos": videos, "rejected": rejected.frame()}


def summary(tables: dict[str, pl.DataFrame]) -> str:
    """Counts and the reasons of rejects (never their file names), safe to print to a terminal."""
    rej = tables["rejected"]
    lines = [f"kept: {tables['videos'].height} clips, {tables['studies'].height} studies, "
             f"{tables['patients'].height} patients", f"rejected: {rej.height}"]
    counts = collections.Counter(rej["reason"].to_list())
    lines += [f"  {n:6d}  {for_terminal(reason)}" for reason, n in sorted(counts.items(), key=lambda x: (-x[1], x[0]))]
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

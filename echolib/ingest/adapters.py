"""Source adapters: each turns an archive layout into ingestion `Item`s (and records what it cannot use)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from ..vocab import CLASSES
from .core import Item, Rejections, walk_files

SOURCES = ("dicom", "paper-csv", "echonet-dynamic", "mimic-iv-echo", "video-folder")
#: the files a folder of video exports holds (video-folder; retrieve's study folders)
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")


#: encodings a Japanese hospital's export may use, tried to name the right one when the given one fails
_LIKELY_ENCODINGS = ("utf-8", "cp932", "euc_jp", "utf-16")


def read_csv_rows(path: Path, rejected: Rejections, encoding: str = "utf-8") -> list[dict]:
    """CSV rows as dicts, parsed strictly: a file that is not valid `encoding` text is an error naming the
    encoding to try; a row with more or fewer fields than the header (an unquoted comma, a cut line) is a
    recorded reject with its row number."""
    raw = path.read_bytes()
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as e:
        fits = [enc for enc in _LIKELY_ENCODINGS if enc != encoding and _decodes(raw, enc)]
        hint = f"; it reads as {fits[0]}: pass --encoding {fits[0]} (ingest.encoding)" if fits else ""
        raise ValueError(f"{path}: not valid {encoding} text (byte {e.start}){hint}") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if not header:
            raise ValueError(f"{path}: empty CSV (no header row)")
        rows = []
        for row in reader:
            n = reader.line_num
            if not row:
                continue
            if len(row) != len(header):
                rejected.add(f"{path.name}:row {n}", f"{len(row)} fields where the header has {len(header)} "
                             "(an unquoted comma or a cut line?)", "csv")
                continue
            rows.append(dict(zip(header, row, strict=True)))
    except csv.Error as e:
        raise ValueError(f"{path}: malformed CSV at line {reader.line_num} ({e})") from None
    return rows


def _decodes(raw: bytes, encoding: str) -> bool:
    try:
        raw.decode(encoding)
        return True
    except (UnicodeDecodeError, LookupError):
        return False


def require_columns(rows: list[dict], path: Path, columns) -> None:
    if not rows:
        return
    missing = [c for c in columns if c not in rows[0]]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; has {list(rows[0])}")


def read_reports(path: str | Path, rejected: Rejections, encoding: str = "utf-8") -> dict[str, str]:
    """--reports CSV: columns study_key (StudyInstanceUID, accession number or the source's study id), report_text."""
    path = Path(path)
    rows = read_csv_rows(path, rejected, encoding)
    require_columns(rows, path, ("study_key", "report_text"))
    if not rows:
        raise ValueError(f"{path}: the reports CSV has no rows")
    out, first = {}, {}
    for n, r in enumerate(rows, start=2):
        key, text = (r["study_key"] or "").strip(), (r["report_text"] or "").strip()
        if not key or not text:
            rejected.add(f"{path.name}:row {n}", f"empty {'study_key' if not key else 'report_text'}", "csv")
        elif key in first:  # which report is right cannot be told: neither is used
            rejected.add(f"{path.name}:row {n}", f"duplicate study_key (also row {first[key]}): both left out", "csv")
            out.pop(key, None)
        else:
            first[key], out[key] = n, text
    return out


def dicom_items(src: Path, rejected: Rejections) -> list[Item]:
    """Every file under src; headers decide later which are ultrasound cines."""
    return [Item(str(p.relative_to(src)), p) for p in walk_files(src, rejected)]


def paper_csv_items(csv_path: Path, rejected: Rejections, encoding: str = "utf-8") -> list[Item]:
    """The authors' CSV: one row per DICOM with dicom_path, report_text, view_label, view_prob (kept)."""
    rows = read_csv_rows(csv_path, rejected, encoding)
    require_columns(rows, csv_path, ("dicom_path", "report_text", "view_label", "view_prob"))
    items, seen = [], {}
    for n, r in enumerate(rows, start=2):
        p = Path(r["dicom_path"])
        p = p if p.is_absolute() else csv_path.parent / p
        src = r["dicom_path"]
        label = (r["view_label"] or "").strip().upper()
        prob = _float(r["view_prob"])
        reason = ("file listed in the CSV does not exist" if not p.is_file() else
                  f"duplicate dicom_path (also row {seen[src]})" if src in seen else
                  f"view_prob {r['view_prob']!r} is not a number in [0, 1]" if prob is None or not 0 <= prob <= 1 else
                  f"unknown view_label {r['view_label']!r} (known: {', '.join(CLASSES)})" if label not in CLASSES
                  else None)
        if reason:
            rejected.add(src, f"{reason} (row {n})", "csv")
            continue
        seen[src] = n
        items.append(Item(src, p, report=(r["report_text"] or "").strip() or None,
                          extra={"view_label": label, "view_prob": prob}))
    return items


def video_items(root: Path, files: list[Path], patient: str | None = None, study: str | None = None) -> list[Item]:
    """Video files (mp4, avi, ...) of one folder as ingestion items: each de-identified like a DICOM cine (the
    sector kept, everything outside it and text inside it blanked). patient/study: the raw keys (hashed before
    output); by default one study of one patient named after the folder."""
    key = root.name
    return [Item(str(p.relative_to(root)), p, kind="video", patient=patient or key, study=study or key,
                 instance=str(p.relative_to(root))) for p in files]


def video_folder_items(root: Path, rejected: Rejections) -> list[Item]:
    """A folder of video exports laid out PATIENT/STUDY/CLIP.mp4 (or .avi, .mov, .mkv, .webm): the folder names
    are the patient and study keys (hashed before output); a reports CSV's study_key is PATIENT/STUDY, or STUDY
    alone where no other patient has a study of that name. Every clip is de-identified like a DICOM cine. A file
    elsewhere in the tree, or not a video, is a recorded reject."""
    items = []
    for p in walk_files(root, rejected):
        rel = p.relative_to(root)
        if p.suffix.lower() not in VIDEO_SUFFIXES:
            rejected.add(str(rel), f"not a video file (video-folder reads {', '.join(VIDEO_SUFFIXES)})", "walk")
        elif len(rel.parts) != 3:
            rejected.add(str(rel), "not in a PATIENT/STUDY/ folder (video-folder's layout: PATIENT/STUDY/CLIP)",
                         "walk")
        else:
            patient, study, _ = rel.parts
            items.append(Item(str(rel), p, kind="video", patient=patient, study=f"{patient}/{study}",
                              instance=str(rel), report_keys=(study,)))
    return items


def echonet_items(root: Path, rejected: Rejections) -> list[Item]:
    """EchoNet-Dynamic: FileList.csv + Videos/*.avi, one apical-4-chamber clip per patient; EF kept, no reports."""
    rows = _listing(root / "FileList.csv", "EchoNet-Dynamic (FileList.csv + Videos/)", rejected, ("FileName", "EF"))
    items = []
    for n, r in enumerate(rows, start=2):
        name = r["FileName"].strip()
        name = name if name.lower().endswith(".avi") else name + ".avi"
        p = root / "Videos" / name
        ef = _float(r["EF"])
        if not p.is_file():
            rejected.add(f"Videos/{name}", "listed in FileList.csv but missing", "csv")
            continue
        if ef is None or not 0 <= ef <= 100:
            rejected.add(f"Videos/{name}", f"EF {r['EF']!r} is not a number in [0, 100] (row {n})", "csv")
            continue
        stem = name[:-4]
        # the dataset is curated apical 4-chamber: its label is carried like the paper CSV's view label
        items.append(Item(f"Videos/{name}", p, kind="video", patient=stem, study=stem, instance=stem,
                          fps=_float(r.get("FPS")),
                          extra={"ef": ef, "view_label": "4CH", "view_prob": 1.0}))
    return items


def mimic_items(root: Path, rejected: Rejections) -> list[Item]:
    """MIMIC-IV-ECHO: files/pXX/pSUBJECT/sSTUDY/*.dcm listed in echo-record-list.csv; study dates order studies."""
    rows = _listing(root / "echo-record-list.csv", "MIMIC-IV-ECHO", rejected,
                    ("subject_id", "study_id", "dicom_filepath"))
    dates = {}
    studies = root / "echo-study-list.csv"
    if studies.is_file():
        for r in read_csv_rows(studies, rejected):
            dates[r.get("study_id", "")] = r.get("study_datetime", "") or ""
    items = []
    for r in rows:
        rel = r["dicom_filepath"].strip()
        p = root / rel
        if not p.is_file():
            rejected.add(rel, "listed in echo-record-list.csv but missing", "csv")
            continue
        items.append(Item(rel, p, patient=r["subject_id"].strip(), study=r["study_id"].strip(),
                          order=dates.get(r["study_id"], r.get("acquisition_datetime", "") or "")))
    return items


def _listing(path: Path, layout: str, rejected: Rejections, columns) -> list[dict]:
    """The rows of a dataset's own file list, which must exist and have `columns`."""
    if not path.is_file():
        raise ValueError(f"{path.parent}: no {path.name} (expected the {layout} layout)")
    rows = read_csv_rows(path, rejected)
    require_columns(rows, path, columns)
    return rows


def _float(v) -> float | None:
    """A finite number, or None (empty, not a number, NaN, infinite)."""
    try:
        x = float(v) if v not in (None, "") else None
    except (TypeError, ValueError):
        return None
    return x if x is not None and math.isfinite(x) else None

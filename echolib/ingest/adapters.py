"""Source adapters: each turns an archive layout into ingestion `Item`s (and records what it cannot use)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from .core import Item, Rejections, walk_files

SOURCES = ("dicom", "paper-csv", "echonet-dynamic", "mimic-iv-echo")


def read_csv_rows(path: Path, rejected: Rejections, encoding: str = "utf-8") -> list[dict]:
    """CSV rows as dicts. Rows with text that does not decode in `encoding` are rejected, not guessed."""
    raw = path.read_bytes()
    text = raw.decode(encoding, errors="surrogateescape")
    if text.startswith("\ufeff"):
        text = text[1:]
    rows = []
    for n, row in enumerate(csv.DictReader(io.StringIO(text, newline="")), start=2):
        bad = [k for k, v in row.items() if isinstance(v, str) and any(0xDC80 <= ord(c) <= 0xDCFF for c in v)]
        if bad:
            rejected.add(f"{path.name}:row {n}", f"{', '.join(bad)} is not valid {encoding} text", "csv")
            continue
        rows.append(row)
    return rows


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
    out = {}
    for r in rows:
        key, text = (r["study_key"] or "").strip(), (r["report_text"] or "").strip()
        if key and text:
            out[key] = text
    return out


def dicom_items(src: Path, rejected: Rejections) -> list[Item]:
    """Every file under src; headers decide later which are ultrasound cines."""
    return [Item(str(p.relative_to(src)), p) for p in walk_files(src)]


def paper_csv_items(csv_path: Path, rejected: Rejections, encoding: str = "utf-8") -> list[Item]:
    """The authors' CSV: one row per DICOM with dicom_path, report_text, view_label, view_prob (kept)."""
    rows = read_csv_rows(csv_path, rejected, encoding)
    require_columns(rows, csv_path, ("dicom_path", "report_text", "view_label", "view_prob"))
    items = []
    for n, r in enumerate(rows, start=2):
        p = Path(r["dicom_path"])
        p = p if p.is_absolute() else csv_path.parent / p
        src = r["dicom_path"]
        if not p.is_file():
            rejected.add(src, "file listed in the CSV does not exist", "csv")
            continue
        try:
            prob = float(r["view_prob"])
        except (TypeError, ValueError):
            rejected.add(src, f"view_prob {r['view_prob']!r} is not a number (row {n})", "csv")
            continue
        items.append(Item(src, p, report=(r["report_text"] or "").strip() or None,
                          extra={"view_label": (r["view_label"] or "").strip(), "view_prob": prob}))
    return items


def echonet_items(root: Path, rejected: Rejections) -> list[Item]:
    """EchoNet-Dynamic: FileList.csv + Videos/*.avi, one apical-4-chamber clip per patient; EF kept, no reports."""
    rows = _listing(root / "FileList.csv", "EchoNet-Dynamic (FileList.csv + Videos/)", rejected, ("FileName", "EF"))
    items = []
    for r in rows:
        name = r["FileName"].strip()
        name = name if name.lower().endswith(".avi") else name + ".avi"
        p = root / "Videos" / name
        if not p.is_file():
            rejected.add(f"Videos/{name}", "listed in FileList.csv but missing", "csv")
            continue
        stem = name[:-4]
        # the dataset is curated apical 4-chamber: its label is carried like the paper CSV's view label
        items.append(Item(f"Videos/{name}", p, kind="video", patient=stem, study=stem, instance=stem,
                          fps=_float(r.get("FPS")),
                          extra={"ef": _float(r["EF"]), "view_label": "4CH", "view_prob": 1.0}))
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
    try:
        return float(v) if v not in (None, "") else None
    except (TypeError, ValueError):
        return None

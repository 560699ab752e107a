"""Real data in: DICOM archives, the paper's CSV, EchoNet-Dynamic, MIMIC-IV-ECHO and folders of video exports.

    python -m echolib.ingest dicom SRC --out DIR [--reports REPORTS.csv] [--salt-file F]
    python -m echolib.ingest paper-csv CSV --out DIR [--salt-file F]
    python -m echolib.ingest echonet-dynamic ROOT --out DIR
    python -m echolib.ingest mimic-iv-echo ROOT --out DIR [--reports REPORTS.csv]
    python -m echolib.ingest video-folder ROOT --out DIR [--reports REPORTS.csv]   (ROOT/PATIENT/STUDY/CLIP.mp4)

Each writes patients/studies/videos.parquet (the synthetic generator's tables) + rejected.parquet and masked
clips under DIR/videos, with salted-hash keys in place of every identifier.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from .adapters import (
    SOURCES,
    dicom_items,
    echonet_items,
    mimic_items,
    paper_csv_items,
    read_reports,
    video_folder_items,
)
from .core import DEFAULT_PIXELS, Item, PixelOptions, Rejections, check_salt_place, ingest, load_salt, summary

__all__ = ["SOURCES", "Item", "PixelOptions", "Rejections", "ingest", "ingest_source", "load_salt", "run_ingest",
           "summary"]


def ingest_source(source: str, src: str | Path, out: str | Path, salt_file: str | Path,
                  reports: str | Path | None = None, encoding: str = "utf-8", workers: int = 0,
                  progress: bool = True, options: PixelOptions = DEFAULT_PIXELS) -> dict[str, pl.DataFrame]:
    """Run one adapter end to end; raises ValueError naming the path for a source that cannot be read at all."""
    src = Path(src)
    if not src.exists():
        raise ValueError(f"{src}: source does not exist")
    rejected = Rejections()
    if source == "dicom":
        if not src.is_dir():
            raise ValueError(f"{src}: the dicom source must be a folder")
        items = dicom_items(src, rejected)
    elif source == "paper-csv":
        items = paper_csv_items(src, rejected, encoding)
    elif source == "echonet-dynamic":
        items = echonet_items(src, rejected)
    elif source == "mimic-iv-echo":
        items = mimic_items(src, rejected)
    elif source == "video-folder":
        if not src.is_dir():
            raise ValueError(f"{src}: the video-folder source must be a folder (PATIENT/STUDY/CLIP.mp4)")
        items = video_folder_items(src, rejected)
    else:
        raise ValueError(f"unknown source {source!r}; choose one of {list(SOURCES)}")
    table = read_reports(reports, rejected, encoding) if reports else None
    tables = ingest(items, out, load_salt(salt_file), table, rejected, workers, progress, options=options)
    if tables["videos"].height == 0:
        top = tables["rejected"].group_by("reason").len().sort(["len", "reason"], descending=[True, False]).head(3)
        why = "; ".join(f"{n} x {r}" for r, n in top.iter_rows()) or "the source lists no files"
        raise ValueError(f"{src}: nothing usable was found ({why})")
    return tables


def run_ingest(ctx) -> dict:
    """Stage `ingest`: the archive named by params `ingest` into data/ingested (source: base.source); metrics.
    The archive may not hold or lie inside the project's outputs; the salt may not lie inside data/, metrics/ or
    reports/ (shared, mailed, or replaced by each run)."""
    from ..io.files import overlap
    from .overview import counts

    cfg = ctx.ingest
    cfg.require_src()
    root = ctx.root
    outputs = {"the data folder": root / ctx.base.data_root, "metrics/": root / "metrics", "reports/": root / "reports"}
    for label, folder in outputs.items():
        if overlap(folder, root / cfg.src):
            raise ValueError(f"ingest.src: the archive and {label} overlap (one holds the other); keep the archive "
                             "outside the project's outputs")
    check_salt_place(root / cfg.salt_file, outputs, "ingest.salt_file")
    tables = ingest_source(ctx.base.source, root / cfg.src, ctx.out("ingested"), root / cfg.salt_file,
                           root / cfg.reports if cfg.reports else None, cfg.encoding, ctx.base.workers,
                           options=PixelOptions(cfg.max_decoded_mb, cfg.allow_unmasked))
    print(summary(tables))
    return {"source": ctx.base.source, **counts(tables)}

"""The pipeline's input tables (patients, studies, videos, ...), written atomically."""

from __future__ import annotations

from pathlib import Path

import polars as pl


def write_tables(out: str | Path, tables: dict[str, pl.DataFrame]) -> None:
    """`out/<name>.parquet` for each table, written beside its destination and renamed into place."""
    out = Path(out)
    for name, df in tables.items():
        tmp = out / f".{name}.parquet.part"
        df.write_parquet(tmp)
        tmp.replace(out / f"{name}.parquet")

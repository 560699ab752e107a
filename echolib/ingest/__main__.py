"""python -m echolib.ingest SOURCE SRC --out DIR [--reports CSV] [--salt-file F] [--workers N]"""

from __future__ import annotations

import argparse
import sys

from ..io.files import atomic_dir
from . import SOURCES, ingest_source, summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m echolib.ingest",
                                 description="Ingest a real echo archive into the pipeline's tables.")
    ap.add_argument("source", choices=SOURCES)
    ap.add_argument("src", help="folder (dicom, echonet-dynamic, mimic-iv-echo) or CSV file (paper-csv)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--reports", default=None, help="CSV with columns study_key, report_text")
    ap.add_argument("--salt-file", default=".echolib-salt",
                    help="de-identification salt (created if missing; never commit or share it)")
    ap.add_argument("--encoding", default="utf-8", help="text encoding of the CSVs (e.g. cp932)")
    ap.add_argument("--workers", type=int, default=0, help="processes (0 = all cores)")
    a = ap.parse_args(argv)
    try:
        with atomic_dir(a.out) as tmp:  # the previous output is replaced only by a complete new one
            tables = ingest_source(a.source, a.src, tmp, a.salt_file, a.reports, a.encoding, a.workers)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary(tables))
    return 0


if __name__ == "__main__":
    sys.exit(main())

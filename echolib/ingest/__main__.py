"""python -m echolib.ingest SOURCE SRC --out DIR [--reports CSV] [--salt-file F] [--workers N]"""

from __future__ import annotations

import argparse
import sys

from ..io.dicom import MAX_DECODED_MB
from ..io.files import atomic_dir
from ..io.safe import for_terminal
from . import SOURCES, PixelOptions, check_salt_place, ingest_source, summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m echolib.ingest",
                                 description="Ingest a real echo archive into the pipeline's tables.")
    ap.add_argument("source", choices=SOURCES)
    ap.add_argument("src", help="folder (dicom, echonet-dynamic, mimic-iv-echo, video-folder) or CSV file (paper-csv)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--reports", default=None, help="CSV with columns study_key, report_text")
    ap.add_argument("--salt-file", default=".echolib-salt",
                    help="de-identification salt (created if missing; never commit or share it)")
    ap.add_argument("--encoding", default="utf-8", help="text encoding of the CSVs (e.g. cp932)")
    ap.add_argument("--workers", type=int, default=0, help="processes (0 = all cores)")
    ap.add_argument("--max-decoded-mb", type=float, default=MAX_DECODED_MB,
                    help="a cine larger than this decoded (8-bit RGB) is a recorded reject")
    ap.add_argument("--allow-unmasked", action="store_true",
                    help="keep clips whose sector is not found whole (burned-in text is still blanked)")
    a = ap.parse_args(argv)
    inputs = [a.src, *([a.reports] if a.reports else [])]
    try:
        check_salt_place(a.salt_file, {"the output folder": a.out})
        # the output must be new, empty or echolib's own, and apart from the input; it is replaced only by a
        # complete new one
        with atomic_dir(a.out, inputs) as tmp:
            tables = ingest_source(a.source, a.src, tmp, a.salt_file, a.reports, a.encoding, a.workers,
                                   options=PixelOptions(a.max_decoded_mb, a.allow_unmasked))
    except (ValueError, OSError) as e:
        print(f"error: {for_terminal(e)}", file=sys.stderr)
        return 2
    print(summary(tables))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Rendering helpers shared by the notebooks: Altair set-up, offline HTML export, the report index.

`python -m echolib.report html NOTEBOOK.ipynb` converts an executed notebook to HTML next to it, with no
script loaded from a CDN; `python -m echolib.report index --out reports/index.html PAGE.html ...` writes the
landing page that links every stage's page.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import html
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl

TEMPLATES = Path(__file__).parent / "templates"
_REMOTE_SCRIPT = re.compile(r"<script[^>]+src=[\"']?(https?:)?//", re.I)


def setup_notebook() -> None:
    """Make Altair charts render as inline SVG (vl-convert), so exported HTML needs no Vega from a CDN."""
    import altair as alt

    alt.renderers.enable("svg")
    alt.data_transformers.disable_max_rows()


def chart_to_svg(chart) -> str:
    import vl_convert as vlc

    return vlc.vegalite_to_svg(chart.to_dict())


def notebook_to_html(notebook: str | Path, out: str | Path | None = None) -> Path:
    """Convert an executed notebook to offline HTML; raises if a remote script slipped in."""
    import nbformat
    from nbconvert import HTMLExporter

    notebook = Path(notebook)
    out = Path(out) if out else notebook.with_suffix(".html")
    nb = nbformat.read(notebook, as_version=4)
    exporter = HTMLExporter(template_name="offline", extra_template_basedirs=[str(TEMPLATES)])
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": notebook.stem}})
    remote = _REMOTE_SCRIPT.search(body)
    if remote:
        raise RuntimeError(f"{notebook}: exported HTML still loads a remote script: {remote.group(0)!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.part")
    tmp.write_text(body, encoding="utf-8")
    tmp.replace(out)
    return out


def _title_of(page: Path) -> str:
    m = re.search(r"<title>(.*?)</title>", page.read_text(encoding="utf-8", errors="replace"), re.S)
    return html.unescape(m.group(1)).strip() if m else page.stem


def build_index(out: str | Path, pages: list[str | Path], title: str, metrics: list[str | Path] = (),
                pending: tuple[str | Path, ...] = (), link_from: str | Path | None = None) -> Path:
    """Landing page linking each stage's HTML (relative links) and listing the metric files' contents.
    `pending` pages are linked although they are written after the index (the report's own page); links are
    relative to `link_from` (default: the index's folder), where the index will finally lie."""
    out = Path(out)
    base = Path(link_from or out.parent).resolve()
    rows = []
    for p in pages:
        p = Path(p)
        if not p.is_file() and p not in map(Path, pending):
            raise FileNotFoundError(f"report index: stage page {p} does not exist (did its stage run?)")
        rel = Path(os.path.relpath(Path(p).resolve(), base))
        rows.append(f'<li><a href="{html.escape(rel.as_posix())}">{html.escape(p.stem)}</a></li>')
    blocks = []
    for m in metrics:
        m = Path(m)
        data = json.loads(m.read_text(encoding="utf-8"))
        blocks.append(f"<h3>{html.escape(m.as_posix())}</h3><pre>{html.escape(json.dumps(data, indent=2))}</pre>")
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em}}
pre{{background:#f6f6f6;padding:.6em;overflow:auto}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>Generated {stamp} by <code>dvc repro</code>. Every page below is an executed notebook of one pipeline
stage, readable offline.</p>
<h2>Stages</h2><ol>{''.join(rows)}</ol>
{'<h2>Metrics</h2>' + ''.join(blocks) if blocks else ''}
</body></html>
"""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(body, encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m echolib.report", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    h = sub.add_parser("html", help="executed notebook(s) -> offline HTML next to each")
    h.add_argument("notebooks", nargs="+")
    i = sub.add_parser("index", help="write the landing page")
    i.add_argument("pages", nargs="+")
    i.add_argument("--out", default="reports/index.html")
    i.add_argument("--title", default="Video CLIP for multi-view echocardiography")
    i.add_argument("--metrics", nargs="*", default=[])
    a = ap.parse_args(argv)
    if a.cmd == "html":
        for nb in a.notebooks:
            print(notebook_to_html(nb))
    else:
        print(build_index(a.out, a.pages, a.title, a.metrics))



def run_report(ctx) -> Path:
    """Stage `report`: reports/index.html linking the summary page and every stage page (reports/stages/), with
    the metrics files (report.title)."""
    root = ctx.root
    own = root / ctx.spec.page.with_suffix(".html")
    pages = [own, *sorted((root / "reports" / "stages").glob("*.html"))]
    metrics = [p for pattern in ("*.json", "train/*.json", "retrieval/*.json")
               for p in sorted((root / "metrics").glob(pattern))]
    return build_index(ctx.out_root / "reports" / "index.html", pages, ctx.report.title, metrics, pending=(own,),
                       link_from=root / "reports")


def dvclive_curves(dvclive_dir: str | Path) -> pl.DataFrame:
    """Every logged scalar of a dvclive folder as a long table: metric, step, value."""
    import polars as pl

    root = Path(dvclive_dir) / "plots" / "metrics"
    parts = []
    for tsv in sorted(root.rglob("*.tsv")):
        df = pl.read_csv(tsv, separator="\t")
        name = tsv.relative_to(root).with_suffix("").as_posix()
        value_col = [c for c in df.columns if c not in ("step", "timestamp")][0]
        parts.append(df.select(pl.lit(name).alias("metric"), pl.col("step").cast(pl.Int64),
                               pl.col(value_col).cast(pl.Float64).alias("value")))
    if not parts:
        raise FileNotFoundError(f"{dvclive_dir}: no dvclive metrics found")
    return pl.concat(parts)


def training_curves(run_dir: str | Path):
    """Loss, learning rate, logit scale and validation scores of every seed of a run (dvclive), one panel each."""
    import altair as alt
    import polars as pl

    seeds = sorted(Path(run_dir).glob("seed*"))
    curves = pl.concat([dvclive_curves(d / "dvclive").with_columns(seed=pl.lit(d.name)) for d in seeds])
    show = curves.filter(pl.col("metric").is_in(["train/loss", "train/lr", "train/logit_scale", "val/loss",
                                                  "val/r10_v2r", "val/mcmrr"]))
    return alt.Chart(show.to_pandas()).mark_line(point=False).encode(
        x="step:Q", y=alt.Y("value:Q", scale=alt.Scale(zero=False)), color="seed:N",
        facet=alt.Facet("metric:N", columns=3)).properties(width=220, height=140).resolve_scale(y="independent")


def load_metrics(metrics_dir: str | Path) -> dict[str, dict]:
    """Every metrics/*.json by name (synth, views, split, table1, ...)."""
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(Path(metrics_dir).glob("*.json"))}


def summary_frame(metrics: dict[str, dict]):
    """Data and view filtering in one table, from the synth, views and filter metrics."""
    import polars as pl

    synth, views, filt = metrics.get("synth", {}), metrics.get("views", {}), metrics.get("filter", {})
    return pl.DataFrame({
        "quantity": ["patients", "studies", "clips", "OTHER or poor-quality share", "view classifier accuracy",
                     "calibration error (ECE) after temperature scaling", "clips kept at the threshold",
                     "studies left without any clip"],
        "value": [str(synth.get("patients", "–")), str(synth.get("studies", "–")), str(synth.get("videos", "–")),
                  str(synth.get("other_or_poor_share", "–")), f"{views.get('accuracy', float('nan')):.3f}",
                  f"{views.get('ece_after', float('nan')):.3f}", f"{filt.get('kept', '–')} of {filt.get('clips', '–')}",
                  str(filt.get("studies_without_kept_clip", "–"))],
    })


if __name__ == "__main__":
    main()

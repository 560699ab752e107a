"""The report as a small static site: reports/site/, one folder that opens from disk and still works zipped.

    reports/site/index.html          the collaborators' page (the report stage's notebook, no code shown)
    reports/site/stages/NAME.html    one page per pipeline stage (its executed notebook, code folded)

Made with nbconvert and our templates (echolib/templates/site, .../reader): the executed notebooks already are the
pages, so no second execution engine is involved (Quarto would re-run or re-render them and ships its own pandoc),
and a template decides what a reader sees. Tables are great-tables HTML (`setup_notebook` makes every polars
DataFrame display as one: all rows, no dtype row), charts are inline SVG (vl-convert), so no page loads anything:
no script, font or image from a network.

Before export every page is cleaned: the placeholder parameters cell is dropped (the injected one, with the values
the stage ran with, stays), stderr (warnings, library tips), widget and progress-bar residue are removed, and the
project's, the environment's and the home folder's absolute paths are written relative.
"""

from __future__ import annotations

import copy
import json
import os
import re
import sys
from pathlib import Path

from . import config as C
from .display import FONT_STACK
from .io.safe import strip_controls

TEMPLATES = Path(__file__).parent / "templates"
#: fewer evaluation studies than this, or the tiny profile, and every page says it is a smoke test
SMOKE_STUDIES = 100


def is_smoke(profile: str, n_eval: int | None) -> bool:
    """A smoke test, whose numbers mean nothing: the tiny profile, or fewer than SMOKE_STUDIES evaluation studies."""
    return profile == "tiny" or (n_eval is not None and n_eval < SMOKE_STUDIES)

SITE = Path("reports/site")
_REMOTE = re.compile(r"""(<script[^>]+src=["']?|<link[^>]+href=["']?|@import\s+url\(["']?|<img[^>]+src=["']?)"""
                     r"""(https?:)?//""", re.I)
#: stdout lines that are library chatter, not results (Lightning tips and banners, warnings, progress redraws)
_NOISE = re.compile(r"(💡|\bTip: |\w+Warning: |warnings\.warn\(|GPU available: |TPU available: |HPU available: |"
                    r"LOCAL_RANK: |IProgress not found|it/s\]|s/it\]|\d+%\||^\s*\S+\.py:\d+: )")


def _scrubber(root: Path | None, staging: Path | None = None):
    """A function that writes absolute paths of this machine relative (project root and the stage's staging
    folder -> '', venv -> '<venv>', home -> '~')."""
    pairs = []
    if staging is not None:
        pairs.append((str(Path(staging).resolve()) + os.sep, ""))
    if root is not None:
        pairs.append((str(Path(root).resolve()) + os.sep, ""))
        pairs.append((str(Path(root).resolve()), "."))
    for prefix, name in ((sys.prefix, "<venv>"), (os.path.expanduser("~"), "~")):
        if prefix and prefix not in ("/", ""):
            pairs.append((prefix, name))
    pairs.sort(key=lambda p: -len(p[0]))

    def scrub(text: str) -> str:
        for a, b in pairs:
            text = text.replace(a, b)
        return text

    return scrub


#: the line a stage's context prints first (where it writes): for the notebook's reader, not the report's
_CONTEXT_NOTE = re.compile(r"^stage \S+: writing to ")


def _is_json_object(line: str) -> bool:
    """A line that is a JSON object (what a CLI prints for machines, e.g. the training summary): not for a page."""
    line = line.strip()
    if not (line.startswith("{") and line.endswith("}")):
        return False
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def _clean_stream(text: str, reader: bool = False) -> str:
    lines = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if "\r" in line:  # a redrawn progress line: keep what it last said only if it is not a bar
            line = line.rsplit("\r", 1)[-1]
        if _NOISE.search(line) or (reader and _CONTEXT_NOTE.match(line)) or _is_json_object(line):
            continue
        lines.append(line)
    return "\n".join(lines)


def clean_notebook(nb, root: str | Path | None = None, staging: str | Path | None = None, reader: bool = False):
    """A copy of an executed notebook fit to publish (see the module's docstring); `reader`: for the report's
    readers (the stage context's note on where it writes goes too)."""
    nb = copy.deepcopy(nb)
    scrub = _scrubber(Path(root) if root else None, Path(staging) if staging else None)
    cells = []
    for cell in nb.cells:
        tags = set(cell.get("metadata", {}).get("tags", []))
        if "parameters" in tags and "injected-parameters" not in tags:
            continue  # the placeholders; the injected cell below holds the values used
        if cell.cell_type == "code":
            outs = []
            for out in cell.get("outputs", []):
                kind = out.get("output_type")
                if kind == "stream":
                    if out.get("name") == "stderr":
                        continue
                    text = _clean_stream(scrub(out.get("text", "")), reader)
                    if not text.strip():
                        continue
                    out["text"] = text
                elif kind in ("display_data", "execute_result"):
                    data = out.get("data", {})
                    if "application/vnd.jupyter.widget-view+json" in data:
                        continue
                    for mime in ("text/plain", "text/html", "text/markdown", "text/latex"):
                        if mime in data:
                            value = data[mime]
                            value = "".join(value) if isinstance(value, list) else value
                            data[mime] = scrub(value)
                    if set(data) == {"text/plain"} and _NOISE.search(data["text/plain"]):
                        continue
                elif kind == "error":
                    out["traceback"] = [scrub(t) for t in out.get("traceback", [])]
                    out["evalue"] = scrub(out.get("evalue", ""))
                outs.append(out)
            cell["outputs"] = outs
            cell["source"] = scrub(cell.source)
        elif cell.cell_type == "markdown":
            cell["source"] = scrub(cell.source)
        cells.append(cell)
    nb.cells = cells
    nb.metadata.pop("widgets", None)
    return nb


def export(notebook: str | Path, out: str | Path, audience: str = "stage", root: str | Path | None = None,
           title: str | None = None, home: str | None = None, staging: str | Path | None = None,
           nav: list[dict] | None = None, smoke: bool = False) -> Path:
    """One page of the site from an executed notebook. audience 'stage': code folded under each cell;
    'reader': no code at all (the collaborators' page). `home`: the link back to the site's first page. `nav`:
    the site's pages ({"title", "href" relative to this page, "headings", "current"}) for the sidebar and its
    search; `smoke`: the smoke-test warning at the top (the first page has its own in the banner).
    Written whole or not at all; raises if anything in the page would load from a network."""
    import nbformat
    from nbconvert import HTMLExporter

    if audience not in ("stage", "reader"):
        raise ValueError(f"audience must be 'stage' or 'reader', got {audience!r}")
    notebook, out = Path(notebook), Path(out)
    nb = clean_notebook(nbformat.read(notebook, as_version=4), root, staging, reader=audience == "reader")
    if title:
        nb.metadata["title"] = title
    exporter = HTMLExporter(template_name=audience, extra_template_basedirs=[str(TEMPLATES / "site")],
                            extra_template_paths=[str(TEMPLATES / "site")],
                            exclude_input=audience == "reader", exclude_input_prompt=True,
                            exclude_output_prompt=True)
    resources = {"metadata": {"name": notebook.stem}, "echolib": {"font_stack": FONT_STACK, "home": home,
                                                                 "nav": nav or [], "smoke": smoke}}
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    body = strip_controls(body)  # a NUL or an escape sequence from a user's report never reaches a page
    remote = _REMOTE.search(body)
    if remote:
        raise RuntimeError(f"{notebook}: the page would load from the network: {remote.group(0)!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.part")
    tmp.write_text(body, encoding="utf-8")
    tmp.replace(out)
    return out


# --- the site: every page, made by the report stage -----------------------------------------------------------


def stage_pages(root: Path, params: dict) -> list[tuple[str, Path, Path]]:
    """(stage name, executed notebook, page) of every stage but the site's own whose executed notebook exists, in
    dvc.yaml's order (the pipeline's), paths relative to the project root."""
    from .stage import SITE_STAGES, spec, stage_names

    out = []
    for name in stage_names(root, params):
        sp = spec(name, root, params)
        if sp.stage not in SITE_STAGES and (root / sp.page).is_file():
            out.append((name, sp.page, sp.html))
    return out


def page_outline(notebook: str | Path) -> tuple[str, list[str]]:
    """A notebook's title (its first heading, without the '#') and its other headings, from its markdown cells."""
    import nbformat

    heads = [line.lstrip("#").strip() for cell in nbformat.read(Path(notebook), as_version=4).cells
             if cell.cell_type == "markdown" for line in cell.source.splitlines() if line.startswith("#")]
    return (heads[0] if heads else Path(notebook).stem), heads[1:]


def site_nav(pages: list[tuple[str, Path, Path]], here: Path) -> list[dict]:
    """The sidebar of the page at `here` (site-relative): every page in pipeline order, a stage run once per item
    titled with its item (06 · Training one ablation run: MultiVideo), its headings for the search."""
    out = []
    for name, notebook, html in pages:
        title, heads = page_outline(notebook)
        key = name.partition("@")[2]
        out.append({"title": f"{title}: {key}" if key else title, "headings": heads, "current": html == here,
                    "href": os.path.relpath(html, here.parent)})
    return out


def build_site(root: Path, staging: Path, sp, params: dict) -> Path:
    """The report stage's site in staging/reports/site: its own page for readers (its executed notebook, in the
    staging folder) and every other stage's page (its executed notebook in the project, code folded), each with
    the sidebar (every page in pipeline order, searchable by title and heading) and, in a smoke test, the warning.
    Only this stage depends on this module and the templates, so a change to them makes only the site again."""
    title = C.get(params, "report.title")
    table1 = root / "metrics" / "table1.json"
    n_eval = json.loads(table1.read_text(encoding="utf-8")).get("n_studies") if table1.is_file() else None
    smoke = is_smoke(C.get(params, "base.profile"), n_eval)
    stages = stage_pages(root, params)
    pages = [("report", staging / sp.page, sp.html), *((n, root / p, h) for n, p, h in stages)]
    for name, page, html in stages:
        export(root / page, staging / html, "stage", root=root, title=f"{name} · {title}",
               home=os.path.relpath(SITE / "index.html", html.parent), nav=site_nav(pages, html), smoke=smoke)
    export(staging / sp.page, staging / sp.html, "reader", root=root, title=title, staging=staging,
           nav=site_nav(pages, sp.html))
    return staging / SITE


# --- `dvc plots show` offline ----------------------------------------------------------------------------------

DVC_PLOTS_TEMPLATE = Path(".dvc/plots/offline.html")


def dvc_plots_template(scripts: list[str | Path], out: str | Path = DVC_PLOTS_TEMPLATE) -> Path:
    """The HTML template `dvc plots show` fills (.dvc/config: plots.html_template): the given scripts (Vega,
    Vega-Lite, vega-embed builds, in that order) inlined, so the plots page loads nothing from a network. DVC
    replaces only `{plot_divs}` in it (no `{scripts}` placeholder: its CDN script tags are left out)."""
    parts = []
    for s in scripts:
        text = Path(s).read_text(encoding="utf-8")
        if "</script" in text.lower() or "{plot_divs}" in text:
            raise ValueError(f"{s}: cannot be inlined in a <script> element")
        meta = Path(s).resolve().parents[1] / "package.json"  # an npm package's build/ file: name its version
        info = json.loads(meta.read_text()) if meta.is_file() else {}
        name = f"{info['name']} {info['version']} ({info.get('license', 'see its package')})" if info else Path(s).name
        parts.append(f"<!-- {name}, inlined by `python -m echolib.site dvc-plots-template` -->\n<script>{text}</script>")
    page = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>DVC plots</title>\n"
            + "\n".join(parts) +
            f"\n<style>body{{font-family:{FONT_STACK};margin:1rem}} table{{border-spacing:15px}}</style>\n"
            "</head>\n<body>\n{plot_divs}\n</body>\n</html>\n")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(prog="python -m echolib.site")
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("dvc-plots-template", help="write .dvc/plots/offline.html from Vega builds")
    t.add_argument("scripts", nargs="+")
    t.add_argument("--out", default=str(DVC_PLOTS_TEMPLATE))
    a = ap.parse_args()
    print(dvc_plots_template(a.scripts, a.out))


"""How a stage notebook displays what it shows, in JupyterLab and in the executed notebook its page is made
from: charts as inline SVG in our font stack (no Vega from a CDN), polars DataFrames as great-tables tables (every
row, no dtype row), a stage's metrics as a two-column table. Set up by every stage's context (`echolib.stage`);
the site's pages are made from the executed notebooks by `echolib.site`."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl

#: fonts that hold Japanese glyphs, tried in order, then the platform's sans-serif
CJK_FONTS = ("Noto Sans CJK JP", "Noto Sans JP", "Hiragino Sans", "Hiragino Kaku Gothic ProN", "Yu Gothic",
             "Meiryo", "Source Han Sans JP", "IPAexGothic", "IPAGothic")
FONT_STACK = ", ".join(["system-ui", "-apple-system", "'Segoe UI'", "Roboto", "'Helvetica Neue'", "Arial",
                        *(f"'{f}'" for f in CJK_FONTS), "sans-serif"])

_gt_ids = itertools.count()


def setup_notebook() -> None:
    """Charts as inline SVG in our font stack (no Vega from a CDN); DataFrames as great-tables tables."""
    import altair as alt

    alt.renderers.enable("svg")
    alt.data_transformers.disable_max_rows()
    font = FONT_STACK.replace("'", "")

    @alt.theme.register("echolib", enable=True)
    def _theme():
        return alt.theme.ThemeConfig(config={"font": font})

    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with every notebook
        return
    ip = get_ipython()
    if ip is not None:
        import polars as pl

        ip.display_formatter.formatters["text/html"].for_type(pl.DataFrame, lambda df: gt_table(df).as_raw_html())


def gt_table(df: pl.DataFrame, title: str | None = None, subtitle: str | None = None, decimals: int = 3):
    """A great-tables table of every row of `df`: floats to `decimals` places, our font stack, a stable id."""
    import polars as pl
    from great_tables import GT

    t = GT(df, id=f"t{next(_gt_ids)}")
    floats = [c for c, d in df.schema.items() if d in (pl.Float32, pl.Float64)]
    if floats:
        t = t.fmt_number(columns=floats, decimals=decimals)
    if title:
        t = t.tab_header(title=title, subtitle=subtitle)
    return t.opt_table_font(font=[f.strip().strip("'") for f in FONT_STACK.split(",")], add=False)


def chart_to_svg(chart) -> str:
    import vl_convert as vlc

    return vlc.vegalite_to_svg(chart.to_dict())


class Fields(dict):
    """A stage's metrics as they display in a notebook and on its page: a two-column table (nested keys joined
    with '.') in words a reader reads, not Python's: no value shows as None, True, [0] or {}; a list of records
    is counted (it is a table of its own on the page or in the metrics file), and past `MAX_ROWS` rows the rest is
    counted too. Still the dict it was made from."""

    MAX_ROWS = 40

    @staticmethod
    def plain(v) -> str:
        """One value in words: - for nothing, yes / no, numbers to 4 significant digits, lists joined."""
        if v is None or (isinstance(v, (dict, list, tuple)) and not v):
            return "-"
        if isinstance(v, bool):
            return "yes" if v else "no"
        if isinstance(v, float):
            return f"{v:.4g}"
        if isinstance(v, (list, tuple)):
            if any(isinstance(x, (dict, list, tuple)) for x in v):
                return f"{len(v)} records (the full list: this stage's metrics file)"
            return ", ".join(Fields.plain(x) for x in v)
        return str(v)

    def rows(self) -> list[tuple[str, str]]:
        out = []

        def walk(prefix: str, v) -> None:
            if isinstance(v, dict) and v:
                for k, x in v.items():
                    walk(f"{prefix}.{k}" if prefix else str(k), x)
            else:
                out.append((prefix, self.plain(v)))

        walk("", dict(self))
        if len(out) > self.MAX_ROWS:
            out = out[: self.MAX_ROWS - 1] + [("…", f"{len(out) - self.MAX_ROWS + 1} more values: this stage's "
                                                    "metrics file")]
        return out

    def _repr_html_(self) -> str:
        import polars as pl

        return gt_table(pl.DataFrame(self.rows(), schema=["quantity", "value"], orient="row")).as_raw_html()

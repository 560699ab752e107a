"""Altair charts the stage pages share: estimates with confidence intervals as dots on a line."""

from __future__ import annotations

import altair as alt
import polars as pl


def ci_dots(df: pl.DataFrame, y: str, value: str = "value", lo: str = "lo", hi: str = "hi", facet: str | None = None,
            columns: int = 2, x_title: str | None = None, color: str | None = None, ref: float | str | None = None,
            y_sort: list | None = None, width: int = 200, height: int = 90, independent: bool = True) -> alt.Chart:
    """One row per `y`: a dot at `value` on a rule from `lo` to `hi`; optionally faceted (each facet its own x
    scale when `independent`), coloured, and with a reference mark (a number, e.g. 0 for differences, or a
    column such as the majority-grade accuracy)."""
    enc_y = alt.Y(f"{y}:N", sort=y_sort) if y_sort else alt.Y(f"{y}:N")
    base = alt.Chart(df.to_pandas()).encode(y=enc_y)
    if color:
        base = base.encode(color=alt.Color(f"{color}:N"))
    chart = (base.mark_rule().encode(x=alt.X(f"{lo}:Q", title=x_title or value), x2=f"{hi}:Q")
             + base.mark_point(filled=True).encode(x=f"{value}:Q"))
    if isinstance(ref, str):
        chart += base.mark_tick(color="gray").encode(x=f"{ref}:Q")
    elif ref is not None:
        chart += base.mark_tick(color="gray").encode(x=alt.datum(ref), color=alt.value("gray"))
    chart = chart.properties(width=width, height=height)
    if not facet:
        return chart
    chart = chart.facet(facet=f"{facet}:N", columns=columns)
    return chart.resolve_scale(x="independent") if independent else chart

"""Altair charts the stage pages share: estimates with confidence intervals as dots on a line, training curves
from dvclive's logs."""

from __future__ import annotations

from pathlib import Path

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


def curves_in_units(curves):
    """Logged curves (dvclive_curves, optionally with a `seed` column) with the validation scores in Table 1's units:
    val/mcmrr, val/mcmrr_v2r and val/mcmrr_r2v divided by the validation studies logged at the same step
    (val/n_studies) become val/mcmrr_n*, val/r10_* in percent val/r10_pct_*. Curves without val/n_studies keep
    their raw names (ranks, so labelled)."""
    import polars as pl

    keys = ["step", *(["seed"] if "seed" in curves.columns else [])]
    n = curves.filter(pl.col("metric") == "val/n_studies").select(*keys, pl.col("value").alias("_n"))
    out = curves.join(n, on=keys, how="left")
    mcmrr = pl.col("metric").str.starts_with("val/mcmrr") & pl.col("_n").is_not_null()
    r10 = pl.col("metric").str.starts_with("val/r10_")
    return out.with_columns(
        value=pl.when(mcmrr).then(pl.col("value") / pl.col("_n")).when(r10).then(pl.col("value") * 100)
        .otherwise(pl.col("value")),
        metric=pl.when(mcmrr).then(pl.col("metric").str.replace("^val/mcmrr", "val/mcmrr_n"))
        .when(r10).then(pl.col("metric").str.replace("^val/r10_", "val/r10_pct_")).otherwise(pl.col("metric")),
    ).drop("_n")


def training_curves(run_dir: str | Path):
    """Loss, learning rate, logit scale and validation scores of every seed of a run (dvclive), one panel each;
    the validation scores in Table 1's units (`curves_in_units`: val/mcmrr_n = MCMRR / N, val/r10_pct_v2r = R@10 %)."""
    import altair as alt
    import polars as pl

    seeds = [d for d in sorted(Path(run_dir).glob("seed*")) if (d / "dvclive").is_dir()]
    if not seeds:  # nothing trained (a run of the authors' released model)
        return None
    curves = curves_in_units(pl.concat([dvclive_curves(d / "dvclive").with_columns(seed=pl.lit(d.name))
                                        for d in seeds]))
    show = curves.filter(pl.col("metric").is_in(["train/loss", "train/lr", "train/logit_scale", "val/loss",
                                                  "val/r10_pct_v2r", "val/mcmrr_n", "val/mcmrr"]))
    return alt.Chart(show.to_pandas()).mark_line(point=False).encode(
        x="step:Q", y=alt.Y("value:Q", scale=alt.Scale(zero=False)), color="seed:N",
        facet=alt.Facet("metric:N", columns=3)).properties(width=220, height=140).resolve_scale(y="independent")


def pretraining_curves(folder: str | Path):
    """The loss of every self-supervised pretraining under `folder` (one dvclive folder each), or None."""
    import altair as alt
    import polars as pl

    curves = [dvclive_curves(d / "dvclive").with_columns(pl.lit(d.name).alias("pretraining"))
              for d in sorted(Path(folder).glob("*")) if (d / "dvclive").is_dir()]
    if not curves:
        return None
    c = pl.concat(curves).filter(pl.col("metric") == "pretrain/loss")
    return alt.Chart(c.to_pandas()).mark_line().encode(x="step:Q", y=alt.Y("value:Q", title="loss"),
                                                       color="pretraining:N").properties(width=420, height=160)


def fig2_chart(points: pl.DataFrame) -> alt.Chart:
    """Fig. 2: each metric against the pretraining set (training clips, log axis) per model, with CIs; the
    scratch models as dashed lines (local weights, which have no size, are in the table beside)."""
    base = alt.Chart(points.to_pandas())
    x = alt.X("pretrain_clips:Q", scale=alt.Scale(type="log"), title="pretraining clips (log)")
    y = alt.Y("value:Q", scale=alt.Scale(zero=False), title="value (95 % CI); dashed: from scratch")
    ssl = base.transform_filter("isValid(datum.pretrain_clips)")
    layers = (ssl.mark_line(point=True).encode(x=x, y=y, color="model:N")
              + ssl.mark_rule().encode(x=x, y="lo:Q", y2="hi:Q", color="model:N")
              + base.transform_filter("datum.init == 'scratch'").mark_rule(strokeDash=[4, 3])
              .encode(y="value:Q", color="model:N"))
    return layers.properties(width=230, height=160).facet(facet="metric:N", columns=2).resolve_scale(y="independent")


def budget_chart(rows: pl.DataFrame) -> alt.Chart:
    """The budget sweep: validation MCMRR/N (each seed a dot, the mean over seeds a line) against epochs of each
    run's own clips and against optimisation steps, one colour per run; log x axes."""
    means = rows.group_by("run", "multiple").agg(pl.col("epochs", "steps", "val_mcmrr_n").mean()).sort("run", "multiple")
    y = alt.Y("val_mcmrr_n:Q", title="validation MCMRR / N")
    panels = []
    for x, title in (("epochs", "epochs of the run's own training clips"), ("steps", "optimisation steps")):
        enc = alt.X(f"{x}:Q", scale=alt.Scale(type="log"), title=title)
        dots = alt.Chart(rows.to_pandas()).mark_point(opacity=0.5).encode(
            x=enc, y=y, color="run:N", tooltip=["run", "multiple", "seed", "steps", "val_mcmrr_n"])
        line = alt.Chart(means.to_pandas()).mark_line().encode(x=enc, y=y, color="run:N")
        panels.append((dots + line).properties(width=260, height=200))
    return alt.hconcat(*panels)

"""What the collaborators' page shows (how notebooks display tables and charts is echolib.site's).

The collaborators' page (notebooks/99_report.ipynb, exported as reports/site/index.html by echolib.site) is built
from the functions below, which read only metrics/ (what the stages measured) and params.yaml:
a banner saying what ran, Table 1 beside the paper's numbers, the claims in plain sentences, per-finding results
with where each finding can be seen, Table 2, the view classifier's quality, training curves, Fig. 3-style
examples, and links to every stage's page.

    python -m echolib.report summary      the report's path and Table 1 in the terminal (`make repro` ends so)
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .compare import (
    HEADLINE_ROWS,
    TABLE1_METRICS,
    TABLE1_ROWS,
    format_ci,
    in_units,
    table1_scale,
    unit_digits,
)
from .display import gt_table
from .site import SITE, SMOKE_STUDIES, is_smoke

if TYPE_CHECKING:
    import polars as pl

#: the paper's Table 1 (shared/PAPER.md): MCMRR and R@10 in percent, on its N test studies with a 4CH clip
PAPER_N = 5515
PAPER_TABLE1 = {
    "MultiVideo": {"mcmrr_v2r": 595, "mcmrr_r2v": 584, "r10_v2r": 10.9, "r10_r2v": 10.3},
    "MultiVideo-4CH": {"mcmrr_v2r": 705, "mcmrr_r2v": 695, "r10_v2r": 8.4, "r10_r2v": 8.0},
    "SingleVideo": {"mcmrr_v2r": 676, "mcmrr_r2v": 686, "r10_v2r": 8.8, "r10_r2v": 7.1},
    "SingleImage": {"mcmrr_v2r": 1222, "mcmrr_r2v": 1115, "r10_v2r": 3.6, "r10_r2v": 4.8},
}
#: the paper's Table 2 (patients, studies per split)
PAPER_TABLE2 = {"train": {"patients": 29886, "studies": 60747}, "valid": {"patients": 853, "studies": 1685},
                "test": {"patients": 3416, "studies": 7050}}


# --- what the stages measured ----------------------------------------------------------------------------------


def load_metrics(metrics_dir: str | Path) -> dict[str, dict]:
    """Every metrics/*.json by name (synth, views, split, table1, ...)."""
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(Path(metrics_dir).glob("*.json"))}


# --- the collaborators' page -----------------------------------------------------------------------------------


def git_revision(root: str | Path) -> str:
    """The commit the project ran from (`git describe --always`) and the tracked files that differ from it, or a
    sentence saying there is no git checkout. dvc.lock is left out of that list: every `dvc repro` writes it, so
    naming it would mark every pipeline checkout as changed."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=20)

    try:
        r = git("describe", "--always", "--abbrev=10")
        if r.returncode != 0 or not r.stdout.strip():
            return "unknown (not a git checkout)"
        status = git("status", "--porcelain=v1", "-uno", "-z")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown (git not available)"
    changed = _changed_paths(status.stdout) - {"dvc.lock"}
    if not changed:
        return r.stdout.strip()
    names = sorted(changed)
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    return f"{r.stdout.strip()} with uncommitted changes to {', '.join(names[:5])}{more}"


def _changed_paths(porcelain_z: str) -> set[str]:
    """Paths in `git status --porcelain=v1 -z` output (a rename's entry is followed by its old path)."""
    paths, fields, i = set(), porcelain_z.split("\0"), 0
    while i < len(fields):
        entry = fields[i]
        if len(entry) > 3:
            paths.add(entry[3:])
            i += 1 if entry[0] not in "RC" else 2
        else:
            i += 1
    return paths


def run_facts(root: str | Path, metrics: dict[str, dict]) -> dict:
    """What ran: profile (and any setting changed from it), data source and size, git revision, params digest,
    date, and whether this is a smoke test whose numbers mean nothing."""
    from . import config as C

    root = Path(root)
    params = C.load_params(root / "params.yaml")
    profile, source = C.get(params, "base.profile"), C.get(params, "base.source")
    data = metrics.get("synth") if source == "synthetic" else metrics.get("ingest")
    data = data or {}
    split, filt = metrics.get("split", {}), metrics.get("filter", {})
    n_eval = (metrics.get("table1") or {}).get("n_studies")
    smoke = is_smoke(profile, n_eval)
    return {
        "profile": profile, "changed": C.profile_drift(params), "source": source,
        "patients": data.get("patients"), "studies": data.get("studies"), "clips": data.get("videos", data.get("clips")),
        "kept_clips": filt.get("kept"), "evaluation_studies": n_eval,
        "test_patients": (split.get("test") or {}).get("patients"), "runs": list(params.get("runs") or {}),
        "seeds": C.get(params, "base.seeds"), "git": git_revision(root), "params_digest": C.params_digest(params),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "smoke": smoke,
    }


def _n(v) -> str:
    return "–" if v is None else f"{v:,}" if isinstance(v, int) else html.escape(str(v))


def banner_html(f: dict) -> str:
    """The first thing on the page: what was run, and a loud warning when it is a smoke test."""
    source = {"synthetic": "synthetic benchmark (shared/DATA.md), no patient data",
              "dicom": "DICOM archive", "echonet": "EchoNet-Dynamic"}.get(f["source"], f["source"])
    changed = (f" — with {len(f['changed'])} setting(s) changed from it: " + ", ".join(f["changed"][:8]) +
               (" …" if len(f["changed"]) > 8 else "")) if f["changed"] else ""
    rows = [("Profile", f"<code>{html.escape(f['profile'])}</code>{html.escape(changed)}"),
            ("Data", html.escape(source)),
            ("Size", f"{_n(f['patients'])} patients, {_n(f['studies'])} studies, {_n(f['clips'])} clips "
                     f"({_n(f['kept_clips'])} kept by the view filter)"),
            ("Evaluated on", f"{_n(f['evaluation_studies'])} test studies with a 4CH clip "
                             f"({_n(f['test_patients'])} test patients); seeds {html.escape(str(f['seeds']))}"),
            ("Code", f"git <code>{html.escape(f['git'])}</code>"),
            ("Parameters", f"params.yaml digest <code>{html.escape(f['params_digest'])}</code>"),
            ("Built", html.escape(f["date"]))]
    dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    smoke = ""
    if f["smoke"]:
        smoke = ('<div class="echolib-smoke" role="alert">Smoke test — not a result. This page comes from the '
                 f"<code>{html.escape(f['profile'])}</code> profile with {_n(f['evaluation_studies'])} evaluation "
                 "studies: it shows that the pipeline runs end to end. Its numbers say nothing about the models "
                 "(with so few candidates almost any model finds the right report). Run <code>make repro</code> "
                 "on the default profile for the benchmark.</div>")
    return f'{smoke}<div class="echolib-banner"><dl>{dl}</dl></div>'


def _table1_runs(res: dict) -> list[str]:
    """Table 1's rows: the paper's models and our controls, then any other run; not the frame-order ablations
    (they have a table of their own)."""
    from .evaluate import ORDERS

    ablation = tuple(f"-{o}" for o in ORDERS)
    return [r for r in TABLE1_ROWS if r in res["runs"]] + [r for r in res["runs"]
                                                           if r not in TABLE1_ROWS and not r.endswith(ablation)]


def temporal_table(res: dict):
    """MCMRR / N video -> report of each 4CH video run with its frames as trained, reversed, shuffled and still
    (one frame repeated), with the paired difference from the run as trained; a note when none was evaluated."""
    import polars as pl
    from IPython.display import Markdown

    from .evaluate import ORDERS

    n, rows = res["n_studies"], []
    for r in res["runs"]:
        for o in ORDERS:
            d = res.get("differences", {}).get(f"{r}-{o} - {r}")
            if d is None:
                continue
            m = d["mcmrr_v2r"]
            rows.append({"model": r, "frames": o, "MCMRR / N": _ours_cell(res, f"{r}-{o}", "mcmrr_v2r"),
                         "as trained": _ours_cell(res, r, "mcmrr_v2r"),
                         "difference (/ N)": format_ci(in_units(m, "mcmrr_v2r", n), 3, "+")})
    if not rows:
        return Markdown("(No frame-order ablation was evaluated: a video run of the 4CH view gets one.)")
    return gt_table(pl.DataFrame(rows), title="What the video models owe to the order of the frames",
                    subtitle="Each 4CH video run scored with the frames of every test clip reversed, shuffled, or "
                             "one frame repeated. A positive difference: worse than as trained. Mean over seeds, "
                             "95 % CI over studies and seeds.")


def _ours_cell(res: dict, run: str, m: str) -> str:
    """MCMRR / N (3 decimals), R@10 in percent (1 decimal), with the CI (`table1_scale`)."""
    return format_ci(in_units(res["runs"][run][m], m, res["n_studies"]), unit_digits(m))


def _ceiling_cell(c: dict, m: str) -> str:
    """A perfect reader's value (echolib.oracle) on the scale of Table 1's cells: MCMRR / N, R@10 in percent."""
    return f"{c[f'{m}_n']:.3f}" if m.startswith("mcmrr") else f"{c[f'{m}_pct']:.1f}"


def _paper_cell(run: str, m: str) -> str:
    p = PAPER_TABLE1.get(run)
    if not p:
        return ""
    return f"{p[m] / PAPER_N:.3f}" if m.startswith("mcmrr") else f"{p[m]:.1f}"


def table1_markdown(res: dict, beside: dict | None = None, label: str = "ours", beside_label: str = "control") -> str:
    """Table 1 as Markdown (README, closing notes): ours (and another pipeline's, e.g. the control's) beside the
    paper's, on the same scales as the report's table."""
    names = [label] + ([beside_label] if beside else []) + ["paper"]
    head = "| model | " + " | ".join(f"{m} {w}" for m in ("MCMRR/N v→r", "R@10 % v→r", "MCMRR/N r→v", "R@10 % r→v")
                                   for w in names) + " |"
    lines = [head, "|---" * (1 + 4 * len(names)) + "|"]
    for r in _table1_runs(res):
        cells = []
        for m in TABLE1_METRICS:
            cells.append(_ours_cell(res, r, m))
            if beside:
                cells.append(_ours_cell(beside, r, m) if r in beside["runs"] else "")
            cells.append(_paper_cell(r, m))
        lines.append(f"| {r} | " + " | ".join(cells) + " |")
    for name, c in (res.get("ceilings") or {}).items():
        cells = []
        for m in TABLE1_METRICS:
            cells.append(_ceiling_cell(c, m))
            if beside:
                cells.append(_ceiling_cell(beside["ceilings"][name], m) if beside.get("ceilings") else "")
            cells.append("")
        lines.append(f"| perfect reader: {name} | " + " | ".join(cells) + " |")
    sizes = f"N = {res['n_studies']:,}" + (f", {beside_label} N = {beside['n_studies']:,}" if beside else "")
    return "\n".join(lines) + f"\n\n{sizes}; paper N = {PAPER_N:,}. Mean over seeds, 95 % CI over studies and seeds."


def table1_beside_paper(res: dict):
    """Table 1 with 95 % CIs beside the paper's numbers. MCMRR is divided by the number of candidate studies
    (ours: res['n_studies'], the paper's: 5,515) so that both read on one scale (chance about 0.5); R@10 in
    percent, whose chance level (10 / N) differs between the two and is stated under the table."""
    import polars as pl
    from great_tables import loc, style


    n, runs = res["n_studies"], _table1_runs(res)
    rows = [{"model": r, **{f"{m}_ours": _ours_cell(res, r, m) for m in TABLE1_METRICS},
             **{f"{m}_paper": _paper_cell(r, m) for m in TABLE1_METRICS},
             "seeds": str(res["runs"][r]["mcmrr_v2r"].get("seeds", 1))} for r in runs]
    rows += [{"model": f"perfect reader: {name}", **{f"{m}_ours": _ceiling_cell(c, m) for m in TABLE1_METRICS},
              **{f"{m}_paper": "" for m in TABLE1_METRICS}, "seeds": "–"} for name, c in (res.get("ceilings") or {}).items()]
    metrics = TABLE1_METRICS
    df = pl.DataFrame(rows)
    labels = {"mcmrr_v2r": "MCMRR / N, video → report", "r10_v2r": "R@10 %, video → report",
              "mcmrr_r2v": "MCMRR / N, report → video", "r10_r2v": "R@10 %, report → video"}
    t = gt_table(df.select("model", *[f"{m}_{w}" for m in metrics for w in ("ours", "paper")], "seeds"),
                 title="Table 1: finding the right report among every test study",
                 subtitle=f"Ours: mean over seeds with 95 % bootstrap CI over studies and seeds, N = {n:,}. "
                          f"Paper: N = {PAPER_N:,}.")
    for m in metrics:
        t = t.tab_spanner(label=labels[m], columns=[f"{m}_ours", f"{m}_paper"])
    t = t.cols_label(**{f"{m}_{w}": w for m in metrics for w in ("ours", "paper")})
    t = t.tab_style(style=style.text(color="#666"), locations=loc.body(columns=[f"{m}_paper" for m in metrics]))
    if res.get("ceilings"):
        t = t.tab_source_note(
            "Perfect reader: the ceiling the clips allow, from the benchmark's ground truth: a reader that knows "
            "every finding a study's clips show (all of them; those of its five views; those of its 4CH clips), ranks "
            "every report that disagrees below every report that agrees, and the agreeing ones at random.")
    return t.tab_source_note(
        f"MCMRR: mean rank of the correct item divided by N; lower is better, chance ≈ 0.5. R@10: share of queries "
        f"whose correct item is among the top 10; higher is better; chance is 10/N = {100 * min(10 / n, 1):.1f} % "
        f"here and {1000 / PAPER_N:.2f} % in the paper, so R@10 is not comparable across the two; MCMRR / N is.")


def same_patient_table(res: dict):
    """MCMRR / N and R@10 % video -> report as the paper defines them (every other study a candidate) beside the
    same with the other studies of the query's patient left out, for every run (a note without those ranks)."""
    import polars as pl
    from IPython.display import Markdown

    xp = res.get("same_patient")
    if not xp:
        return Markdown("(No ranks with the same patient's other studies left out: rerun the evaluate stages.)")
    rows = [{"model": r, "MCMRR / N, paper's definition": _ours_cell(res, r, "mcmrr_v2r"),
             "MCMRR / N, same-patient studies left out": _ours_cell(xp, r, "mcmrr_v2r"),
             "R@10 %, paper's definition": _ours_cell(res, r, "r10_v2r"),
             "R@10 %, same-patient studies left out": _ours_cell(xp, r, "r10_v2r")}
            for r in _table1_runs(res) if r in xp["runs"]]
    return gt_table(pl.DataFrame(rows), title="Other studies of the same patient among the candidates",
                    subtitle=f"{xp['queries_with_same_patient_candidates']} of {res['n_studies']} test studies have "
                             f"another study of their patient among the candidates "
                             f"({xp['same_patient_candidates']} such candidates in all); their reports may describe "
                             "the same findings, and the paper's definition counts them as misses. Mean over seeds, "
                             "95 % CI over studies and seeds.")


def claims_html(sentences: list[dict]) -> str:
    """The differences the paper's claims rest on, one plain sentence each (from compare.claim_sentences)."""
    if not sentences:
        return "<p>No pair of runs that a claim compares was evaluated.</p>"
    items = []
    for s in sentences:
        mark = {True: "✔", False: "✘", None: "·"}[s["agrees"]]
        items.append(f"<li><strong>{html.escape(s['claim'])}</strong> ({html.escape(s['pair'])}): {mark} "
                     f"{html.escape(s['sentence'])} <small>({html.escape(s['source'])})</small></li>")
    return f'<ul class="echolib-sentences">{"".join(items)}</ul>'


def findings_table(probe: pl.DataFrame, control: pl.DataFrame, differences: pl.DataFrame):
    """Per finding: where DATA.md says it can be judged (needs motion, views showing it, colour Doppler), each run's
    linear-probe macro-F1 with CI (mean over its seeds), the supervised positive control's macro-F1 and its AUROC
    of any grade vs none with the rule's verdict (readable from the pixels or not), and the paired differences
    video − image and several views − 4CH with CIs."""
    import polars as pl
    from great_tables import loc, style

    from .vocab import FINDING_NAMES, VISIBILITY
    from .vocab import READABLE_AUROC as READABLE

    def ci(v, lo, hi) -> str:
        return "" if v is None else f"{v:.2f} [{lo:.2f}, {hi:.2f}]"

    runs = [r for r in ("SingleImage", "SingleVideo", "MultiVideo-4CH", "MultiVideo")
            if not probe.is_empty() and r in probe["model"].to_list()]
    rows = []
    for f, vis in VISIBILITY.items():
        row = {"finding": FINDING_NAMES[f], "motion": "yes" if vis["motion"] else "",
               "Doppler": "yes" if vis["doppler"] else "", "seen in": ", ".join(vis["views"])}
        for r in runs:
            p = probe.filter((pl.col("model") == r) & (pl.col("finding") == f))
            row[r] = ci(*p.select("macro_f1", "macro_f1_lo", "macro_f1_hi").row(0)) if p.height else ""
        c = control.filter(pl.col("finding") == f) if not control.is_empty() else control
        row["supervised"] = ci(*c.select("macro_f1", "macro_f1_lo", "macro_f1_hi").row(0)) if c.height else ""
        auc = c.select("auroc_any", "auroc_any_lo", "auroc_any_hi").row(0) if c.height else (None,)
        row["pixels readable"] = "" if auc[0] is None else \
            f"{'✔' if auc[0] >= READABLE else '✘'} {ci(*auc)}"
        for pair, name in (("SingleVideo - SingleImage", "video − image"), ("MultiVideo - SingleVideo", "views − 4CH")):
            d = differences.filter((pl.col("difference") == pair) & (pl.col("finding") == f)) \
                if not differences.is_empty() else differences
            row[name] = ci(*d.select("macro_f1", "lo", "hi").row(0)) if d.height else ""
        rows.append(row)
    df = pl.DataFrame(rows)
    t = gt_table(df, title="What the video embeddings carry, finding by finding",
                 subtitle="Linear-probe macro-F1 on frozen study embeddings, mean over seeds, 95 % CI over studies "
                          "and seeds; 'supervised' is a classifier trained on the pixels for each finding (the "
                          f"positive control), and 'pixels readable' its AUROC of any grade vs none (✔: >= {READABLE}, "
                          "the rule set before it was run; ✘: a retrieval model cannot be expected to learn it).")
    t = t.tab_spanner(label="where DATA.md says it can be judged", columns=["motion", "Doppler", "seen in"])
    if runs:
        t = t.tab_spanner(label="probe macro-F1", columns=[*runs, "supervised"])
    t = t.tab_spanner(label="paired difference", columns=["video − image", "views − 4CH"])
    if "pixels readable" in df.columns and not df["pixels readable"].str.len_chars().sum():
        t = t.cols_hide("pixels readable")
    t = t.tab_style(style=style.text(weight="bold"), locations=loc.body(columns="motion", rows=pl.col("motion") == "yes"))
    return t.tab_source_note("video − image should be above zero where a finding needs motion; views − 4CH where it "
                             "is seen in views other than 4CH (DATA.md). A CI that includes zero shows no difference.")


def table2_table(split: dict):
    """Table 2 (patients, studies, clips per view for each split) with the paper's split shares beside."""
    import polars as pl

    from .splits import table2_frame

    ours = table2_frame(split)
    total = {k: sum(split[s][k] for s in ("train", "valid", "test") if s in split) for k in ("patients", "studies")}
    ptotal = {k: sum(PAPER_TABLE2[s][k] for s in PAPER_TABLE2) for k in ("patients", "studies")}
    df = ours.with_columns(
        pl.col("split").map_elements(lambda s: f"{100 * split[s]['patients'] / max(total['patients'], 1):.1f} %",
                                     return_dtype=pl.String).alias("patients, share"),
        pl.col("split").map_elements(lambda s: f"{100 * PAPER_TABLE2[s]['patients'] / ptotal['patients']:.1f} %",
                                     return_dtype=pl.String).alias("paper's share"))
    t4 = split.get("test_4ch", {})
    return gt_table(df, title="Table 2: patient-level split",
                    subtitle=f"No patient is in two splits ({split.get('patients_in_two_splits', '–')} found). "
                             f"Test studies with a 4CH clip (the evaluation candidates): {_n(t4.get('studies'))}."
                    ).tab_spanner(label="kept clips per view", columns=["LAX", "SAX", "2CH", "3CH", "4CH"])


def view_qc_table(views: dict, filt: dict):
    """The view classifier's quality and what the filter kept."""
    import polars as pl

    def f3(v):
        return "–" if v is None else f"{v:.3f}"

    dropped = filt.get("dropped_by_reason") or {}
    rows = [("classifier", str(views.get("model", "labels (no classifier)"))),
            ("accuracy on held-out patients' clips", f3(views.get("accuracy"))),
            ("calibration error (ECE) before → after temperature scaling",
             f"{f3(views.get('ece_before'))} → {f3(views.get('ece_after'))}"),
            ("threshold on the predicted view's probability", str(filt.get("threshold", "–"))),
            ("clips kept", f"{_n(filt.get('kept'))} of {_n(filt.get('clips'))}"),
            ("dropped, by reason", "; ".join(f"{k}: {v}" for k, v in dropped.items()) or "none"),
            ("accuracy of the kept clips' views", f3(filt.get("kept_view_accuracy"))),
            ("studies left without a kept clip", _n(filt.get("studies_without_kept_clip")))]
    return gt_table(pl.DataFrame(rows, schema=["quantity", "value"], orient="row"),
                    title="View classification (the paper keeps LAX, SAX, 2CH, 3CH, 4CH at probability ≥ 0.9)")


def fig2_sentences(fig2: dict, metric: str = "mcmrr_v2r") -> list[str]:
    """The image-video gap at each initialisation in one sentence each (MCMRR video -> report, video minus image:
    below zero the video model ranks the true report higher), from metrics/fig2.json."""
    out = []
    for g in fig2.get("gaps", []):
        if g["metric"] != metric:
            continue
        video, image = g["difference"].split(" - ")
        verdict = ("video better" if g["hi"] < 0 else "image better" if g["lo"] > 0 else "no difference shown")
        out.append(f"{g['init']}: {video.split('@')[0]} minus {image.split('@')[0]} = {g['value']:+.1f} ranks "
                   f"({g['lo']:+.1f} to {g['hi']:+.1f}): {verdict}")
    return out


def fig2_section(fig2: dict | None):
    """What the report shows of Fig. 2: the chart and the gap per initialisation, or why it is not there."""
    from IPython.display import HTML, Markdown

    from .charts import fig2_chart

    if not fig2 or fig2.get("skipped"):
        why = (fig2 or {}).get("skipped", "the fig2 stage has not run")
        return [Markdown(f"Fig. 2 was not run in this pipeline ({why}).")]
    import polars as pl

    items = "".join(f"<li>{html.escape(x)}</li>" for x in fig2_sentences(fig2))
    return [fig2_chart(pl.DataFrame(fig2["points"])),
            HTML(f"<p>The image-video gap (MCMRR video → report, on {fig2['n_studies']} test studies, 95 % CI):</p>"
                 f'<ul class="echolib-sentences">{items}</ul>')]


def curves_chart(plots_dir: str | Path):
    """Training loss and validation MCMRR / N of every run and seed, from the plot files the compare stage wrote."""
    import altair as alt
    import polars as pl

    parts = []
    for name, title in (("train_loss", "training loss"), ("val_mcmrr_n", "validation MCMRR / N (lower is better)")):
        p = Path(plots_dir) / f"{name}.csv"
        if p.is_file():
            parts.append(pl.read_csv(p).rename({name: "value"}).with_columns(curve=pl.lit(title)))
    if not parts:
        return None
    df = pl.concat(parts).with_columns(model=pl.col("run").str.replace(r" seed \d+$", ""))
    return alt.Chart(df.to_pandas()).mark_line().encode(
        x=alt.X("step:Q"), y=alt.Y("value:Q", title=None, scale=alt.Scale(zero=False)),
        color=alt.Color("model:N"), detail="run:N", tooltip=["run", "step", "value"],
    ).properties(width=330, height=200).facet(column=alt.Column("curve:N", title=None)).resolve_scale(y="independent")


def stage_links(root: Path) -> list[tuple[str, Path]]:
    """(stage name, page) of every stage that ran, in pipeline order: the pages this stage's site will hold."""
    from . import config as C
    from .site import stage_pages

    return [(name, html) for name, _, html in stage_pages(root, C.load_params(root / "params.yaml"))]


def stage_links_html(pages: list[tuple[str, Path]], site: str | Path = SITE) -> str:
    """Links (relative to the site's first page) to the stages' pages: (stage name, page) in pipeline order."""
    site = Path(site)
    items = []
    for name, p in pages:
        p = Path(p)
        rel = p.relative_to(site).as_posix() if p.is_relative_to(site) else p.as_posix()
        items.append(f'<li><a href="{html.escape(rel)}">{html.escape(name)}</a></li>')
    return f"<ol>{''.join(items)}</ol>"


#: the DVC metrics' names of Table 1's cells: the units in the name (MCMRR / N, R@10 in percent)
_SUMMARY_KEYS = {"mcmrr_v2r": "mcmrr_n_v2r", "r10_v2r": "r10_pct_v2r", "mcmrr_r2v": "mcmrr_n_r2v",
                 "r10_r2v": "r10_pct_r2v"}


def headline_runs(res: dict) -> list[str]:
    """The rows of the DVC headline: compare.HEADLINE_ROWS that were evaluated, then every other trained run (one
    the recorded budgets name), not inference variants (-matched, -1frame, frame orders) nor the exposure run."""
    runs = res.get("runs") or {}
    trained = [r for r in (res.get("budgets") or {}) if r in runs and r not in TABLE1_ROWS]
    return [r for r in HEADLINE_ROWS if r in runs] + trained


def short_names(runs: list[str]) -> dict[str, str]:
    """Each run's short name for a terminal column: the capitals and digits of its first part (MultiVideo -> MV),
    then each further part kept when it starts with a capital or digit (-4CH) and cut to its first letter otherwise
    (-steps -> -s, -exposure -> -e). A name that two runs would share, or that would be empty, stays in full."""
    def short(run: str) -> str:
        head, *rest = run.replace(".", "_").split("-")
        first = "".join(ch for ch in head if ch.isupper() or ch.isdigit()) or head
        return "-".join([first, *(p if p[0].isupper() or p[0].isdigit() else p[0] for p in rest if p)])

    names = {r: short(r) for r in runs}
    taken = list(names.values())
    return {r: (n if taken.count(n) == 1 else r.replace(".", "_")) for r, n in names.items()}


def summary_metrics(metrics: dict[str, dict], facts: dict) -> dict[str, dict]:
    """The files of metrics/summary/, the only DVC metrics (cached: each experiment keeps its own). One file per
    row of Table 1 (table1/RUN.json: MCMRR / N and R@10 in percent both ways, mean over seeds, and the number of
    seeds; not the frame-order ablations; N in data.json: eval_studies), so `dvc metrics show` prints
    Table 1 as a table, one row per model; headline.json, Table 1's first column (MCMRR / N video -> report) of
    the `headline_runs` under short names (`short_names`: v2r.MV, v2r.SV-s, ...) and the fewest seeds of any
    of them, so that `dvc exp show`
    sets experiments side by side in 120 columns; and data.json: profile, evaluation studies, view accuracy,
    patients per split.
    Every detail stays in the other metrics files."""
    t1 = metrics.get("table1") or {}
    split = metrics.get("split") or {}
    views = metrics.get("views") or {}
    runs = t1.get("runs") or {}
    out = {f"table1/{r}": {_SUMMARY_KEYS[m]: round(table1_scale(t1, r, m)[0], 3 if m.startswith("mcmrr") else 1)
                           for m in TABLE1_METRICS} | {"seeds": runs[r]["mcmrr_v2r"].get("seeds", 1)}
           for r in (_table1_runs(t1) if runs else [])}
    if runs:  # the headline for `dvc exp show` at 120 columns: short, unique names (README, "DVC")
        short = short_names(headline_runs(t1))
        out["headline"] = {"v2r": {short[r]: out[f"table1/{r}"]["mcmrr_n_v2r"] for r in short},
                           "n_seeds": min(out[f"table1/{r}"]["seeds"] for r in short)}
    out["data"] = {"profile": facts["profile"], "eval_studies": t1.get("n_studies"),
                   "view_accuracy": round(views["accuracy"], 4) if views.get("accuracy") is not None else None,
                   "patients": {s: split[s]["patients"] for s in ("train", "valid", "test") if s in split}}
    return out


def terminal_summary(root: str | Path) -> str:
    """What `make repro` prints last: where the report is, what ran, and Table 1 (one screen)."""
    root = Path(root)
    metrics = load_metrics(root / "metrics")
    page = (root / SITE / "index.html").resolve()
    lines = [f"Report: {page}" + ("" if page.is_file() else " (not built yet)")]
    data = root / "metrics" / "summary" / "data.json"
    s = json.loads(data.read_text(encoding="utf-8")) if data.is_file() else None
    t1 = metrics.get("table1")
    if s:
        lines.append(f"profile {s['profile']}, {s['eval_studies']} evaluation studies"
                     + ("  -- SMOKE TEST: these numbers mean nothing" if s["profile"] == "tiny" or
                        (s["eval_studies"] or 0) < SMOKE_STUDIES else ""))
    if t1:
        runs = _table1_runs(t1)
        w = max(len("model"), *map(len, runs)) + 1
        head = f"{'model':<{w}}" + "".join(f"{h:>21}" for h in ("MCMRR/N v->r", "R@10 % v->r", "MCMRR/N r->v",
                                                                 "R@10 % r->v"))
        lines += [f"Table 1 (mean over seeds [95 % CI]; N = {t1['n_studies']}, chance MCMRR/N about 0.5)", head]
        for r in runs:
            lines.append(f"{r:<{w}}" + "".join(f"{_ours_cell(t1, r, m):>21}" for m in TABLE1_METRICS))
    return "\n".join(lines)


def run_report(ctx) -> dict:
    """Stage `report`: metrics/summary/ (the declared DVC metrics); the page itself is the notebook's output,
    exported to reports/site/index.html by the stage runner."""
    metrics = load_metrics(ctx.root / "metrics")
    facts = run_facts(ctx.root, metrics)
    for name, values in summary_metrics(metrics, facts).items():
        ctx.write_metrics(f"summary/{name}", values)
    return facts


def main(argv: list[str] | None = None) -> int:
    import argparse

    from .config import project_root

    ap = argparse.ArgumentParser(prog="python -m echolib.report", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cmd", choices=["summary", "table1"], help="summary: what `make repro` prints at the end; "
                    "table1: Table 1 as Markdown beside the paper's")
    ap.add_argument("--beside", help="table1: another pipeline's metrics/table1.json (e.g. the control's)")
    a = ap.parse_args(argv)
    root = project_root()
    if a.cmd == "summary":
        print(terminal_summary(root))
        return 0
    res = json.loads((root / "metrics" / "table1.json").read_text(encoding="utf-8"))
    beside = json.loads(Path(a.beside).read_text(encoding="utf-8")) if a.beside else None
    print(table1_markdown(res, beside))
    return 0


if __name__ == "__main__":
    sys.exit(main())

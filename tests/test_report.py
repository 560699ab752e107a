"""The report site's pieces: cleaning and exporting pages, the collaborators' page builders, the terminal summary,
progress relayed to the terminal, and the offline template of `dvc plots show`."""

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import altair as alt
import nbformat
import pytest
from nbclient import NotebookClient

from echolib import report as R
from echolib.compare import claim_sentences
from echolib.examples import examples_html
from echolib.site import clean_notebook, dvc_plots_template, export
from echolib.vocab import FINDINGS, GRADE_GLOSSES


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """A notebook as a stage leaves it: placeholder and injected parameters, a chart, a table, stderr chatter, a
    progress bar's residue and this machine's paths in its outputs."""
    d = tmp_path_factory.mktemp("nb")
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("base = None")
    params.metadata["tags"] = ["parameters"]
    injected = nbformat.v4.new_code_cell("base = {'seed': 0}")
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Title"), params, injected,
        nbformat.v4.new_code_cell(
            "import sys, altair as alt, pandas as pd, polars as pl\nfrom echolib.display import setup_notebook\n"
            "setup_notebook()\n"
            f"print('written to {d}/data/x.parquet')\n"
            "print('GPU available: False, used: False')\n"
            "print('keep this line')\n"
            "print('/x/lightning/a.py:21: `isinstance(t, LeafSpec)` is deprecated')\n"
            "print('{\"run\": \"M\", \"seed\": 0}')\n"
            "print('decode:  40%|####      | 4/10 [00:01<00:02, 3.1it/s]')\n"
            "print('a warning', file=sys.stderr)\n"
            "display(pl.DataFrame({'a': list(range(25)), 'b': ['左室'] * 25}))\n"
            "alt.Chart(pd.DataFrame({'a': [1, 2]})).mark_bar().encode(x='a')"),
    ]
    NotebookClient(nb, kernel_name="python3").execute()
    path = d / "demo.ipynb"
    nbformat.write(nb, path)
    return path


def test_cleaning_drops_placeholders_stderr_chatter_and_paths(executed):
    nb = clean_notebook(nbformat.read(executed, 4), root=executed.parent)
    sources = [c.source for c in nb.cells]
    assert "base = None" not in sources and "base = {'seed': 0}" in sources
    outs = nb.cells[-1].outputs
    assert all(o.get("name") != "stderr" for o in outs)
    text = "".join(o.get("text", "") for o in outs if o.output_type == "stream")
    assert "keep this line" in text and "written to data/x.parquet" in text
    assert str(executed.parent) not in json.dumps(nb) and "GPU available" not in text and "it/s]" not in text
    assert "is deprecated" not in text and '"seed"' not in text  # a library's warning, a CLI's JSON line


def test_stage_page_folds_code_reader_page_has_none_and_nothing_loads_from_a_network(executed, tmp_path):
    stage = export(executed, tmp_path / "stages" / "demo.html", "stage", root=executed.parent,
                   home="../index.html").read_text()
    assert '<details class="echolib-code"><summary>code</summary>' in stage and 'href="../index.html"' in stage
    reader = export(executed, tmp_path / "index.html", "reader", root=executed.parent).read_text()
    assert "setup_notebook" not in reader and '<details class="echolib-code">' not in reader
    assert 'hl-ipython3' not in reader and 'hl-ipython3' in stage  # highlighted code cells
    for page in (stage, reader):
        assert "<script src=" not in page and "require.min.js" not in page and "cdn.jsdelivr" not in page
        assert "<svg" in page  # the Altair chart travels inside the page
        assert "Noto Sans CJK JP" in page  # a font stack with Japanese faces
        assert page.count("<td") >= 50 and "shape:" not in page  # every row, no polars dtype/shape rows
        assert "gt_table" in page  # the DataFrame is a great-tables table
    assert reader.count("左室") == 25  # the 25 rows (the stage page also holds the code that made them)


def test_every_page_has_the_sidebar_in_pipeline_order_and_a_smoke_run_says_so_on_each(executed, tmp_path):
    """The sidebar lists the pages given, in that order, titled from each notebook's first heading (a foreach
    stage with its item), the current one marked, links relative to the page, headings kept for the search; the
    smoke-test warning is on a stage page of a smoke run and not otherwise."""
    from echolib.site import page_outline, site_nav

    title, heads = page_outline(executed)
    pages = [("report", executed, Path("reports/site/index.html")),
             ("train@MultiVideo", executed, Path("reports/site/stages/06_train_MultiVideo.html"))]
    nav = site_nav(pages, Path("reports/site/stages/06_train_MultiVideo.html"))
    assert [n["title"] for n in nav] == [title, f"{title}: MultiVideo"] and [n["current"] for n in nav] == [False, True]
    assert [n["href"] for n in nav] == ["../index.html", "06_train_MultiVideo.html"] and nav[0]["headings"] == heads
    page = export(executed, tmp_path / "stages" / "x.html", "stage", root=executed.parent, nav=nav,
                  smoke=True).read_text()
    current = re.search(r'<a [^>]*href="06_train_MultiVideo.html"[^>]*>|<a [^>]*aria-current="page"[^>]*>', page)
    assert 'aria-current="page"' in current.group(0) and 'href="06_train_MultiVideo.html"' in current.group(0)
    assert page.index('href="../index.html"') < current.start()
    assert 'id="echolib-search"' in page and page.count('class="echolib-smoke"') == 1
    plain = export(executed, tmp_path / "stages" / "y.html", "stage", root=executed.parent, nav=nav).read_text()
    assert 'class="echolib-smoke"' not in plain


def test_export_refuses_a_page_that_would_load_from_the_network(tmp_path):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [nbformat.v4.new_output("display_data", {"text/html": '<script src="https://cdn.x/y.js"></script>'})]
    nb.cells = [cell]
    nbformat.write(nb, tmp_path / "bad.ipynb")
    with pytest.raises(RuntimeError, match="would load from the network"):
        export(tmp_path / "bad.ipynb", tmp_path / "bad.html")
    assert not (tmp_path / "bad.html").exists()


def _res(diffs: dict) -> dict:
    return {"differences": {k: {"mcmrr_v2r": dict(zip(("value", "lo", "hi"), v, strict=True))}
                            for k, v in diffs.items()}}


def test_claim_sentences_read_the_interval_against_the_papers_direction():
    res = _res({"SingleImage - SingleVideo": (40.0, 20.0, 60.0),  # image ranks lower: as the paper
                "SingleVideo - MultiVideo": (-2.0, -9.0, 5.0),  # CI includes 0: the paper found a gain
                "MultiVideo-4CH - SingleVideo": (-15.0, -25.0, -5.0)})  # a difference where the paper saw none
    s = {c["pair"]: c for c in claim_sentences(res)}
    assert s["SingleImage - SingleVideo"]["agrees"] and s["SingleImage - SingleVideo"]["observed"] == "worse"
    assert "by 40.0 ranks (95 % CI 20.0 to 60.0)" in s["SingleImage - SingleVideo"]["sentence"]
    assert not s["SingleVideo - MultiVideo"]["agrees"] and "includes zero" in s["SingleVideo - MultiVideo"]["sentence"]
    assert s["MultiVideo-4CH - SingleVideo"]["observed"] == "better" and not s["MultiVideo-4CH - SingleVideo"]["agrees"]
    assert "the paper found none here" in s["MultiVideo-4CH - SingleVideo"]["sentence"].lower()
    assert len(s) == 3  # pairs that were not evaluated have no sentence


def test_each_claim_says_which_comparison_it_rests_on():
    """Equal epochs (the paper's design), equal steps (the -steps twins), equal exposure (only beside the run it
    matched), from each run's recorded budget; variants of one model and unrecorded budgets get no prefix."""
    from echolib.compare import claim_pairs

    ep = {"basis": "epochs", "epochs": 2.0}
    budgets = {"MultiVideo": {**ep, "steps": 1112}, "SingleVideo": {**ep, "steps": 232},
               "MultiVideo-steps": {"basis": "steps", "epochs": 1.08, "steps": 600},
               "SingleVideo-steps": {"basis": "steps", "epochs": 5.2, "steps": 600},
               "SingleVideo-exposure": {"basis": "exposure of MultiVideo-steps", "epochs": 1.07, "steps": 124}}
    res = _res({"SingleVideo - MultiVideo": (-20.0, -30.0, -10.0), "SingleVideo-steps - MultiVideo-steps":
                (28.0, 20.0, 36.0), "MultiVideo-steps-4CH - SingleVideo-exposure": (-17.0, -25.0, -9.0),
                "SingleImage-1frame - SingleImage": (1.0, -1.0, 3.0)})
    s = {c["pair"]: c["sentence"] for c in claim_sentences({**res, "budgets": budgets})}
    assert s["SingleVideo - MultiVideo"].startswith("At equal epochs (2 per run over its own clips; the paper's "
                                                    "design): SingleVideo ranks the true report higher")
    assert s["SingleVideo-steps - MultiVideo-steps"].startswith("At equal steps (600 each; compute-matched): "
                                                                "SingleVideo-steps ranks the true report lower")
    assert s["MultiVideo-steps-4CH - SingleVideo-exposure"].startswith(
        "At equal exposure to 4CH clips (MultiVideo-steps 600 steps, SingleVideo-exposure 124): ")
    assert s["SingleImage-1frame - SingleImage"].startswith("No difference shown")  # one model: no prefix
    pairs = claim_pairs(budgets)
    assert ("MultiVideo-steps-4CH", "SingleVideo-exposure") in pairs
    assert ("MultiVideo-4CH", "SingleVideo-exposure") not in pairs  # not the run it matched


def test_examples_escape_report_text_and_mark_sentences_not_in_the_true_report():
    rec = [{"study_id": "S1", "report": "左室拡大なし。<script>alert(1)</script>。",
            "retrieved": [{"model": "M", "study_id": "S2", "correct": False,
                           "report": "左室拡大なし。軽度僧帽弁逆流あり。<img src=x onerror=alert(2)>",
                           "differs": [{"finding": "mr", "true": "なし・微量", "retrieved": "軽度"}]}]}]
    page = examples_html(rec)
    assert "<script>" not in page and "<img" not in page and "&lt;script&gt;" in page
    assert "<mark>軽度僧帽弁逆流あり。</mark>" in page and "<mark>左室拡大なし。</mark>" not in page
    assert "mitral regurgitation" in page and 'lang="ja"' in page
    assert "なし・微量 (none or trace) → 軽度 (mild)" in page  # every grade with its English gloss
    assert {g for grades in FINDINGS.values() for g in grades} <= set(GRADE_GLOSSES)
    # a paraphrase of the same finding is not a difference; without ground truth, sentences not in the true report
    rec[0]["retrieved"][0].update(report="左室の拡大は認めない。僧帽弁逆流なし。", differs=[])
    assert "<mark>" not in examples_html(rec)
    page = examples_html([{**rec[0], "has_findings": False}])
    assert "<mark>左室の拡大は認めない。</mark>" in page and "no ground-truth findings" in page


def _table1(n: int) -> dict:
    v = {"value": 0.5 * n, "lo": 0.4 * n, "hi": 0.6 * n, "seeds": 3}
    r = {"value": 0.1, "lo": 0.05, "hi": 0.15}
    return {"n_studies": n, "runs": {m: {"mcmrr_v2r": v, "mcmrr_r2v": v, "r10_v2r": r, "r10_r2v": r}
                                     for m in ("SingleImage", "MultiVideo")}, "differences": {}}


def test_table1_beside_paper_normalises_by_each_n():
    page = R.table1_beside_paper(_table1(200)).as_raw_html()
    assert "0.108" in page and "0.222" in page  # the paper's MultiVideo 595 / 5515 and SingleImage 1222 / 5515
    assert "0.500 [0.400, 0.600]" in page and "10.0 [5.0, 15.0]" in page  # ours / 200, R@10 in percent


def test_table1_markdown_puts_the_control_and_the_paper_beside_ours():
    ctl = _table1(400)
    ctl["runs"]["MultiVideo"]["mcmrr_v2r"] = {"value": 100.0, "lo": 80.0, "hi": 120.0}
    md = R.table1_markdown(_table1(200), ctl).splitlines()
    row = next(x for x in md if x.startswith("| MultiVideo |")).split(" | ")
    # model, then per metric: ours, control, paper; MultiVideo comes first (Table 1's order), SingleImage after
    assert row[1:4] == ["0.500 [0.400, 0.600]", "0.250 [0.200, 0.300]", "0.108"]  # 100/400; the paper's 595/5515
    assert md.index(next(x for x in md if "| SingleImage |" in x)) > md.index(next(x for x in md if "| MultiVideo |" in x))
    assert md[-1].startswith("N = 200, control N = 400; paper N = 5,515")


def test_banner_says_smoke_test_for_tiny_or_few_studies(tmp_path):
    facts = {"profile": "default", "changed": [], "source": "synthetic", "patients": 10, "studies": 20, "clips": 100,
             "kept_clips": 90, "evaluation_studies": 500, "test_patients": 40, "seeds": [0], "git": "abc",
             "params_digest": "0123", "date": "today", "smoke": False}
    assert "Smoke test" not in R.banner_html(facts)
    assert "Smoke test" in R.banner_html({**facts, "profile": "tiny", "smoke": True})
    assert "train.steps" in R.banner_html({**facts, "changed": ["train.steps"]})


def test_banner_revision_names_uncommitted_files_but_not_the_lock_file_dvc_writes(tmp_path):
    def git(*args):
        return subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=tmp_path, check=True,
                              capture_output=True, text=True).stdout.strip()

    assert R.git_revision(tmp_path) == "unknown (not a git checkout)"
    git("init", "-q")
    for name in ("dvc.lock", "params.yaml", "a.py", "b.py"):
        (tmp_path / name).write_text("x\n")
    git("add", ".")
    git("commit", "-q", "-m", "first")
    head = git("rev-parse", "--short=10", "HEAD")
    (tmp_path / "new.py").write_text("untracked\n")  # untracked files are not the code that ran
    (tmp_path / "dvc.lock").write_text("written by dvc repro\n")
    assert R.git_revision(tmp_path) == head
    (tmp_path / "params.yaml").write_text("y\n")
    git("mv", "a.py", "c.py")
    (tmp_path / "b.py").unlink()
    assert R.git_revision(tmp_path) == f"{head} with uncommitted changes to b.py, c.py, params.yaml"
    for i in range(5):
        (tmp_path / f"m{i}.py").write_text("m\n")
        git("add", f"m{i}.py")
    assert R.git_revision(tmp_path) == f"{head} with uncommitted changes to b.py, c.py, m0.py, m1.py, m2.py and 3 more"


def test_summary_metrics_are_one_small_file_per_table1_row_and_the_terminal_summary_fits_a_screen(tmp_path):
    metrics = {"table1": _table1(300), "split": {s: {"patients": 3, "studies": 4} for s in ("train", "valid", "test")},
               "views": {"accuracy": 0.91234}}
    runs = metrics["table1"]["runs"]
    runs["MultiVideo-reversed"] = runs["MultiVideo"]  # an ablation: its own table
    runs["MultiVideo-matched"] = runs["Mine"] = runs["Mine-matched"] = runs["MultiVideo"]
    metrics["table1"]["budgets"] = {"MultiVideo": {}, "SingleImage": {}, "Mine": {}}  # the trained runs
    files = R.summary_metrics(metrics, {"profile": "default"})
    assert set(files) == {"table1/SingleImage", "table1/MultiVideo", "table1/MultiVideo-matched", "table1/Mine",
                          "table1/Mine-matched", "headline", "data"}
    # the headline for `dvc exp show`: Table 1's first column of the paper's models and trained runs, short names
    assert files["headline"] == {"v2r": {"MV": 0.5, "SI": files["table1/SingleImage"]["mcmrr_n_v2r"], "M": 0.5},
                                 "n_seeds": 3}
    # one set of units everywhere: MCMRR 150 of N = 300 candidates -> 0.5; R@10 0.1 -> 10 %
    assert files["table1/MultiVideo"] == {"mcmrr_n_v2r": 0.5, "mcmrr_n_r2v": 0.5, "r10_pct_v2r": 10.0,
                                          "r10_pct_r2v": 10.0, "seeds": 3}
    assert files["data"]["view_accuracy"] == 0.9123 and files["data"]["patients"]["test"] == 3
    (tmp_path / "metrics" / "summary").mkdir(parents=True)
    for name, m in metrics.items():
        (tmp_path / "metrics" / f"{name}.json").write_text(json.dumps(m))
    (tmp_path / "metrics" / "summary" / "data.json").write_text(json.dumps(files["data"]))
    out = R.terminal_summary(tmp_path).splitlines()
    assert out[0].startswith("Report: ") and "(not built yet)" in out[0] and "SMOKE" not in out[1]
    assert any(line.startswith("MultiVideo ") for line in out) and all(len(x) <= 110 for x in out[1:])
    row = next(line for line in out if line.startswith("MultiVideo "))
    assert row.split()[1:4] == ["0.500", "[0.400,", "0.600]"] and "10.0 [5.0, 15.0]" in row  # as on the site
    assert not any(line.startswith("MultiVideo-reversed") for line in out)


def test_short_names_are_short_unique_and_free_of_dvc_separators():
    runs = ["MultiVideo", "MultiVideo-4CH", "SingleVideo", "SingleImage", "MultiVideo-steps", "SingleVideo-steps",
            "SingleImage-steps", "SingleVideo-exposure", "SingleVideoB", "mine"]
    got = R.short_names(runs)
    assert [got[r] for r in runs[:8]] == ["MV", "MV-4CH", "SV", "SI", "MV-s", "SV-s", "SI-s", "SV-e"]
    assert got["SingleVideoB"] == "SVB" and got["mine"] == "mine"
    # "Single.Video" and "SV" would both be SV, as SingleVideo is: all three keep their names (a dot would nest)
    got = R.short_names([*runs, "Single.Video", "SV"])
    assert got["SingleVideo"] == "SingleVideo" and got["SV"] == "SV" and got["Single.Video"] == "Single_Video"
    assert got["MultiVideo"] == "MV" and len(set(got.values())) == len(runs) + 2


def test_progress_reaches_the_terminal_through_the_relay_and_not_the_notebook(tmp_path):
    from echolib.progress import Relay

    log = tmp_path / "progress.log"
    code = textwrap.dedent("""
        import time
        from echolib.progress import track
        for _ in track(range(5), desc="work", unit="clip", mininterval=0):
            time.sleep(0.01)
        print("done")
    """)
    with Relay(log, "stageX", poll=0.05) as relay:
        r = subprocess.run([sys.executable, "-c", code], env={**__import__("os").environ, "ECHOLIB_PROGRESS": str(log)},
                           capture_output=True, text=True, check=True)
    assert r.stdout == "done\n" and r.stderr == ""  # nothing on the process's own streams
    assert relay.lines[-1].startswith("work: 5/5 clip (100 %)")


def test_dvc_plots_template_inlines_scripts_and_keeps_the_placeholder(tmp_path):
    js = tmp_path / "a.js"
    js.write_text("window.vega = {};")
    page = dvc_plots_template([js], tmp_path / "offline.html").read_text()
    assert "<script>window.vega = {};</script>" in page and "{plot_divs}" in page and "{scripts}" not in page
    js.write_text("var s = '</script>';")
    with pytest.raises(ValueError, match="cannot be inlined"):
        dvc_plots_template([js], tmp_path / "x.html")


def test_svg_helper():
    from echolib.display import chart_to_svg

    svg = chart_to_svg(alt.Chart(alt.Data(values=[{"a": 1}])).mark_point().encode(x="a:Q"))
    assert svg.lstrip().startswith("<svg")


def test_metrics_tables_show_words_not_python_literals():
    from echolib.display import Fields

    rows = dict(Fields({"a": None, "b": True, "c": [0, 1.23456], "d": {}, "e": [{"x": 1}, {"x": 2}],
                        "f": {"g": 0.000123456, "h": False}}).rows())
    assert rows == {"a": "-", "b": "yes", "c": "0, 1.235", "d": "-",
                    "e": "2 records (the full list: this stage's metrics file)", "f.g": "0.0001235", "f.h": "no"}
    many = Fields({f"k{i}": i for i in range(319)}).rows()
    assert len(many) == Fields.MAX_ROWS and many[-1] == ("…", "280 more values: this stage's metrics file")

"""The pipeline layer: dvc.yaml stages <-> notebooks <-> params.yaml, deps that cover what a stage runs, the
stage runner and the notebooks' context, and the whole tiny pipeline through `dvc repro` with a fourth run."""

from __future__ import annotations

import ast
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill as pm
import pytest

from echolib import config
from echolib.stage import context, dvc_stages, injected, spec, stage_names
from tests.conftest import ROOT, make_project, tiny_params

PARAMS = config.load_params(ROOT / "params.yaml")
STAGES = stage_names(ROOT, PARAMS)
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _parameters_cell(nb):
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "exactly one cell tagged 'parameters'"
    return cells[0]


def test_dvc_lock_is_not_committed():
    """dvc.lock records one machine's run of outputs no shared remote holds; committed, it goes stale at once and
    marks every run's checkout as changed (it was committed twice by `git add -A`: .gitignore says why it cannot be
    ignored instead)."""
    r = subprocess.run(["git", "ls-files", "--error-unmatch", "dvc.lock"], cwd=ROOT, capture_output=True, text=True)
    if "not a git repository" in r.stderr:
        pytest.skip("not a git checkout")
    assert r.returncode != 0, "dvc.lock is committed: `git rm --cached dvc.lock` (see .gitignore)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs_and_literal_parameters(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip outputs"
    for node in ast.parse(_parameters_cell(nb).source).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, f"{path.name}: only `name = literal`"
        ast.literal_eval(node.value)  # raises for anything computed


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_heading_sits_above_its_own_output(path):
    """No markdown cell twice and none directly after another: a repeated or stray narrative cell shifts every
    heading below it onto the previous section's output (00_synthesize had one)."""
    cells = nbformat.read(path, as_version=4).cells
    texts = [c.source for c in cells if c.cell_type == "markdown"]
    assert len(texts) == len(set(texts)), f"{path.name}: a markdown cell appears twice"
    kinds = [c.cell_type for c in cells]
    assert "markdown,markdown" not in ",".join(kinds), f"{path.name}: two markdown cells in a row"


@pytest.mark.parametrize("name", STAGES)
def test_stage_notebook_declares_what_the_stage_lists(name):
    sp = spec(name, ROOT, PARAMS)
    declared = set(pm.inspect_notebook(str(ROOT / sp.notebook)))
    expected = set(sp.sections) | {"outputs"} | ({"key"} if sp.key else set())
    assert declared == expected, f"{name}: notebook declares {sorted(declared)}, dvc.yaml lists {sorted(expected)}"
    for key in sp.params:  # every listed param exists in params.yaml
        config.get(PARAMS, key)
    assert sp.page.suffix == ".ipynb" and str(sp.page).startswith("reports/")
    assert dvc_stages(ROOT)[sp.stage].get("do", dvc_stages(ROOT)[sp.stage])["cmd"] == \
        f"python -m echolib.stage {sp.stage}" + ("@${key}" if sp.key else "")


def test_deps_are_exactly_the_code_each_stage_runs():
    """Both ways: no module a stage runs is missing from its deps, and no echolib path it never runs is there
    (`python -m echolib.deps` rewrites them)."""
    from echolib.deps import differences

    assert differences(ROOT) == {}, "run `python -m echolib.deps` (dvc.yaml's deps differ from the code)"


def test_the_deps_check_fails_both_ways(tmp_path):
    import shutil

    from echolib.deps import differences

    for name in ("dvc.yaml", "notebooks", "echolib"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, tmp_path / name)
    text = (tmp_path / "dvc.yaml").read_text()
    (tmp_path / "dvc.yaml").write_text(text.replace("deps: [notebooks/03_split.ipynb,",
                                                    "deps: [notebooks/03_split.ipynb, echolib/report.py,", 1)
                                       .replace(" echolib/synth/render.py,", "", 1))
    diff = differences(tmp_path)
    assert diff["split"] == {"missing": [], "extra": ["echolib/report.py"]}
    assert diff["synthesize"] == {"missing": ["echolib/synth/render.py"], "extra": []}


def test_closure_follows_lazy_imports_and_subprocess_modules():
    from echolib.deps import code_deps, stage_modules

    mods = stage_modules("train", ROOT / "notebooks" / "06_train.ipynb")
    assert {"echolib.lit", "echolib.loss", "echolib.models.video", "echolib.stage"} <= mods  # lit: imported lazily
    assert "echolib.synth" not in mods and "echolib.views" not in mods
    assert "echolib.site" not in mods and "echolib.report" not in mods  # only the report stage runs those
    assert {"echolib/site.py", "echolib/report.py", "echolib/templates"} <= set(
        code_deps("report", ROOT / "notebooks" / "99_report.ipynb"))


def test_injected_params_group_the_listed_keys_by_section():
    sp = spec("train@SingleVideo", ROOT, PARAMS)
    got = injected(sp, PARAMS)
    assert set(got) == {"base", "train", "text", "pretrain", "runs"} and list(got["runs"]) == ["SingleVideo"]
    assert got["runs"]["SingleVideo"]["views"] == ["4CH"] and got["train"] == PARAMS["train"]
    assert set(got["base"]) == {"seed", "seeds", "source", "data_root"}  # source: where an authors run reads clips


def test_context_guards_unlisted_keys_and_writes_to_scratch_when_explored(tmp_path):
    d = make_project(tmp_path / "p", tiny_params())
    ctx = context("filter_views", root=d)  # as in JupyterLab: nothing injected
    assert ctx.views.threshold == 0.5 and ctx.views.keep == ["LAX", "SAX", "2CH", "3CH", "4CH"]
    with pytest.raises(config.ConfigError, match=r"reads 'views.epochs', which its params: list in dvc.yaml"):
        _ = ctx.views.epochs
    with pytest.raises(config.ConfigError, match="reads params section 'train'"):
        _ = ctx.train
    assert ctx.out("filtered") == d / "scratch" / "data" / "filtered" and ctx.raw == d / "data" / "raw"
    run = context("train", root=d)  # a foreach stage explored by hand: the first run
    assert run.key == "MultiVideo" and run.run.views == ["LAX", "SAX", "2CH", "3CH", "4CH"]
    injected_ctx = context("split", "pipeline", root=d, base={"seed": 1, "source": "synthetic", "data_root": "x"},
                           split={"train": 0.5, "valid": 0.25, "test": 0.25})
    assert injected_ctx.split.ratios == (0.5, 0.25, 0.25) and injected_ctx.out("split") == d / "x" / "split"
    with pytest.raises(config.ConfigError, match=r"'split.train' must be <= 1, got 2"):
        context("split", "pipeline", root=d, base={"seed": 1, "source": "synthetic", "data_root": "x"},
                split={"train": 2, "valid": 0.25, "test": 0.25})


@pytest.mark.parametrize("stage,source", [("synthesize", "dicom"), ("ingest", "synthetic")])
def test_unselected_data_stage_is_a_recorded_skip(tmp_path, stage, source):
    """(The selected one runs for real in test_tiny_pipeline_through_dvc_repro.)"""
    from echolib.stage import run

    d = make_project(tmp_path / "p", tiny_params(base={"source": source}, ingest={"src": "archive"}))
    page = run(stage, d)
    out = d / "data" / ("raw" if stage == "synthesize" else "ingested")
    assert (out / "NOT_SELECTED").is_file() and "Not selected" in page.read_text()
    assert "# 00 · " in page.read_text() and "(not selected)" in page.read_text()  # titled as its notebook
    name = "synth" if stage == "synthesize" else "ingest"
    assert json.loads((d / "metrics" / f"{name}.json").read_text()) == {"selected": False, "source": source}


def test_runner_reports_a_failing_stage_in_one_line(tmp_path):
    params = tiny_params()
    params["views"]["epochs"] = 0
    d = make_project(tmp_path / "p", params)
    r = subprocess.run([sys.executable, "-m", "echolib.stage", "filter_views"], cwd=d, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0
    assert "error: params: 'views.epochs' must be >= 1, got 0" in r.stderr


def _dvc_status_stages(project) -> list[str]:
    """The stages `dvc status` says have changed (its unindented 'NAME:' lines)."""
    r = subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=project, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return sorted(line[:-1] for line in r.stdout.splitlines() if line.endswith(":") and not line[0].isspace())


@pytest.mark.slow
@pytest.mark.long
def test_tiny_pipeline_through_dvc_repro(tmp_path, chromium):
    """`dvc repro` of the tiny profile with a fourth run added to params.yaml only: it is trained, evaluated,
    compared and reported; the site opens offline in Chromium (every chart drawn, no missing glyph, the smoke-test
    warning); `dvc metrics show` is short and `dvc plots show` renders offline; the ingest notebook runs on a DICOM
    archive. Screenshots and the browser check's result are kept under reports/ of this checkout."""
    from tests import dicom_fixtures as F
    from tests.browser import check_site

    params = tiny_params(views={"epochs": 1, "threshold": 0.0}, evaluate={"n_bootstrap": 50})
    params["runs"]["SingleVideoB"] = {**params["runs"]["SingleVideo"], "lr": 0.001, "exposure_of": "SingleVideoB"}
    for run in ("MultiVideo", "SingleVideo", "SingleImage"):  # the paper's design: equal epochs (train.epochs)
        params["runs"][run]["budget"] = "epochs"
    del params["runs"]["SingleImage-steps"]  # (time) the other compute-matched twins stay
    d = make_project(tmp_path / "p", params)
    # determinism: a twin project with the same params reproduces, from scratch at the same time, every data stage
    # and both kinds of encoder (video and image) through training and evaluation
    twin = make_project(tmp_path / "twin", params)
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=twin, check=True)
    twin_log = open(tmp_path / "twin.log", "w")  # noqa: SIM115 (closed below)
    # the two run side by side on a small machine: one thread each (two processes that each take every core make
    # each other several times slower, OpenMP threads waiting on a core the other holds)
    one_thread = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    twin_run = subprocess.Popen([sys.executable, "-m", "dvc", "repro", "evaluate@MultiVideo", "evaluate@SingleImage"],
                                cwd=twin, stdout=twin_log, stderr=subprocess.STDOUT, env=one_thread)
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=d, check=True)
    with open(d / ".dvc" / "config", "a") as f:  # our offline plots template and the plot templates
        f.write("[plots]\n    html_template = plots/offline.html\n")
    (d / ".dvc" / "plots").symlink_to(ROOT / ".dvc" / "plots")
    r = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=d, capture_output=True, text=True, timeout=1500,
                       env=one_thread)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "without encryption" not in r.stdout + r.stderr  # the kernels talk over IPC
    assert re.search(r"train@SingleVideoB: train SingleVideoB seed 0: 6/6 step \(100 %\)", r.stdout)  # progress
    assert "train@SingleVideoB" in stage_names(d)
    table1 = json.loads((d / "metrics" / "table1.json").read_text())
    assert {"MultiVideo", "MultiVideo-4CH", "SingleVideo", "SingleVideoB", "SingleImage"} <= set(table1["runs"])
    # the two designs side by side: MultiVideo ~ several times SingleVideo's steps at equal epochs; the twins at 6
    b = table1["budgets"]
    assert b["MultiVideo"]["basis"] == b["SingleVideo"]["basis"] == "epochs" and b["MultiVideo-steps"]["steps"] == 6
    for run in ("MultiVideo", "SingleVideo", "SingleImage"):  # one epoch of its own clips in batches of 4
        assert b[run]["steps"] == math.ceil(b[run]["train_clips"] / 4), (run, b[run])
    share = b["SingleVideo-exposure"]["train_clips"] / b["MultiVideo-steps"]["train_clips"]
    assert b["SingleVideo-exposure"]["steps"] == max(1, round(6 * share))  # the 4CH clips MultiVideo-steps saw
    said = {c["pair"]: c["sentence"] for c in json.loads((d / "metrics" / "claims.json").read_text())["mcmrr_v2r"]}
    assert said["SingleVideo - MultiVideo"].startswith("At equal epochs (1 per run over its own clips")
    assert said["SingleVideo-steps - MultiVideo-steps"].startswith("At equal steps (6 each; compute-matched)")
    assert said["MultiVideo-steps-4CH - SingleVideo-exposure"].startswith("At equal exposure to 4CH clips")
    assert "MultiVideo-4CH - SingleVideo-exposure" not in said  # it matched MultiVideo-steps, not MultiVideo
    for name in ("synth", "views", "filter", "split", "tokenizer", "cache", "train/SingleVideoB",
                 "retrieval/SingleVideoB", "interpret/SingleVideoB", "table1", "ingest", "summary/data", "claims",
                 "summary/table1/SingleVideoB"):
        assert (d / "metrics" / f"{name}.json").is_file(), name
    index = (d / "reports" / "site" / "index.html").read_text()
    assert 'href="stages/06_train_SingleVideoB.html"' in index and "Smoke test" in index
    assert str(d) not in index and "Kernel is running" not in index
    shots = ROOT / "reports" / "screenshots" / "tiny"
    res = check_site(d / "reports" / "site", shots)
    (ROOT / "reports" / "browser_check.json").write_text(json.dumps(res, indent=2, ensure_ascii=False))
    assert res["ok"], {k: v for k, v in res["pages"].items() if not v["ok"]} or res["blocked_requests"]
    assert res["charts"] >= 20 and res["pages"]["index.html"]["cjk_characters_checked"] > 50
    # DVC: Table 1 as short metrics files (the README's recipes); plots rendered with the offline template
    r = subprocess.run([sys.executable, "-m", "dvc", "metrics", "show", "metrics/summary/table1"], cwd=d,
                       capture_output=True, text=True)
    rows = r.stdout.splitlines()
    assert r.returncode == 0 and "metrics/table1.json" not in r.stdout and len(rows) == 1 + 12  # Table 1's rows
    assert any(x.startswith("metrics/summary/table1/SingleVideoB.json") for x in rows)
    assert max(map(len, rows)) < 120, "dvc metrics show metrics/summary/table1 should be Table 1, one row per model"
    # the headline `dvc exp show` reads (a project without git has no experiments: the file itself)
    head = json.loads((d / "metrics" / "summary" / "headline.json").read_text())
    assert list(head["v2r"]) == ["MV", "MV-4CH", "SV", "SI", "MV-s", "SV-s", "SVB"] and head["n_seeds"] == 1
    row = json.loads((d / "metrics" / "summary" / "table1" / "SingleVideoB.json").read_text())
    assert head["v2r"]["SVB"] == row["mcmrr_n_v2r"]
    r = subprocess.run([sys.executable, "-m", "dvc", "plots", "show", "-o", "dvc_plots"], cwd=d, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    plots = (d / "dvc_plots" / "index.html").read_text()
    assert "cdn.jsdelivr" not in plots and "vegaEmbed" in plots and "SingleVideoB seed 0" in plots
    # determinism: every metrics file of the twin equals ours, but for wall-clock figures
    assert twin_run.wait(timeout=1500) == 0, (tmp_path / "twin.log").read_text()[-3000:]
    twin_log.close()
    ours, theirs = _metrics_without_clock(d), _metrics_without_clock(twin)
    assert len(theirs) >= 12 and set(theirs) <= set(ours), sorted(set(theirs) - set(ours))
    assert "metrics/train/SingleImage.json" in theirs and "metrics/retrieval/MultiVideo.json" in theirs
    assert {k for k in theirs if ours[k] != theirs[k]} == set()
    # a SIGKILL in the middle of any stage leaves every output byte-identical
    before = _snapshot(d)
    killed = [name for name in stage_names(d, config.load_params(d / "params.yaml")) if name != "ingest"]
    for name in killed:  # ingest is not selected by the synthetic source: it runs no notebook to interrupt
        _kill_mid_stage(d, name)
        assert _snapshot(d) == before, f"killing stage {name} changed its outputs"
    # exact deps: editing the report page's code or a template of the site reruns the report stage alone (on a
    # copy of the code: this project's echolib is a link to the checkout's)
    assert _dvc_status_stages(d) == []
    (d / "echolib").unlink()
    shutil.copytree(ROOT / "echolib", d / "echolib", ignore=shutil.ignore_patterns("__pycache__"))
    with open(d / "echolib" / "report.py", "a") as f:
        f.write("\n# an edit to the collaborators' page\n")
    with open(d / "echolib" / "templates" / "site" / "echolib_site.j2", "a") as f:
        f.write("\n{# an edit to the site's look #}\n")
    assert _dvc_status_stages(d) == ["report"]
    # the ingest stage on a real (DICOM) archive, through the same runner
    archive = d / "archive"
    for k in range(2):  # two patients, a study each (a report key naming both would attach to neither)
        F.save(F.variant(patient=f"T-{k}", study=f"{F.cine().StudyInstanceUID}.{k}"), archive / f"IMG{k:04d}")
    (d / "reports.csv").write_text("study_key,report_text\n" + "".join(
        f"{F.cine().StudyInstanceUID}.{k},左室拡大なし。\n" for k in range(2)), encoding="utf-8")
    params["base"]["source"] = "dicom"
    params["ingest"].update(src="archive", salt_file="salt", reports="reports.csv")
    (d / "params.yaml").write_text(json.dumps(params))
    r = subprocess.run([sys.executable, "-m", "echolib.stage", "ingest"], cwd=d, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert json.loads((d / "metrics" / "ingest.json").read_text())["clips"] == 2


_CLOCK = re.compile(r"seconds|per_second|duration|elapsed|^date$")


def _metrics_without_clock(root) -> dict[str, object]:
    """Every metrics JSON under root/metrics with wall-clock keys dropped and the project's path blanked."""
    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if not _CLOCK.search(k)}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x.replace(str(root), "<root>") if isinstance(x, str) else x

    return {str(p.relative_to(root)): strip(json.loads(p.read_text())) for p in (root / "metrics").rglob("*.json")}


def _snapshot(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for top in ("data", "metrics", "reports")
            for p in (root / top).rglob("*") if p.is_file()}


def _kill_mid_stage(root, name: str) -> None:
    """Start stage `name` and SIGKILL its runner once its notebook is executing (the page is being written)."""
    import os
    import signal
    import time

    from echolib.stage import STAGING

    page = root / STAGING / name / spec(name, root).page
    proc = subprocess.Popen([sys.executable, "-m", "echolib.stage", name], cwd=root, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not page.exists():
        time.sleep(0.02)
    assert proc.poll() is None, f"stage {name} ended before it could be killed (exit {proc.returncode})"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _lab_save(root, rel: str, content: dict, hook: bool = True) -> None:
    """Save a notebook as JupyterLab does: through the Jupyter server's own file manager, configured (or not)
    with the project's pre-save hook."""
    import asyncio

    from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
    from traitlets.config import Config

    from echolib.lab import jupyter_config

    cm = AsyncLargeFileManager(config=Config(jupyter_config() if hook else {}), root_dir=str(root))
    asyncio.run(cm.save({"type": "notebook", "format": "json", "content": content}, rel))


def test_saving_a_notebook_after_running_it_in_lab_changes_no_byte(tmp_path):
    """Each notebook, 'run' in Lab (outputs, execution counts, Lab's cell and kernel metadata added) and saved:
    with the hook `make setup` installs, every file is byte for byte what is committed, so `dvc status` stays
    clean; without it, the saved file differs. An edited cell is saved (DVC then reruns that stage)."""
    import copy

    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    for path in NOTEBOOKS:
        rel = f"notebooks/{path.name}"
        committed = path.read_bytes()
        nb = json.loads(committed)
        for i, cell in enumerate(nb["cells"]):
            cell["metadata"]["collapsed"] = False
            if cell["cell_type"] == "code":
                cell["execution_count"] = i + 1
                cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["ran\n"]}]
                cell["metadata"]["execution"] = {"iopub.status.idle": "2026-12-07T10:00:00.000Z"}
        nb["metadata"]["language_info"] = {"name": "python", "version": "3.11.7", "mimetype": "text/x-python"}
        _lab_save(tmp_path, rel, copy.deepcopy(nb))
        assert (tmp_path / rel).read_bytes() == committed, f"{path.name}: saving changed the file"
        _lab_save(tmp_path, rel, copy.deepcopy(nb), hook=False)
        assert (tmp_path / rel).read_bytes() != committed  # the hook is what keeps it
    nb = json.loads((ROOT / "notebooks" / "03_split.ipynb").read_text())
    nb["cells"][-1]["source"] = ["print('edited')\n"]
    _lab_save(tmp_path, "notebooks/03_split.ipynb", nb)
    assert "print('edited')" in (tmp_path / "notebooks" / "03_split.ipynb").read_text()


def test_setup_installs_the_save_hook_in_the_environment():
    """`make setup` (which `make test` runs first) wrote the hook's configuration where this environment's
    Jupyter server reads it, naming a function that imports."""
    from traitlets.utils.importstring import import_item

    from echolib.lab import HOOK, jupyter_config

    path = Path(sys.prefix) / "etc" / "jupyter" / "jupyter_server_config.d" / "echolib.json"
    assert json.loads(path.read_text()) == jupyter_config()
    assert callable(import_item(HOOK))


def test_make_inside_a_checkout_that_links_the_environment_never_reinstalls_it(tmp_path):
    """.quicklook/ links the main checkout's .venv: a make target run there must not reinstall echolib from the
    worktree into that shared environment (it did: its pyproject.toml is newer than the stamp)."""
    shared = tmp_path / "main" / ".venv"
    (shared / "bin").mkdir(parents=True)
    log = tmp_path / "python-called"
    fake = shared / "bin" / "python"
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {log}\n")
    fake.chmod(0o755)
    (shared / ".echolib-installed").write_text("")
    os.utime(shared / ".echolib-installed", (0, 0))  # older than everything
    work = tmp_path / "quicklook"
    (work / "echolib").mkdir(parents=True)
    for name in ("Makefile", "pyproject.toml", "echolib/lab.py"):
        shutil.copy(ROOT / name, work / name)
    (work / ".venv").symlink_to(shared)
    r = subprocess.run(["make", "setup"], cwd=work, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "not reinstalled from here" in r.stdout and not log.exists()
    (work / ".venv").unlink()  # its own environment (a folder, not a link) is installed as before
    (work / ".venv").mkdir()
    r = subprocess.run(["make", "-n", "setup"], cwd=work, capture_output=True, text=True, timeout=60)
    assert "pip install -q -e" in r.stdout

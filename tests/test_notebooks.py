"""Stage conventions: notebooks without outputs, literal parameters cells, dvc.yaml <-> notebook agreement,
and every notebook executing end to end on the tiny profile."""

from __future__ import annotations

import ast
import re
import shutil

import nbformat
import papermill as pm
import pytest
import yaml

from tests.conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
PARAM = re.compile(r"-p\s+(\w+)\s+(?:[\"']?\$\{([\w.]+)\}[\"']?)")


def _body(stage):
    return stage.get("do", stage)  # foreach stages keep their definition under `do`


def _stage_of(nb_path):
    stages = [n for n, s in DVC.items() if f"papermill notebooks/{nb_path.name}" in _body(s)["cmd"]]
    assert len(stages) == 1, f"{nb_path.name}: expected exactly one dvc stage running it, found {stages}"
    return stages[0], _body(DVC[stages[0]])


def _parameters_cell(nb):
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "exactly one cell tagged 'parameters'"
    return cells[0]


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 2


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_parameters_cell_holds_literals_only(path):
    cell = _parameters_cell(nbformat.read(path, as_version=4))
    for node in ast.parse(cell.source).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, f"{path.name}: only `name = literal`"
        ast.literal_eval(node.value)  # raises for anything computed


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_parameters_match_dvc_stage(path):
    name, stage = _stage_of(path)
    declared = set(pm.inspect_notebook(str(path)))
    passed = dict(PARAM.findall(stage["cmd"]))
    listed = set(stage.get("params", []))
    assert set(passed) == declared, f"{name}: cmd passes {sorted(passed)}, notebook declares {sorted(declared)}"
    for param, key in passed.items():
        if key == "key":  # a foreach stage's item name: its whole params subsection must be listed
            assert any(p.endswith(".${key}") for p in listed), f"{name}: list the foreach item's params section"
            continue
        assert key in listed, f"{name}: notebook parameter '{param}' comes from '{key}', not listed under params:"
    assert f"notebooks/{path.name}" in stage["deps"]
    outs = [next(iter(o)) if isinstance(o, dict) else o for o in stage["outs"]]
    assert any(o.startswith(f"reports/notebooks/{path.stem}") and o.endswith(".html") for o in outs)
    assert "-k echolib" in stage["cmd"] and "python -m echolib.report html" in stage["cmd"]


def test_params_yaml_has_every_listed_key():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name, stage in DVC.items():
        for key in _body(stage).get("params", []):
            if "${" in key:
                continue
            node = params
            for part in key.split("."):
                assert isinstance(node, dict) and part in node, f"stage {name}: params.yaml lacks {key}"
                node = node[part]


@pytest.fixture(scope="module")
def project_copy(tmp_path_factory):
    """A throwaway project folder (dvc.yaml + echolib link) so notebooks write their outputs there."""
    d = tmp_path_factory.mktemp("project")
    shutil.copy(ROOT / "dvc.yaml", d / "dvc.yaml")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["base"].update(profile="tiny", seeds=[0])
    params["train"].update(batch_size=4, max_epochs=1, num_workers=0, warmup_steps=2)
    for run in params["runs"].values():
        run["max_epochs"] = 0  # train.max_epochs
    (d / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
    (d / "echolib").symlink_to(ROOT / "echolib")
    (d / "reports" / "notebooks").mkdir(parents=True)
    return d


@pytest.mark.slow
def test_notebooks_execute_on_tiny_profile(project_copy):
    from echolib.report import build_index, notebook_to_html
    from tests import dicom_fixtures as F

    archive = project_copy / "archive"
    for k in range(2):
        F.save(F.variant(patient=f"T-{k}"), archive / f"IMG{k:04d}")
    overrides = {"00_ingest.ipynb": {"src": str(archive), "salt_file": str(project_copy / "salt"), "workers": 1},
                 "00_synthesize.ipynb": {"profile": "tiny", "n_patients": 8, "workers": 2},
                 "01_view_classifier.ipynb": {"epochs": 1, "workers": 2},
                 "02_filter_views.ipynb": {"threshold": 0.0, "workers": 2},
                 "03_split.ipynb": {"train": 0.6, "valid": 0.2, "test": 0.2},
                 "04_tokenizer.ipynb": {"vocab_size": 1000},
                 "05_cache.ipynb": {"frames": 16, "workers": 2},
                 "08_compare.ipynb": {"n_bootstrap": 50}}
    pages = []
    for path in NOTEBOOKS:
        out = project_copy / "reports" / "notebooks" / path.name
        pm.execute_notebook(str(path), str(out), parameters=overrides.get(path.name, {}), kernel_name="python3",
                            cwd=str(project_copy), progress_bar=False)
        html = notebook_to_html(out)
        text = html.read_text()
        assert "<script src=\"http" not in text and "cdnjs" not in text
        pages.append(html)
    assert (project_copy / "data" / "raw" / "videos.parquet").is_file()
    assert (project_copy / "data" / "ingested" / "videos.parquet").is_file()
    for name in ("ingest", "synth", "views", "filter", "split", "tokenizer", "cache", "train/MultiVideo",
                 "retrieval/MultiVideo", "interpret/MultiVideo", "table1"):
        assert (project_copy / "metrics" / f"{name}.json").is_file(), name
    assert (project_copy / "data" / "split" / "studies.parquet").is_file()
    # evaluate.beside: another pipeline's Table 1 (here this one's own) is shown beside
    table1 = project_copy / "metrics" / "table1.json"
    beside = project_copy / "reports" / "notebooks" / "08_compare_beside.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / "08_compare.ipynb"), str(beside),
                        parameters={"n_bootstrap": 50, "beside": str(table1)}, kernel_name="python3",
                        cwd=str(project_copy), progress_bar=False)
    cell = next(c for c in nbformat.read(beside, 4).cells if c.cell_type == "code" and "load_table1(beside)" in c.source)
    shown = "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in cell.outputs)
    assert f"beside: {table1}" in shown and "MultiVideo-matched" in shown  # its Table 1 rows are displayed
    index = build_index(project_copy / "reports" / "index.html", pages, "t")
    assert 'href="notebooks/00_synthesize.html"' in index.read_text()

"""A hospital's archive and shared model folders, handled safely: nothing deleted that echolib did not write, no
file runs code, no identifier reaches a page, a metric or a log, a killed worker or a damaged checkpoint costs
only itself, memory per worker is bounded. (Burned-in pixels: test_deid.py; parameters: test_config.py.)"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from echolib.ingest import ingest_source
from tests import dicom_fixtures as F
from tests.conftest import make_project, tiny_params


def _run(*args, cwd=None, timeout=600):
    r = subprocess.run([sys.executable, "-m", *map(str, args)], capture_output=True, text=True, cwd=cwd,
                       timeout=timeout)
    return r.returncode, r.stdout, r.stderr


def _tree(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- no command deletes or replaces what it did not create ----------------------------------------------------

@pytest.mark.parametrize("where,message", [
    ("archive", "the output folder and the input {src} overlap (one holds the other)"),
    ("parent", "the output folder and the input {src} overlap (one holds the other)"),
    ("others", "holds files echolib did not write (no .echolib-output marker), which the output would replace"),
    ("a file", "exists and is not a folder"),
])
def test_ingest_refuses_an_output_it_may_not_replace(tmp_path, where, message):
    src = tmp_path / "hospital" / "archive"
    F.save(F.variant(), src / "IM0001")
    (tmp_path / "hospital" / "minutes.docx").write_text("the parent holds other things too")
    (tmp_path / "others").mkdir()
    (tmp_path / "others" / "thesis.tex").write_text("years of work")
    (tmp_path / "a file").write_text("a file")
    out = {"archive": src, "parent": tmp_path / "hospital", "others": tmp_path / "others",
           "a file": tmp_path / "a file"}[where]
    before = _tree(tmp_path)
    code, _, err = _run("echolib.ingest", "dicom", src, "--out", out, "--salt-file", tmp_path / "salt",
                        "--workers", "1")
    assert code == 2 and err.strip() == f"error: {out}: {message.format(src=src)}" + (
        "; write the output somewhere else" if "overlap" in message else
        "; give a new or empty folder (nothing was changed)" if "marker" in message else
        "; give a new or empty folder"), err
    assert _tree(tmp_path) == before  # every file as it was; nothing written (the salt neither)


def test_an_output_echolib_made_is_replaced_and_a_foreign_one_is_not(tmp_path):
    code, out, err = _run("echolib.synth", "--out", tmp_path / "bench", "--n-patients", "2", "--workers", "1")
    assert code == 0 and (tmp_path / "bench" / ".echolib-output").is_file(), err
    code, _, err = _run("echolib.synth", "--out", tmp_path / "bench", "--n-patients", "3", "--workers", "1")
    assert code == 0, err  # its own output: replaced by the new one
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.md").write_text("keep me")
    code, _, err = _run("echolib.synth", "--out", tmp_path / "mine", "--n-patients", "2")
    assert code == 1 and "holds files echolib did not write" in err and (tmp_path / "mine" / "notes.md").exists()
    assert not (tmp_path / ".mine.part").exists()


def test_a_salt_inside_the_output_is_refused(tmp_path):
    F.save(F.variant(), tmp_path / "src" / "IM0001")
    code, _, err = _run("echolib.ingest", "dicom", tmp_path / "src", "--out", tmp_path / "out",
                        "--salt-file", tmp_path / "out" / "salt")
    assert code == 2 and "--salt-file: the de-identification salt may not lie inside the output folder" in err


# --- no file runs code -----------------------------------------------------------------------------------------

class _Payload:
    """What a crafted checkpoint holds: unpickling it would run a shell command."""

    def __init__(self, flag: Path):
        self.flag = flag

    def __reduce__(self):
        return os.system, (f"touch {self.flag}",)


def _crafted(path: Path, flag: Path, **extra) -> Path:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {}, "run": {"encoder": "convnext_st"}, "boom": _Payload(flag), **extra}, path)
    return path


def test_a_crafted_checkpoint_is_refused_everywhere_and_runs_nothing(tmp_path):
    from echolib.io.weights import UnsafeCheckpointError
    from echolib.models.authors import load_authors_checkpoint
    from echolib.models.factory import load_clip_model
    from echolib.models.pretrained import load_weights
    from echolib.train import _prepare_folder
    from echolib.views import load_model

    flag = tmp_path / "ran"
    model = _crafted(tmp_path / "run" / "model.pt", flag)
    code, _, err = _run("echolib.retrieve", "--model", tmp_path / "run", "--study", tmp_path, "--reports", "r.parquet")
    assert code == 1 and err.strip() == (f"error: {model}: refused: this model holds Python objects that would run code "
                                         "when loaded; only plain weights (tensors, numbers, text) are read")
    for load, arg in ((load_clip_model, model), (load_model, tmp_path / "run"),
                      (load_authors_checkpoint, _crafted(tmp_path / "ck.pt", flag)),
                      (lambda p: load_weights(None, p), _crafted(tmp_path / "w" / "pytorch_model.bin", flag))):
        with pytest.raises(UnsafeCheckpointError, match="refused: this .* holds Python objects"):
            load(arg)
    last = _crafted(tmp_path / "seed0" / "checkpoints" / "last.ckpt", flag)
    with pytest.raises(Exception, match=f"--resume: {last}: refused"):
        _prepare_folder(tmp_path / "seed0", True, "sig")
    assert not flag.exists()


@pytest.mark.slow
def test_a_damaged_checkpoint_is_one_line_and_the_run_starts_afresh(tiny_project, tmp_path, capsys):
    from echolib.train import ResumeError, train_run

    params = tiny_project / "params.yaml"
    train_run("SingleVideo", 0, params, out_root=tmp_path)
    last = tmp_path / "SingleVideo" / "seed0" / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])  # a copy cut short
    with pytest.raises(ResumeError, match=rf"^--resume: {last}: damaged training checkpoint: it cannot be read"):
        train_run("SingleVideo", 0, params, resume=True, out_root=tmp_path)
    capsys.readouterr()
    s = train_run("SingleVideo", 0, params, resume="auto", out_root=tmp_path)  # what the train stage does
    assert s["global_steps"] == s["steps"]
    said = capsys.readouterr().out
    assert f"warning: {last}: damaged training checkpoint: it cannot be read (RuntimeError); this run starts afresh" \
        in said


# --- ingestion: pairing, copies, killed workers, memory --------------------------------------------------------

def _reports(path: Path, rows) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["study_key", "report_text"], *rows])
    return path


def test_a_report_key_shared_by_two_patients_studies_is_a_reject(tmp_path):
    F.save(F.variant(patient="P-1", AccessionNumber="ACC1"), tmp_path / "src" / "a.dcm")
    F.save(F.variant(patient="P-2", AccessionNumber="ACC1", study=F.variant().StudyInstanceUID + ".2"),
           tmp_path / "src" / "b.dcm")
    F.save(F.variant(patient="P-3", AccessionNumber="ACC3", study=F.variant().StudyInstanceUID + ".3"),
           tmp_path / "src" / "c.dcm")
    t = ingest_source("dicom", tmp_path / "src", tmp_path / "out", tmp_path / "salt",
                      _reports(tmp_path / "r.csv", [["ACC1", "左室拡大なし。"], ["ACC3", "左室拡大あり。"]]),
                      workers=1, progress=False)
    assert t["studies"]["report"].to_list() == ["左室拡大あり。"]
    assert sorted(t["rejected"]["reason"].to_list()) == 2 * [
        "its report key (study UID or accession number) also names studies of 1 other patient(s), so whose report "
        "it is cannot be told: the study and its 1 clip(s) are left out"]


@pytest.mark.parametrize("names", [("a_cut.dcm", "b_whole.dcm"), ("b_cut.dcm", "a_whole.dcm")])
def test_among_copies_of_an_instance_the_one_that_decodes_is_kept(tmp_path, names):
    ds = F.rgb(F.variant(patient="P-1"))
    whole = F.save(ds, tmp_path / "src" / names[1]).read_bytes()
    (tmp_path / "src" / names[0]).write_bytes(whole[: len(whole) - 5000])  # pixel data cut short
    t = ingest_source("dicom", tmp_path / "src", tmp_path / "out", tmp_path / "salt",
                      _reports(tmp_path / "r.csv", [[ds.StudyInstanceUID, "左室拡大なし。"]]), workers=2,
                      progress=False)
    assert t["videos"].height == 1 and t["videos"]["n_frames"][0] == 30
    assert t["rejected"].select("source", "reason").rows() == [
        (names[0], "duplicate SOP instance (another copy of it is kept): this copy cannot be used (truncated file "
                   "(ends inside a data element))")]
    assert sorted(p.name for p in (tmp_path / "out" / "videos").rglob("*.mp4")) == [Path(t["videos"]["path"][0]).name]


def test_a_killed_worker_costs_only_its_file(tmp_path, monkeypatch):
    """The out-of-memory killer takes the process decoding one file: that file is a recorded reject naming it,
    the others are kept (workers are forked: the patched decoder is theirs too)."""
    from echolib.ingest import core

    real = core.load_cine

    def load_cine(path, *a, **k):
        if "huge" in Path(path).name:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(path, *a, **k)

    monkeypatch.setattr(core, "load_cine", load_cine)
    study = F.variant().StudyInstanceUID + ".9"
    for name in ("a.dcm", "huge.dcm", "c.dcm", "d.dcm"):
        F.save(F.variant(study=study, patient="P-1"), tmp_path / "src" / name)
    t = ingest_source("dicom", tmp_path / "src", tmp_path / "out", tmp_path / "salt",
                      _reports(tmp_path / "r.csv", [[study, "左室拡大なし。"]]), workers=2, progress=False)
    assert t["videos"].height == 3
    assert t["rejected"].select("source", "reason").rows() == [("huge.dcm", core.KILLED)]


#: the peak RSS a child inherits from its parent is reset after the imports (/proc/self/clear_refs)
_PEAK = """
import re, sys
from pathlib import Path
from echolib.ingest.core import DEFAULT_PIXELS, Item, _process
def hwm():
    return int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
from pydicom.examples import get_path
_process((Item("x", Path(get_path("ybr_color"))), sys.argv[2], "w.mp4", DEFAULT_PIXELS))  # the decoders imported
open("/proc/self/clear_refs", "w").write("5")
base = hwm()
r = _process((Item("x", Path(sys.argv[1])), sys.argv[2], "v.mp4", DEFAULT_PIXELS))
assert "reject" not in r, r
print((hwm() - base) / 1024)
"""


@pytest.mark.slow
def test_a_workers_memory_is_about_one_decoded_clip(tmp_path):
    """An uncompressed cine of 190 MB decoded: the worker's peak grows by about that much, not by the float copies
    of every frame (the old path: 6.5x). The figures before and after: benchmarks/ingest_memory.py."""
    frames = np.tile(F.cine().pixel_array, (3, 3, 3, 1))[:, :480, :640]  # 90 frames of 640x480
    path = F.save(F.with_frames(F.grabbed(frames, noise=2)), tmp_path / "big.dcm")
    decoded = frames.nbytes / 2 ** 20
    r = subprocess.run([sys.executable, "-c", _PEAK, str(path), str(tmp_path / "out")], capture_output=True,
                       text=True, cwd=Path(__file__).parents[1], timeout=600)
    assert r.returncode == 0, r.stderr
    assert float(r.stdout) < 1.3 * decoded + 20, (float(r.stdout), decoded)


def test_a_cine_too_large_to_decode_is_refused_from_its_header(tmp_path):
    """An RLE file of a few MB whose header describes gigabytes of frames: refused before decoding."""
    from echolib.io.dicom import DicomError, load_cine

    ds = F.rle(F.variant())
    ds.NumberOfFrames, ds.Rows, ds.Columns = 4000, 1024, 768
    with pytest.raises(DicomError, match=r"^cine too large to decode: 4000 frames of 768x1024 px are 9,000 MB as "
                                         r"8-bit RGB \(limit 1,024 MB: ingest.max_decoded_mb\)$"):
        load_cine(F.save(ds, tmp_path / "bomb.dcm"))


# --- nothing identifying leaves ingestion ----------------------------------------------------------------------

PLANTED = ("YAMADA", "TARO", "ZX81", "4711", "19470203", "ACC998877", "Kitasato", "SUZUKI", "HANAKO", "KENJI",
           "Yamada")


@pytest.mark.slow
def test_no_identifier_reaches_a_page_a_metric_or_a_log(tmp_path):
    """An archive whose folder and file names, headers and reports CSV carry a patient's identifiers, ingested by
    the stage as a user runs it: every byte written (pages, notebooks, metrics, tables, videos, the terminal)
    is searched for them; only rejected.parquet's `source` column may hold a file's path."""
    archive = tmp_path / "archive" / "YAMADA_TARO_19470203"
    study = F.variant().StudyInstanceUID + ".4711"
    for k in (1, 2):
        F.save(F.variant(study=study, **F.IDENTIFIERS), archive / f"YAMADA_cine_{k}.dcm")
    dup = (archive / "YAMADA_cine_1.dcm").read_bytes()
    (archive / "copy of YAMADA").mkdir()
    (archive / "copy of YAMADA" / "YAMADA_cine_1_copy.dcm").write_bytes(dup)  # a copy: a reject naming it
    (archive / "YAMADA_notes.txt").write_text("Taro Yamada, born 1947-02-03")
    _reports(tmp_path / "archive" / "reports.csv", [["ACC998877", "左室拡大なし。"]])
    d = make_project(tmp_path / "p", tiny_params(base={"source": "dicom"}, ingest={
        "src": str(archive), "reports": str(tmp_path / "archive" / "reports.csv")}))
    code, out, err = _run("echolib.stage", "ingest", cwd=d)
    assert code == 0, err
    from echolib.site import export

    export(d / "reports" / "stages" / "00_ingest.ipynb", d / "reports" / "site" / "stages" / "00_ingest.html",
           root=d)  # the stage's page, as the report stage makes it
    rejected = pl.read_parquet(d / "data" / "ingested" / "rejected.parquet")
    assert sorted(rejected["source"]) == ["YAMADA_notes.txt", "copy of YAMADA/YAMADA_cine_1_copy.dcm"]
    written = {"terminal": out + err}
    for p in sorted(d.rglob("*")):
        if p.is_file() and not p.is_symlink() and p.name != "params.yaml" and "echolib" not in p.parts[len(d.parts):][:1]:
            if p.suffix == ".parquet":
                table = pl.read_parquet(p)
                table = table.drop("source") if p.name == "rejected.parquet" else table
                written[str(p)] = json.dumps(table.to_dicts(), ensure_ascii=False, default=str)
            else:
                written[str(p)] = p.read_bytes().decode("latin-1")
    assert any("00_ingest.html" in k for k in written) and any(k.endswith("ingest.json") for k in written)
    for where, text in written.items():
        for name in (*PLANTED, str(tmp_path)):
            assert name not in text, (name, where)


# --- control characters --------------------------------------------------------------------------------------

def test_control_characters_never_reach_a_terminal_a_page_or_a_stored_report(tmp_path):
    import nbformat

    from echolib.ingest.core import Rejections, build_tables, summary
    from echolib.io.safe import for_terminal, strip_controls
    from echolib.site import export

    nasty = "左室拡大なし\x1b]0;owned\x07\x1b[2J\x00\u202eあり\x9b。"
    assert strip_controls(nasty) == "左室拡大なし]0;owned[2Jあり。"
    assert for_terminal(nasty) == "左室拡大なし\\x1b]0;owned\\x07\\x1b[2J\\x00\\u202eあり\\x9b。"
    rej = Rejections()
    rej.add("x", "bad \x1b[2J value", "csv")
    assert "\x1b" not in summary(build_tables([], rej, False, False)) and "\\x1b[2J" in summary(
        build_tables([], rej, False, False))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(r)", outputs=[
        nbformat.v4.new_output("stream", name="stdout", text=nasty)])])
    nbformat.write(nb, tmp_path / "n.ipynb")
    page = export(tmp_path / "n.ipynb", tmp_path / "n.html").read_text(encoding="utf-8")
    assert "左室拡大なし" in page and not any(c in page for c in "\x1b\x07\x00\u202e\x9b")
    # a report read from a reports CSV is stored without them
    F.save(F.variant(patient="P-1", AccessionNumber="A1"), tmp_path / "src" / "a.dcm")
    _reports(tmp_path / "r.csv", [["A1", nasty]])
    t = ingest_source("dicom", tmp_path / "src", tmp_path / "out", tmp_path / "salt", tmp_path / "r.csv",
                      workers=1, progress=False)
    assert t["studies"]["report"].to_list() == ["左室拡大なし]0;owned[2Jあり。"]


@pytest.mark.parametrize("src,message", [
    ("data/old_archive", "ingest.src: the archive and the data folder overlap (one holds the other)"),
    (".", "ingest.src: the archive and the data folder overlap (one holds the other)"),
    ("reports/site", "ingest.src: the archive and reports/ overlap (one holds the other)"),
])
def test_the_ingest_stage_refuses_an_archive_overlapping_its_outputs(tmp_path, src, message):
    from echolib.ingest import run_ingest
    from tests.conftest import run_stage_entry

    d = make_project(tmp_path / "p", tiny_params(base={"source": "dicom"}, ingest={"src": src}))
    F.save(F.variant(), d / src / "IM0001")
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run_stage_entry(d, "ingest", run_ingest)

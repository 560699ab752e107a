"""The bad-input matrix: what a careless or hostile user can feed the pipeline, and what it answers.

Every case asserts the one-line message (or the recorded reject with its reason) and, where something was there
before, that it is unchanged. Parameter cases live in test_config.py (test_bad_parameter_is_one_line_naming_the_key),
the kill-and-resume ones in test_train.py; this file holds ingestion, the adapters, the stage runner, training,
evaluation and retrieval.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from echolib.ingest import ingest_source
from tests import dicom_fixtures as F
from tests.conftest import make_project, tiny_params


def _paper_csv(tmp_path: Path, rows: list[list[str]], raw: bytes | None = None) -> Path:
    """A paper-format CSV beside two real cines (d/1.dcm, d/2.dcm of one study)."""
    study = F.variant().StudyInstanceUID + ".77"
    for k in (1, 2):
        if not (tmp_path / "d" / f"{k}.dcm").exists():
            F.save(F.variant(study=study), tmp_path / "d" / f"{k}.dcm")
    path = tmp_path / "paper.csv"
    if raw is not None:
        path.write_bytes(raw)
        return path
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["dicom_path", "report_text", "view_label", "view_prob"])
        w.writerows(rows)
    return path


def _ingest(path: Path, tmp_path: Path, **kw):
    return ingest_source("paper-csv", path, tmp_path / "out", tmp_path / "salt", workers=1, progress=False, **kw)


def _rejects(t) -> dict[str, str]:
    return dict(zip(*t["rejected"].select("source", "reason"), strict=True))


GOOD = ["d/1.dcm", "左室拡大なし。", "4CH", "0.97"]


@pytest.mark.parametrize("row,reason", [
    (["d/2.dcm", "x。", "4CH", "1.7"], "view_prob '1.7' is not a number in [0, 1] (row 3)"),
    (["d/2.dcm", "x。", "4CH", "nan"], "view_prob 'nan' is not a number in [0, 1] (row 3)"),
    (["d/2.dcm", "x。", "4CH", "-0.1"], "view_prob '-0.1' is not a number in [0, 1] (row 3)"),
    (["d/2.dcm", "x。", "XYZ", "0.99"], "unknown view_label 'XYZ' (known: LAX, SAX, 2CH, 3CH, 4CH, OTHER) (row 3)"),
    (["d/1.dcm", "x。", "4CH", "0.99"], "duplicate dicom_path (also row 2) (row 3)"),
    (["d/9.dcm", "x。", "4CH", "0.99"], "file listed in the CSV does not exist (row 3)"),
])
def test_paper_csv_row_is_a_recorded_reject(tmp_path, row, reason):
    t = _ingest(_paper_csv(tmp_path, [GOOD, row]), tmp_path)
    assert _rejects(t)[row[0]] == reason and t["videos"].height == 1


def test_view_labels_are_case_normalised(tmp_path):
    t = _ingest(_paper_csv(tmp_path, [GOOD, ["d/2.dcm", "x。", " 2ch ", "0.95"]]), tmp_path)
    assert sorted(t["videos"]["view_label"]) == ["2CH", "4CH"]


def test_an_unquoted_comma_is_a_reject_not_a_truncated_report(tmp_path):
    raw = ("dicom_path,report_text,view_label,view_prob\nd/1.dcm,左室拡大なし。,4CH,0.97\n"
           "d/2.dcm,左室拡大なし,左房拡大あり。,4CH,0.95\n").encode()
    t = _ingest(_paper_csv(tmp_path, [], raw), tmp_path)
    assert _rejects(t)["paper.csv:row 3"] == "5 fields where the header has 4 (an unquoted comma or a cut line?)"
    assert t["studies"]["report"].to_list() == ["左室拡大なし。"]


def test_a_csv_in_another_encoding_names_the_encoding_to_try(tmp_path):
    raw = "dicom_path,report_text,view_label,view_prob\nd/1.dcm,左室拡大なし。,4CH,0.97\n".encode("cp932")
    with pytest.raises(ValueError, match=r"not valid utf-8 text \(byte \d+\); it reads as cp932: pass --encoding "
                                         r"cp932 \(ingest.encoding\)"):
        _ingest(_paper_csv(tmp_path, [], raw), tmp_path)
    assert _ingest(_paper_csv(tmp_path, [], raw), tmp_path, encoding="cp932")["videos"].height == 1


def test_a_malformed_csv_is_one_error(tmp_path):
    raw = b'dicom_path,report_text,view_label,view_prob\nd/1.dcm,"unterminated,4CH,0.97\n'
    with pytest.raises(ValueError, match=r"paper.csv: malformed CSV at line \d+"):
        _ingest(_paper_csv(tmp_path, [], raw), tmp_path)


def _dicom_with_reports(tmp_path: Path, report_rows: list[list[str]] | None, raw: bytes | None = None):
    study = F.variant().StudyInstanceUID + ".88"
    F.save(F.variant(study=study, patient="P-1"), tmp_path / "src" / "a.dcm")
    reports = None
    if report_rows is not None or raw is not None:
        reports = tmp_path / "reports.csv"
        if raw is not None:
            reports.write_bytes(raw)
        else:
            with open(reports, "w", newline="", encoding="utf-8") as f:
                csv.writer(f).writerows([["study_key", "report_text"], *report_rows])
    return study, lambda: ingest_source("dicom", tmp_path / "src", tmp_path / "out", tmp_path / "salt", reports,
                                        workers=1, progress=False)


def test_reports_csv_cases(tmp_path):
    study, run = _dicom_with_reports(tmp_path, None)  # a DICOM archive and no reports at all
    with pytest.raises(ValueError, match=r"nothing usable was found \(1 x no report in the source \(give a reports "
                                         r"CSV: ingest.reports\): the study and its 1 clip\(s\) are left out\)"):
        run()
    study, run = _dicom_with_reports(tmp_path, [[study, "左室拡大なし。"], [study, "左室拡大あり。"]])
    with pytest.raises(ValueError, match="nothing usable was found"):  # a duplicated key: neither report is used
        run()
    study, run = _dicom_with_reports(tmp_path, [["", "左室拡大なし。"], [study, "左室拡大なし。"]])
    t = run()
    assert _rejects(t)["reports.csv:row 2"] == "empty study_key" and t["studies"].height == 1
    _, run = _dicom_with_reports(tmp_path, [])
    with pytest.raises(ValueError, match="reports.csv: the reports CSV has no rows"):
        run()
    _, run = _dicom_with_reports(tmp_path, None, raw=b"study_key;report_text\nx;y\n")
    with pytest.raises(ValueError, match=r"reports.csv: missing column\(s\) \['study_key', 'report_text'\]"):
        run()


def test_duplicated_report_key_is_recorded(tmp_path):
    key = F.variant().StudyInstanceUID + ".88"
    _dicom_with_reports(tmp_path, [[key, "a。"], [key, "b。"]])
    from echolib.ingest import Rejections
    from echolib.ingest.adapters import read_reports

    rej = Rejections()
    assert read_reports(tmp_path / "reports.csv", rej) == {}
    assert rej.frame()["reason"].to_list() == ["duplicate study_key (also row 2): both left out"]


@pytest.mark.parametrize("change,reason", [
    ({"shape": (5, 1, 2, 3)}, "implausibly small image (2x1 px; at least 32 px each way)"),
    ({"NumberOfFrames": 20}, "header NumberOfFrames (20) disagrees with the pixel data, which holds more frames"),
    ({"NumberOfFrames": 40}, "pixel data cannot be decoded (fewer frames than NumberOfFrames; header NumberOfFrames 40)"),
    ({"SOPClassUID": "1.2.840.10008.5.1.4.1.1.7"}, "not an ultrasound multi-frame cine: a secondary capture (a "
                                                   "screenshot) (SOP class 1.2.840.10008.5.1.4.1.1.7)"),
])
def test_a_malformed_cine_is_a_recorded_reject_and_the_rest_is_kept(tmp_path, change, reason):
    study = F.variant().StudyInstanceUID + ".99"
    F.save(F.variant(study=study, patient="P-1"), tmp_path / "src" / "good.dcm")
    if "shape" in change:
        bad = F.uncompressed(F.variant(study=study, patient="P-1"), np.zeros(change["shape"], np.uint8), "RGB")
    else:
        bad = F.rgb(F.variant(study=study, patient="P-1")) if "NumberOfFrames" in change else F.variant(study=study)
        for k, v in change.items():
            setattr(bad, k, v)
    F.save(bad, tmp_path / "src" / "bad.dcm")
    (tmp_path / "r.csv").write_text(f"study_key,report_text\n{study},左室拡大なし。\n", encoding="utf-8")
    t = ingest_source("dicom", tmp_path / "src", tmp_path / "out", tmp_path / "salt", tmp_path / "r.csv", workers=1,
                      progress=False)
    assert _rejects(t)["bad.dcm"] == reason and t["videos"].height == 1


def test_an_unreadable_folder_is_recorded(tmp_path, monkeypatch):
    """(The tests run as root, whom permissions do not stop: the listing error is injected.)"""
    from echolib.ingest import Rejections
    from echolib.ingest.core import walk_files

    F.save(F.variant(), tmp_path / "ok" / "a.dcm")
    (tmp_path / "locked").mkdir()
    real = os.scandir

    def scandir(path="."):
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    rej = Rejections()
    assert [p.name for p in walk_files(tmp_path, rej)] == ["a.dcm"]
    assert rej.frame().to_dicts() == [{"source": "locked", "reason": "folder cannot be read (Permission denied)",
                                       "step": "walk"}]


@pytest.mark.parametrize("ef,reason", [("150", "EF '150' is not a number in [0, 100] (row 2)"),
                                       ("-10", "EF '-10' is not a number in [0, 100] (row 2)"),
                                       ("abc", "EF 'abc' is not a number in [0, 100] (row 2)")])
def test_echonet_ef_out_of_range_is_a_reject(tmp_path, ef, reason):
    from echolib.ingest import Rejections
    from echolib.ingest.adapters import echonet_items

    (tmp_path / "Videos").mkdir()
    (tmp_path / "Videos" / "0X1.avi").write_bytes(b"")
    (tmp_path / "FileList.csv").write_text(f"FileName,EF\n0X1,{ef}\n")
    rej = Rejections()
    assert echonet_items(tmp_path, rej) == [] and rej.frame()["reason"].to_list() == [reason]


# --- the command lines and the stage runner -------------------------------------------------------------------


def _cli(*args, cwd=None, timeout=300):
    r = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout)
    return r.returncode, r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""


@pytest.mark.parametrize("args,code,message", [
    (["echolib.stage", "nope"], 1, "error: no stage 'nope' in dvc.yaml; stages: ["),
    (["echolib.stage", "train"], 1, "error: stage 'train' runs once per item of ${runs}: name one as train@ITEM"),
    (["echolib.stage", "train@Nope"], 1, "error: stage 'train' runs once per item of ${runs}"),
    (["echolib.train", "--run", "Nope"], 1, "error: run 'Nope' is not in"),
    (["echolib.train", "--run", "SingleVideo"], 1, "data/tokenizer: no vocab.txt or config.json (run the tokenizer "
                                                   "stage first)"),
    (["echolib.config", "check", "missing.yaml"], 2, "error: missing.yaml: no params.yaml here"),
    (["echolib.synth", "--out", "x", "--n-patients", "0"], 1, "error: params: 'synth.n_patients' must be >= 1, got 0"),
])
def test_command_lines_answer_in_one_line(tmp_path, args, code, message):
    d = make_project(tmp_path / "p", tiny_params())
    got, last = _cli(*args, cwd=d)
    assert got == code and message in last, (got, last)


@pytest.mark.parametrize("k", ["0", "-1"])
def test_retrieve_k_is_validated(tmp_path, k):
    got, last = _cli("echolib.retrieve", "--model", "m", "--study", "s", "--reports", "r.parquet", "-k", k)
    assert got == 1 and last == f"error: -k must be at least 1, got {k}"


@pytest.mark.parametrize("table,message", [
    (pl.DataFrame({"study_id": ["a"], "report": [None]}, schema={"study_id": pl.String, "report": pl.String}),
     "1 candidate report(s) are empty, e.g. study a"),
    (pl.DataFrame(schema={"study_id": pl.String, "report": pl.String}), "the table of candidate reports is empty"),
    (pl.DataFrame({"study": ["a"], "text": ["x"]}), "column(s) ['study_id', 'report'] missing"),
])
def test_candidate_reports_are_checked(tmp_path, table, message):
    from echolib.retrieve import RetrievalInputError, read_candidates

    table.write_parquet(tmp_path / "r.parquet")
    with pytest.raises(RetrievalInputError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        read_candidates(tmp_path / "r.parquet")


def test_a_corrupt_clip_among_good_ones_is_listed(tmp_path, tiny_data, capsys):
    import shutil

    from echolib.retrieve import study_clips

    good = pl.read_parquet(tiny_data / "videos.parquet")["path"][0]
    (tmp_path / "study").mkdir()
    shutil.copy(tiny_data / good, tmp_path / "study" / "good.mp4")
    (tmp_path / "study" / "bad.mp4").write_bytes(b"not a video")
    clips = study_clips(tmp_path / "study", tmp_path / "work")
    assert clips["video_id"].to_list() == ["good"] and "skipped clip bad.mp4: cannot be decoded" in capsys.readouterr().out


def test_evaluation_without_a_trained_run_is_one_error(tiny_project, tmp_path):
    from echolib.evaluate import evaluate_run

    with pytest.raises(FileNotFoundError, match=r"nothing: no seed\*/model.pt \(did the train stage run\?\)"):
        evaluate_run(tmp_path / "nothing", tiny_project / "data" / "cache", tiny_project / "data" / "split" /
                     "studies.parquet", tmp_path / "eval")


def test_compare_refuses_an_exposure_run_trained_against_another_run(tmp_path):
    from echolib.compare import check_exposure
    from echolib.io.files import write_json

    base = {"views": ["LAX", "4CH"], "steps": 600, "batch_size": 32}
    write_json(tmp_path / "MultiVideo.json", {"per_seed": [{**base, "exposure_of": None}]})
    write_json(tmp_path / "X.json", {"per_seed": [{"exposure_of": {"run": "MultiVideo", **base, "steps": 500}}]})
    with pytest.raises(ValueError, match=r"run `dvc repro -f train@X`"):
        check_exposure(tmp_path)


def test_a_failing_stage_keeps_the_previous_outputs(tmp_path):
    """The stage fails in its notebook (a studies table without patient ids): one line, data/split as it was."""
    d = make_project(tmp_path / "p", tiny_params())
    (d / "data" / "split").mkdir(parents=True)
    (d / "data" / "split" / "studies.parquet").write_bytes(b"previous")
    (d / "data" / "filtered").mkdir(parents=True)
    (d / "data" / "raw").mkdir(parents=True)
    pl.DataFrame({"study_id": ["S1"]}).write_parquet(d / "data" / "raw" / "studies.parquet")
    pl.DataFrame(schema={"video_id": pl.String, "study_id": pl.String, "kept": pl.Boolean, "view": pl.String}
                 ).write_parquet(d / "data" / "filtered" / "videos.parquet")
    got, last = _cli("echolib.stage", "split", cwd=d)
    assert got == 1 and last.startswith("error: stage split failed in cell") and "previous outputs kept" in last
    assert (d / "data" / "split" / "studies.parquet").read_bytes() == b"previous"


def test_a_publication_killed_between_two_renames_is_finished_by_the_next_stage(tmp_path):
    """Killed before the journal: every previous output stays; killed after it, between the renames of two
    outputs (one swapped, the other moved aside): the next stage's start finishes it, nothing old is left."""
    from echolib.io.files import write_json
    from echolib.stage import JOURNAL, STAGING, recover

    root = tmp_path
    (root / "data" / "a").mkdir(parents=True)
    (root / "data" / "a" / "x").write_text("old a")
    (root / "metrics").mkdir()
    (root / "metrics" / "b.json").write_text("old b")
    staging = root / STAGING / "s"
    (staging / "data" / "a").mkdir(parents=True)
    (staging / "data" / "a" / "x").write_text("new a")
    (staging / "metrics").mkdir()
    (staging / "metrics" / "b.json").write_text("new b")
    assert recover(root) == []  # no commit point yet: a kill here keeps the previous outputs
    assert (root / "data" / "a" / "x").read_text() == "old a" and (root / "metrics" / "b.json").read_text() == "old b"
    write_json(staging / JOURNAL, {"stage": "s", "outputs": ["data/a", "metrics/b.json"]})
    # the kill: data/a swapped but its old copy not yet removed; metrics/b.json moved aside, the new one not in
    (root / "data" / "a").rename(root / "data" / ".a.old")
    (staging / "data" / "a").rename(root / "data" / "a")
    (root / "metrics" / "b.json").rename(root / "metrics" / ".b.json.old")
    assert recover(root) == ["s"]
    assert (root / "data" / "a" / "x").read_text() == "new a" and (root / "metrics" / "b.json").read_text() == "new b"
    assert not staging.exists() and sorted(p.name for p in root.rglob(".*old")) == []


@pytest.mark.slow
def test_a_stage_killed_mid_run_leaves_the_previous_outputs_byte_identical(tmp_path):
    """SIGKILL while the synthesize stage renders into its staging folder: data/raw and the page stay as they were."""
    d = make_project(tmp_path / "p", tiny_params(synth={"n_patients": 6}))
    (d / "data" / "raw").mkdir(parents=True)
    (d / "data" / "raw" / "studies.parquet").write_bytes(b"previous benchmark")
    before = {p: p.read_bytes() for p in (d / "data").rglob("*") if p.is_file()}
    proc = subprocess.Popen([sys.executable, "-m", "echolib.stage", "synthesize"], cwd=d, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    staged = d / ".stage" / "synthesize" / "data" / "raw" / "videos"
    deadline = time.time() + 240
    while time.time() < deadline and not (staged.is_dir() and any(staged.rglob("*.mp4"))):
        time.sleep(0.2)
    assert any(staged.rglob("*.mp4")), "the stage never started writing"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert {p: p.read_bytes() for p in (d / "data").rglob("*") if p.is_file()} == before
    assert not (d / "reports" / "stages" / "00_synthesize.ipynb").exists()


def test_training_curves_are_logged_in_a_git_repository_without_commits(tmp_path, monkeypatch):
    """`git init && dvc init && dvc repro` before a first commit: dvclive 3.49 alone raises there ("Empty git
    repo"); our logger carries on without the repository."""
    import subprocess
    import sys

    from echolib.curves import lightning_logger

    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    logger = lightning_logger(tmp_path / "run", resume=False)
    logger.log_metrics({"train/loss": 1.5}, step=3)
    logger.finalize("success")
    tsv = tmp_path / "run" / "dvclive" / "plots" / "metrics" / "train" / "loss.tsv"
    header, row = tsv.read_text().splitlines()[:2]
    assert dict(zip(header.split("\t"), row.split("\t"), strict=True)) == {"step": "3", "loss": "1.5"}


# --- what a hospital archive holds besides clean cines (each beside one good cine of the same study) -----------

def _dataset(**tags):
    """A non-cine DICOM object of the given class (no pixel data), e.g. a structured report."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for k, v in tags.items():
        setattr(ds, k, v)
    if "SOPClassUID" in tags:
        ds.file_meta.MediaStorageSOPClassUID = tags["SOPClassUID"]
    return ds


def _raw_dataset(ds) -> bytes:
    """A dataset as older vendors wrote it: no 128-byte preamble, no file meta, implicit VR little endian."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    del ds.file_meta
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, True
    write_dataset(fp, ds)
    return fp.getvalue()


def _functional_groups(ds):
    """FrameTime removed; the frames' FrameAcquisitionDuration (40 ms) in per-frame functional groups instead."""
    import pydicom

    del ds.FrameTime
    items = []
    for _ in range(int(ds.NumberOfFrames)):
        content = pydicom.Dataset()
        content.FrameAcquisitionDuration = 40.0
        group = pydicom.Dataset()
        group.FrameContentSequence = [content]
        items.append(group)
    ds.PerFrameFunctionalGroupsSequence = items
    return ds


def _j2k_garbage(ds):
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless

    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(100)] * int(ds.NumberOfFrames))
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds["PixelData"].is_undefined_length = True
    return ds


def _mono16(ds):
    """MONOCHROME2 stored in 16 bits (12 used), as some vendors export grey cines."""
    grey = ds.pixel_array.mean(-1).round().astype(np.uint16) * 16
    ds.set_pixel_data(grey, photometric_interpretation="MONOCHROME2", bits_stored=12)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    return ds


def _private_blob(ds):
    """A vendor's private tag holding 20 MB of raw data beside the cine."""
    block = ds.private_block(0x7FD1, "ECHOLIB VENDOR RAW", create=True)
    block.add_new(0x10, "OB", bytes(20 * 2 ** 20))
    return ds


def _bad_frame_time(ds):
    import pydicom
    from pydicom.dataelem import RawDataElement

    tag = pydicom.tag.Tag(0x00181063)
    ds._dict[tag] = RawDataElement(tag, "DS", 4, b"abc ", 0, False, True)
    return ds


def _put(src: Path, name: str, what) -> None:
    path = src / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(what, bytes):
        path.write_bytes(what)
    else:
        F.save(what, path)


#: name -> (what to put beside the good cine: [(file name, dataset or bytes or callable(study))], expected:
#: {"clips": n} and/or {file name: reason})
def _other_class(name: str, uid: str, what: str, cine: bool = False):
    """A case: a file of another SOP class than a cine (a bare dataset, or the example cine relabelled)."""
    make = (lambda s: F.variant(study=s, SOPClassUID=uid)) if cine else (lambda s: _dataset(SOPClassUID=uid))
    return [(name, make)], {name: f"not an ultrasound multi-frame cine: {what} (SOP class {uid})"}


ARCHIVE_CASES = {
    "DICOMDIR": _other_class("DICOMDIR", "1.2.840.10008.1.3.10", "a DICOMDIR (the index of an exported folder)"),
    "structured report": _other_class("SR0001", "1.2.840.10008.5.1.4.1.1.88.33",
                                      "a structured report (measurements, not images)"),
    "encapsulated PDF": _other_class("report.pdf.dcm", "1.2.840.10008.5.1.4.1.1.104.1",
                                     "an encapsulated document (PDF or CDA)"),
    "enhanced US volume": _other_class("3d.dcm", "1.2.840.10008.5.1.4.1.1.6.2",
                                       "an enhanced US volume (3-D or 4-D), not a 2-D cine", cine=True),
    "screen recording": _other_class("sc.dcm", "1.2.840.10008.5.1.4.1.1.7.4",
                                     "a multi-frame secondary capture (a screen recording)", cine=True),
    "ECG waveform": _other_class("ecg.dcm", "1.2.840.10008.5.1.4.1.1.9.1.1", "a waveform (ECG)"),
    "single-frame still": ([("still.dcm", lambda s: F.variant(study=s, SOPClassUID="1.2.840.10008.5.1.4.1.1.6.1"))],
                           {"still.dcm": "single-frame image (Ultrasound Image Storage)"}),
    "no preamble, no file meta": ([("OLD0001", lambda s: _raw_dataset(F.rgb(F.variant(study=s, patient="P-1"))))],
                                  {"clips": 2}),
    "implicit VR": ([("impl.dcm", lambda s: _set_ts(F.rgb(F.variant(study=s, patient="P-1")), "1.2.840.10008.1.2"))],
                    {"clips": 2}),
    "deflated": ([("defl.dcm", lambda s: _set_ts(F.rgb(F.variant(study=s, patient="P-1")), "1.2.840.10008.1.2.1.99"))],
                 {"clips": 2}),
    "RLE": ([("rle.dcm", lambda s: F.rle(F.variant(study=s, patient="P-1")))], {"clips": 2}),
    "MONOCHROME2 in 16 bits": ([("m16.dcm", lambda s: _mono16(F.variant(study=s, patient="P-1")))], {"clips": 2}),
    "PALETTE COLOR": ([("pal.dcm", lambda s: F.palette(F.variant(study=s, patient="P-1"))[0])], {"clips": 2}),
    "H.264 inside DICOM": ([("h264.dcm", lambda s: F.h264(F.variant(study=s, patient="P-1")))], {"clips": 2}),
    "JPEG 2000 no plugin can decode": ([("j2k.dcm", lambda s: _j2k_garbage(F.variant(study=s, patient="P-1")))],
                                       {"j2k.dcm": "pixel data cannot be decoded (RuntimeError: Unable to decode as "
                                                   "exceptions were raised by all available plugins; header "
                                                   "NumberOfFrames 30)"}),
    "frame timing in per-frame functional groups": (
        [("fg.dcm", lambda s: _functional_groups(F.rgb(F.variant(study=s, patient="P-1"))))], {"clips": 2}),
    "a FrameTime that is not a number": ([("ft.dcm", lambda s: _bad_frame_time(F.variant(study=s, patient="P-1")))],
                                         {"clips": 2}),
    "a vendor's 20 MB private tag": ([("priv.dcm", lambda s: _private_blob(F.variant(study=s, patient="P-1")))],
                                     {"clips": 2}),
    "no image size": ([("nosize.dcm", lambda s: _drop(F.variant(study=s, patient="P-1"), "Rows"))],
                      {"nosize.dcm": "no image size in the header (Rows 0, Columns 320)"}),
    "zero-byte file": ([("empty.dcm", b"")], {"empty.dcm": "not a DICOM file"}),
    "hidden system files": ([(".DS_Store", b"\x00\x00\x00\x01Bud1"), ("Thumbs.db", b"\xd0\xcf\x11\xe0")],
                            {".DS_Store": "not a DICOM file", "Thumbs.db": "not a DICOM file"}),
    "identical copy in another folder": ([("backup/good.dcm", "copy")],
                                         {"good.dcm": "duplicate SOP instance (another copy of it is kept)"}),
    "one study across two folders": ([("day2/b.dcm", lambda s: F.variant(study=s, patient="P-1"))], {"clips": 2}),
    "Japanese file and folder names": ([("心エコー/検査1.dcm", lambda s: F.variant(study=s, patient="P-1"))],
                                       {"clips": 2}),
    "a symbolic link back to the archive (a loop)": ([("loop", "link-to-src")], {"clips": 1}),
    "header claims 9 GB of frames": ([("bomb.dcm", lambda s: _huge(F.rle(F.variant(study=s, patient="P-1"))))],
                                     {"bomb.dcm": "cine too large to decode: 4000 frames of 768x1024 px are 9,000 MB "
                                                  "as 8-bit RGB (limit 1,024 MB: ingest.max_decoded_mb)"}),
}


def _set_ts(ds, uid: str):
    ds.file_meta.TransferSyntaxUID = uid
    return ds


def _drop(ds, tag: str):
    delattr(ds, tag)
    return ds


def _huge(ds):
    ds.NumberOfFrames, ds.Rows, ds.Columns = 4000, 1024, 768
    return ds


@pytest.mark.parametrize("case", list(ARCHIVE_CASES))
def test_an_archive_case_is_kept_or_a_recorded_reject(tmp_path, case):
    files, expected = ARCHIVE_CASES[case]
    src = tmp_path / "src"
    study = F.variant().StudyInstanceUID + ".31"
    good = F.variant(study=study, patient="P-1")
    _put(src, "good.dcm", good)
    for name, what in files:
        if what == "copy":
            _put(src, name, (src / "good.dcm").read_bytes())
        elif what == "link-to-src":
            (src / name).symlink_to(src, target_is_directory=True)
        else:
            _put(src, name, what(study) if callable(what) else what)
    (tmp_path / "r.csv").write_text(f"study_key,report_text\n{study},左室拡大なし。\n", encoding="utf-8")
    t = ingest_source("dicom", src, tmp_path / "out", tmp_path / "salt", tmp_path / "r.csv", workers=1,
                      progress=False)
    rejects = _rejects(t)
    assert t["videos"].height == expected.get("clips", 1), (t["videos"].height, rejects)
    assert t["studies"].height == 1 and t["patients"].height == 1
    assert rejects == {k: v for k, v in expected.items() if k != "clips"}

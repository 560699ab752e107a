"""Ingestion: DICOM archive, paper CSV, EchoNet-Dynamic and MIMIC-IV-ECHO layouts; de-identification; rejects."""

import contextlib
import csv
import io
import shutil

import numpy as np
import polars as pl
import pytest

from echolib.ingest import ingest_source
from echolib.ingest.__main__ import main as cli
from echolib.io.mask import sector_mask
from echolib.io.video import read_clip
from tests import dicom_fixtures as F

TABLES = ("patients", "studies", "videos", "rejected")


def _archive(root):
    """Two patients; patient A has two studies (one with two clips); plus every kind of bad file."""
    a1, a2, b1 = (F.variant().StudyInstanceUID.rsplit(".", 1)[0] + f".{k}" for k in (11, 12, 21))
    ident = F.IDENTIFIERS
    F.save(F.variant(study=a1, patient=ident["PatientID"], StudyDate="20200101", **{k: v for k, v in ident.items()
                                                                                      if k != "PatientID"}),
           root / "a" / "IMG0001")  # no extension, as archives often do
    F.save(F.rle(F.variant(study=a1, patient=ident["PatientID"], StudyDate="20200101")), root / "a" / "IMG0002.dcm")
    F.save(F.mono(F.variant(study=a2, patient=ident["PatientID"], StudyDate="20230505")), root / "a2" / "x.dcm")
    no_timing = F.variant(study=b1, patient="B-22")
    del no_timing.FrameTime
    F.save(no_timing, root / "b" / "cine.dcm")
    shutil.copy(root / "b" / "cine.dcm", root / "b" / "cine_copy.dcm")  # duplicate SOP instance
    F.save(F.variant(patient="C-3", SOPClassUID="1.2.840.10008.5.1.4.1.1.6.1"), root / "c" / "still.dcm")
    F.save(F.variant(patient="C-3", NumberOfFrames=0), root / "c" / "empty.dcm")
    whole = F.save(F.variant(patient="C-3"), root / "whole.tmp").read_bytes()
    (root / "whole.tmp").unlink()
    (root / "c" / "trunc.dcm").write_bytes(whole[: len(whole) // 2])
    (root / "c" / "README.txt").write_text("exported from the archive")
    return a1, a2, b1


@pytest.fixture(scope="module")
def dicom_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("archive")
    src, out = root / "src", root / "out"
    a1, a2, b1 = _archive(src)
    reports = root / "reports.csv"
    with open(reports, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["study_key", "report_text"])
        w.writerow([F.IDENTIFIERS["AccessionNumber"], "左室壁運動は正常。"])  # joined by accession number
        w.writerow([a2, "左室駆出率は55%。"])  # joined by StudyInstanceUID
        w.writerow([b1, "大動脈弁狭窄なし。"])
    salt = root / "salt"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        code = cli(["dicom", str(src), "--out", str(out), "--reports", str(reports), "--salt-file", str(salt),
                    "--workers", "1"])
    return {"src": src, "out": out, "code": code, "salt": salt, "reports": reports, "printed": printed.getvalue(),
            "tables": {t: pl.read_parquet(out / f"{t}.parquet") for t in TABLES}}


def test_dicom_archive_is_grouped_by_patient_and_study(dicom_run):
    t = dicom_run["tables"]
    assert dicom_run["code"] == 0
    assert t["patients"].height == 2 and sorted(t["patients"]["n_studies"]) == [1, 2]
    assert t["studies"].height == 3 and t["videos"].height == 4
    a = t["studies"].filter(pl.col("patient_id") == t["patients"].filter(pl.col("n_studies") == 2)["patient_id"])
    assert a.sort("study_index")["report"].to_list() == ["左室壁運動は正常。", "左室駆出率は55%。"]  # by study date
    v = t["videos"]
    assert set(v.columns) >= {"video_id", "study_id", "path", "fps", "n_frames", "height", "width", "fps_source"}
    assert (v["n_frames"] == 30).all() and (v["width"] == 320).all() and (v["height"] == 240).all()
    for p in v["path"]:
        clip = read_clip(dicom_run["out"] / p, 30)
        assert clip.shape == (30, 240, 320, 3) and clip[:, :20, :60].max() == 0  # masked text stays black


def test_every_bad_input_is_recorded_with_its_reason(dicom_run):
    rej = dict(zip(*dicom_run["tables"]["rejected"].select("source", "reason"), strict=True))
    assert rej["c/still.dcm"].startswith("single-frame image")
    assert rej["c/empty.dcm"] == "zero frames"
    assert rej["c/trunc.dcm"].startswith("truncated file")
    assert rej["c/README.txt"] == "not a DICOM file"
    assert rej["b/cine_copy.dcm"].startswith("duplicate SOP instance")
    v = dicom_run["tables"]["videos"]
    warned = v.filter(pl.col("fps_source") == "default")
    assert warned.height == 1 and warned["fps"][0] == 30.0 and "30 fps assumed" in warned["warning"][0]


def test_no_identifier_reaches_any_output(dicom_run):
    ds = F.cine()
    needles = [*F.IDENTIFIERS.values(), "YAMADA", "Yamada", ds.StudyInstanceUID.rsplit(".", 1)[0], "20200101",
               "B-22"]
    files = [p for p in dicom_run["out"].rglob("*") if p.is_file()]
    assert any(p.suffix == ".mp4" for p in files) and len(files) >= 8
    blobs = [p.read_bytes() for p in files]
    texts = [str(pl.read_parquet(dicom_run["out"] / f"{t}.parquet").to_dicts()) for t in TABLES]
    for needle in needles:
        for p, b in zip(files, blobs, strict=True):
            assert needle.encode() not in b, (needle, p)
        for t in texts:
            assert needle not in t, needle
        assert needle not in dicom_run["printed"], needle
    assert "kept: 4 clips, 3 studies, 2 patients" in dicom_run["printed"]
    # the same salt gives the same keys; another salt gives others
    out2 = dicom_run["out"].parent / "again"
    ingest_source("dicom", dicom_run["src"], out2, dicom_run["salt"], dicom_run["reports"], workers=1, progress=False)
    assert sorted(pl.read_parquet(out2 / "patients.parquet")["patient_id"]) == \
        sorted(dicom_run["tables"]["patients"]["patient_id"])
    other = dicom_run["out"].parent / "other_salt"
    (other.parent / "salt2").write_text("another-salt-that-is-long-enough")
    ingest_source("dicom", dicom_run["src"], other, other.parent / "salt2", dicom_run["reports"], workers=1,
                  progress=False)
    assert not set(pl.read_parquet(other / "patients.parquet")["patient_id"]) & \
        set(dicom_run["tables"]["patients"]["patient_id"])


def test_cli_fails_in_one_line_when_nothing_is_kept_and_keeps_the_previous_output(tmp_path, capsys, dicom_run):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "notes.txt").write_text("nothing here")
    shutil.copytree(dicom_run["out"], tmp_path / "o")
    before = {p.relative_to(tmp_path / "o"): p.read_bytes() for p in (tmp_path / "o").rglob("*") if p.is_file()}
    assert cli(["dicom", str(tmp_path / "src"), "--out", str(tmp_path / "o"), "--salt-file",
                str(tmp_path / "s"), "--workers", "1"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bars: one line
    assert last.startswith("error: ") and last.endswith("nothing usable was found (1 x not a DICOM file)")
    after = {p.relative_to(tmp_path / "o"): p.read_bytes() for p in (tmp_path / "o").rglob("*") if p.is_file()}
    assert after == before  # the rerun that keeps nothing left the earlier output byte-identical
    assert cli(["dicom", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_paper_csv_keeps_view_labels_for_the_view_classifier(tmp_path):
    study = F.variant().StudyInstanceUID + ".9"
    F.save(F.variant(study=study), tmp_path / "d" / "1.dcm")
    F.save(F.rgb(F.variant(study=study)), tmp_path / "d" / "2.dcm")
    with open(tmp_path / "paper.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["dicom_path", "report_text", "view_label", "view_prob"])
        w.writerow(["d/1.dcm", "僧帽弁逆流は軽度。", "4CH", "0.97"])
        w.writerow(["d/2.dcm", "僧帽弁逆流は軽度。", "2CH", "0.55"])
        w.writerow(["d/missing.dcm", "x", "LAX", "0.99"])
    t = ingest_source("paper-csv", tmp_path / "paper.csv", tmp_path / "out", tmp_path / "salt", workers=1,
                      progress=False)
    v = t["videos"].sort("view_prob")
    assert v["view_label"].to_list() == ["2CH", "4CH"] and v["view"].to_list() == ["2CH", "4CH"]
    assert v["view_prob"].to_list() == [0.55, 0.97]
    assert t["studies"]["report"].to_list() == ["僧帽弁逆流は軽度。"]
    assert t["rejected"].row(0, named=True)["reason"] == "file listed in the CSV does not exist (row 4)"
    from echolib import views

    labelled = views.apply_filter(views.from_labels(t["videos"]), 0.9)
    assert labelled.filter("kept")["pred_view"].to_list() == ["4CH"]


def test_echonet_dynamic_layout(tmp_path):
    frames = F.cine().pixel_array[:, :112, 100:212]  # a 112 x 112 crop, like EchoNet's videos
    import av

    (tmp_path / "Videos").mkdir()
    with av.open(str(tmp_path / "Videos" / "0X1A2B.avi"), "w", format="avi") as out:
        s = out.add_stream("mjpeg", rate=50)
        s.width, s.height, s.pix_fmt = 112, 112, "yuvj420p"
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    (tmp_path / "FileList.csv").write_text("FileName,EF,ESV,EDV,FrameHeight,FrameWidth,FPS,NumberOfFrames,Split\n"
                                           "0X1A2B,61.5,20,52,112,112,50,30,TRAIN\n0X9999,40,1,1,112,112,50,30,TEST\n")
    # EchoNet carries EF and no reports: without a reports CSV nothing can train a CLIP model (one clear error)
    with pytest.raises(ValueError, match=r"nothing usable was found \(1 x listed in FileList.csv but missing; "
                                         r"1 x no report in the source"):  # ties in the order of the reasons
        ingest_source("echonet-dynamic", tmp_path, tmp_path / "none", tmp_path / "salt", workers=1, progress=False)
    (tmp_path / "r.csv").write_text("study_key,report_text\n0X1A2B,左室収縮能は正常。\n", encoding="utf-8")
    t = ingest_source("echonet-dynamic", tmp_path, tmp_path / "out", tmp_path / "salt", tmp_path / "r.csv",
                      workers=1, progress=False)
    assert t["videos"].height == 1 and t["videos"]["fps"][0] == 50.0 and t["videos"]["view"][0] == "4CH"
    assert t["videos"]["n_frames"][0] == 30 and t["studies"]["ef"].to_list() == [61.5]
    assert t["studies"]["report"].to_list() == ["左室収縮能は正常。"]
    assert t["rejected"]["reason"].to_list() == ["listed in FileList.csv but missing"]


def test_video_folder_layout_patient_study_clip(tmp_path):
    """ROOT/PATIENT/STUDY/CLIP.mp4: folder names are the keys (hashed), each clip masked like a DICOM cine; a
    reports CSV keyed PATIENT/STUDY or by a STUDY name no other patient shares; stray files are named rejects."""
    from echolib.io.video import write_video

    frames, _ = F.burn(F.cine().pixel_array[:12], F.BURNED, (100, 5))  # a name outside the sector
    root = tmp_path / "exports"
    for rel in ("P001/2024-01-05/a4c.mp4", "P001/2024-01-05/plax.mp4", "P001/2024-06-01/a4c.mp4",
                "P002/2024-01-05/a4c.mp4", "P003/loose.mp4"):
        write_video(root / rel, frames, fps=30.0, lossless=True)
    (root / "README.txt").write_text("exported by the cart")
    (tmp_path / "r.csv").write_text("study_key,report_text\nP001/2024-01-05,左室収縮能は正常。\n"
                                    "2024-06-01,軽度僧帽弁逆流。\nP002/2024-01-05,左房拡大なし。\n", encoding="utf-8")
    t = ingest_source("video-folder", root, tmp_path / "out", tmp_path / "salt", tmp_path / "r.csv", workers=1,
                      progress=False)
    assert t["videos"].height == 4 and t["studies"].height == 3 and t["patients"].height == 2
    assert sorted(t["studies"]["report"].to_list()) == sorted(["左室収縮能は正常。", "軽度僧帽弁逆流。", "左房拡大なし。"])
    reasons = dict(zip(t["rejected"]["source"], t["rejected"]["reason"], strict=True))
    assert reasons["P003/loose.mp4"].startswith("not in a PATIENT/STUDY/ folder")
    assert reasons["README.txt"].startswith("not a video file")
    text = " ".join(str(v) for tab in ("patients", "studies", "videos") for v in t[tab].to_dicts())
    assert "P001" not in text and "2024-01-05" not in text  # the keys are hashed
    assert t["videos"]["mask_method"].to_list() == ["sector"] * 4 and (t["videos"]["text_pixels"] > 0).all()
    with pytest.raises(ValueError, match="video-folder source must be a folder"):
        ingest_source("video-folder", tmp_path / "r.csv", tmp_path / "o2", tmp_path / "salt", workers=1,
                      progress=False)


def test_mimic_iv_echo_layout_uses_subject_and_study_ids(tmp_path):
    rel = ["files/p10/p10000032/s90000001/94106955_0001.dcm", "files/p10/p10000032/s90000002/94106956_0001.dcm"]
    for r in rel:
        F.save(F.variant(), tmp_path / r)  # same DICOM PatientID/StudyUID: the record list decides
    (tmp_path / "echo-record-list.csv").write_text(
        "subject_id,study_id,acquisition_datetime,dicom_filepath\n"
        f"10000032,90000001,2180-05-06 22:23:00,{rel[0]}\n10000032,90000002,2179-01-01 10:00:00,{rel[1]}\n")
    (tmp_path / "echo-study-list.csv").write_text(
        "subject_id,study_id,study_datetime,note_id\n10000032,90000001,2180-05-06 22:23:00,\n"
        "10000032,90000002,2179-01-01 10:00:00,\n")
    (tmp_path / "r.csv").write_text("study_key,report_text\n90000002,大動脈弁狭窄は中等度。\n", encoding="utf-8")
    t = ingest_source("mimic-iv-echo", tmp_path, tmp_path / "out", tmp_path / "salt", reports=tmp_path / "r.csv",
                      workers=1, progress=False)
    assert t["patients"].height == 1 and t["studies"].height == 1  # the study without a report is left out ...
    assert t["studies"]["report"].to_list() == ["大動脈弁狭窄は中等度。"]
    assert t["rejected"].filter(pl.col("step") == "report")["reason"].to_list() == [
        "no report in the reports CSV: the study and its 1 clip(s) are left out"]  # ... with its reason
    assert "10000032" not in str(t["studies"].to_dicts()) + str(t["videos"].to_dicts())


def test_masked_clip_round_trip_keeps_the_sector(dicom_run):
    v = dicom_run["tables"]["videos"].filter(pl.col("fps_source") == "FrameTime").row(0, named=True)
    clip = read_clip(dicom_run["out"] / v["path"], 30)
    original = F.cine().pixel_array
    mask, _ = sector_mask(original)
    err = np.abs(clip[:, mask].astype(np.int16) - original[:, mask].astype(np.int16)).mean()
    assert err < 6.0, err
    assert clip[:, ~mask].mean() < 2.0

import shutil

import numpy as np
import polars as pl
import pytest

from echolib.retrieve import RetrievalInputError, main, retrieve, study_clips


def test_empty_and_videoless_folders_are_clear_errors(tmp_path):
    with pytest.raises(RetrievalInputError, match="study folder is empty"):
        study_clips(tmp_path, tmp_path / "work")
    (tmp_path / "IM0001").write_bytes(b"DICM")
    with pytest.raises(RetrievalInputError, match="no video file and no usable DICOM cine.*not a DICOM file"):
        study_clips(tmp_path, tmp_path / "work")


def test_a_video_study_folder_is_masked_like_a_dicom_one(tmp_path):
    """Video files (an mp4 export of the real cine with a name, an ID and an ECG trace burned in) are no longer used
    as they are: the text outside and inside the sector and the ECG trace are blanked, the heart kept."""
    from echolib.io.video import read_clip, write_video
    from tests import dicom_fixtures as F
    from tests.test_deid import READABLE, leftover, planted

    frames, marks = planted(noise=0)
    frames = F.ecg_trace(frames, 224)  # below the sector, where scanners draw it (one crossing the sector stays)
    study = tmp_path / "study"
    write_video(study / "a4c.mp4", frames, fps=30.0, lossless=True)
    clips = study_clips(study, tmp_path / "work")
    assert clips.height == 1 and clips["n_frames"][0] == len(frames)
    stored = read_clip(clips["path"][0], len(frames))
    assert all(leftover(frames, g) > 80 for g in marks)
    assert all(abs(leftover(stored, g)) < READABLE for g in marks), [leftover(stored, g) for g in marks]
    # the ECG trace where the image is black in every frame of the cine (outside the sector): gone
    outside = F.cine().pixel_array.max(axis=(0, 3)) < 5

    def green(x):
        return int(((x[..., 1].astype(int) - x[..., 0] > 100) & outside).sum())

    assert green(frames) > 1000 and green(stored) == 0, (green(frames), green(stored))
    box = np.s_[:, 140:180, 180:230]  # well inside the sector: the heart as it was (up to the video codec)
    assert np.abs(stored[box].astype(np.int16) - frames[box].astype(np.int16)).mean() < 8


def test_a_dicom_study_folder_is_ingested_and_masked(tmp_path):
    from tests import dicom_fixtures as F

    F.save(F.variant(), tmp_path / "study" / "IM0001")
    clips = study_clips(tmp_path / "study", tmp_path / "work")
    assert clips.height == 1 and clips["n_frames"][0] == 30
    from echolib.io.video import read_clip

    assert read_clip(clips["path"][0], 30)[:, :20, :60].max() == 0  # burned-in text masked


@pytest.mark.slow
def test_retrieve_top_k_and_no_usable_view(tiny_project, tmp_path, capsys, monkeypatch):
    from echolib import views
    from echolib.train import train_run

    root = tiny_project
    raw = root / "data" / "raw"
    vids = pl.read_parquet(raw / "videos.parquet")
    truth = dict(zip(vids["video_id"], vids["view"], strict=True))

    def oracle_predict(model_dir, data, videos, **kw):  # the classifier is tested in test_views
        return videos.select("video_id").with_columns(
            pred_view=pl.col("video_id").replace_strict(truth, default="4CH"), view_prob=pl.lit(0.99), decode_error=pl.lit(""))

    monkeypatch.setattr(views, "predict", oracle_predict)
    train_run("SingleVideo", 0, root / "params.yaml", out_root=root / "rruns")
    sid = vids.filter(pl.col("view") == "4CH")["study_id"][0]
    study = tmp_path / "study"
    study.mkdir()
    for p in vids.filter(pl.col("study_id") == sid)["path"]:
        shutil.copy(raw / p, study)
    res = retrieve(root / "rruns" / "SingleVideo" / "seed0", study, raw / "studies.parquet", k=3,
                   views_dir=root / "vc", threshold=0.9)
    assert res.height == 3 and res["rank"].to_list() == [1, 2, 3]
    assert res["similarity"].is_sorted(descending=True)
    # retrieval feeds the model exactly the frames evaluation feeds it
    import torch

    from echolib.datasets import ClipReportDataset, model_input
    from echolib.retrieve import _clip_tensor
    from echolib.store import ClipCache

    ck = torch.load(root / "rruns" / "SingleVideo" / "seed0" / "model.pt", map_location="cpu", weights_only=True)
    cache = ClipCache(root / "data" / "cache")
    row = cache.index.filter(pl.col("study_id") == sid).head(1)
    expected = model_input(ClipReportDataset(cache, row, ck["frames"], train=False)[0]["video"])
    path = raw / vids.filter(pl.col("video_id") == row["video_id"][0])["path"][0]
    from echolib.io.video import video_info

    torch.testing.assert_close(_clip_tensor(str(path), video_info(path)["fps"], ck, ck["frames"])[0], expected)
    dicom = tmp_path / "dicom_study"
    from tests import dicom_fixtures as F

    F.save(F.variant(), dicom / "IM0001")
    res = retrieve(root / "rruns" / "SingleVideo" / "seed0", dicom, raw / "studies.parquet", k=3,
                   views_dir=root / "vc", threshold=0.9)
    assert res.height == 3 and res["clips_used"][0] == 1
    with pytest.raises(RetrievalInputError, match="no usable view"):
        retrieve(root / "rruns" / "SingleVideo" / "seed0", study, raw / "studies.parquet", views_dir=root / "vc",
                 threshold=1.01)
    main(["--model", str(root / "rruns" / "SingleVideo" / "seed0"), "--study", str(study), "--reports",
          str(raw / "studies.parquet"), "-k", "2", "--views-model", str(root / "vc")])
    assert "1. " in capsys.readouterr().out
    # a report holding escape sequences (clear the screen, retitle the window) and a NUL is printed escaped
    hostile = pl.DataFrame({"study_id": ["S\x1b[31mX", "T"],
                            "report": ["\x1b]0;owned\x07\x1b[2J左室拡大なし。\x00", "左室拡大あり。"]})
    hostile.write_parquet(tmp_path / "hostile.parquet")
    main(["--model", str(root / "rruns" / "SingleVideo" / "seed0"), "--study", str(study), "--reports",
          str(tmp_path / "hostile.parquet"), "-k", "2", "--views-model", str(root / "vc")])
    out = capsys.readouterr().out
    assert not any(c in out for c in "\x1b\x07\x00") and "\\x1b]0;owned\\x07\\x1b[2J左室拡大なし。\\x00" in out

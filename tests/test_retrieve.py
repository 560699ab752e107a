import shutil

import polars as pl
import pytest

from echolib.retrieve import RetrievalInputError, main, retrieve, study_clips


def test_empty_and_videoless_folders_are_clear_errors(tmp_path):
    with pytest.raises(RetrievalInputError, match="study folder is empty"):
        study_clips(tmp_path)
    (tmp_path / "IM0001").write_bytes(b"DICM")
    with pytest.raises(RetrievalInputError, match="no video files"):
        study_clips(tmp_path)


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
            pred_view=pl.col("video_id").replace_strict(truth), view_prob=pl.lit(0.99), decode_error=pl.lit(""))

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
    with pytest.raises(RetrievalInputError, match="no usable view"):
        retrieve(root / "rruns" / "SingleVideo" / "seed0", study, raw / "studies.parquet", views_dir=root / "vc",
                 threshold=1.01)
    main(["--model", str(root / "rruns" / "SingleVideo" / "seed0"), "--study", str(study), "--reports",
          str(raw / "studies.parquet"), "-k", "2", "--views-model", str(root / "vc")])
    assert "1. " in capsys.readouterr().out

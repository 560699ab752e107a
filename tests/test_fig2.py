"""Stage fig2 on the tiny project: scratch points from Table 1's evaluation, self-supervised pretraining at two
sizes and local weights, every point and gap checked against the ranks it comes from."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import yaml
from conftest import make_project, run_stage_entry, tiny_params


@pytest.fixture(scope="module")
def fig2_project(tiny_project, tmp_path_factory):
    """A project sharing the tiny project's data, with SingleImage and MultiVideo trained and evaluated (Table 1's
    scratch models) and Fig. 2 set to one pretraining size (half the training patients; nesting across sizes is
    tested in test_pretrained) and one local weights file."""
    import timm
    import torch
    from safetensors.torch import save_file

    from echolib.evaluate import evaluate_run
    from echolib.train import train_run

    d = tmp_path_factory.mktemp("fig2")
    torch.manual_seed(0)
    save_file(timm.create_model("convnext_atto", num_classes=21841).state_dict(), str(d / "in21k.safetensors"))
    params = tiny_params(views={"source": "label"}, pretrain={"steps": 2, "batch_size": 4},
                         fig2={"runs": ["SingleImage", "MultiVideo"], "sizes": [0.5], "seeds": [0],
                               "local": {"ImageNet-21k": {"SingleImage": str(d / "in21k.safetensors")}}})
    params["train"].update(steps=4)
    d = make_project(d / "proj", params)
    (d / "data").mkdir()
    for part in ("raw", "cache", "split", "tokenizer"):
        (d / "data" / part).symlink_to(tiny_project / "data" / part)
    for run in ("SingleImage", "MultiVideo"):
        train_run(run, 0, d / "params.yaml")
        evaluate_run(d / "data" / "runs" / run, d / "data" / "cache", d / "data" / "split" / "studies.parquet",
                     d / "data" / "eval" / run, None, n_boot=50, probe_studies=0)
    return d


def test_fig2_points_gaps_and_pretraining(fig2_project):
    from echolib.fig2 import run_fig2

    d = fig2_project
    m = run_stage_entry(d, "fig2", run_fig2)
    pts = pl.DataFrame(m["points"])
    inits = {"scratch", "ssl-0.5", "ImageNet-21k"}
    assert set(pts["init"]) == inits
    assert set(pts.filter(pl.col("init") == "ImageNet-21k")["model"]) == {"SingleImage"}
    assert set(pts["model"]) == {"SingleImage", "MultiVideo-4CH"}
    # scratch: Table 1's own ranks; MCMRR is the mean rank over the test studies (hand formula)
    ranks = pl.read_parquet(d / "data" / "eval" / "MultiVideo" / "MultiVideo-4CH" / "seed0" / "ranks.parquet")
    got = pts.filter((pl.col("init") == "scratch") & (pl.col("model") == "MultiVideo-4CH")
                     & (pl.col("metric") == "mcmrr_v2r")).row(0, named=True)
    assert got["value"] == pytest.approx(ranks["rank_v2r"].mean()) and got["lo"] <= got["value"] <= got["hi"]
    ssl = pl.read_parquet(d / "data" / "fig2" / "eval" / "ssl-0.5" / "SingleImage" / "SingleImage" / "seed0"
                          / "ranks.parquet")
    got = pts.filter((pl.col("init") == "ssl-0.5") & (pl.col("model") == "SingleImage")
                     & (pl.col("metric") == "r10_r2v")).row(0, named=True)
    assert got["value"] == pytest.approx((ssl["rank_r2v"] <= 10).mean())
    # the gap at each initialisation both runs have: video minus image, paired
    gaps = pl.DataFrame(m["gaps"]).filter(pl.col("metric") == "mcmrr_v2r")
    assert set(gaps["init"]) == {"scratch", "ssl-0.5"}
    by = {(r["model"], r["init"]): r["value"] for r in pts.filter(pl.col("metric") == "mcmrr_v2r").iter_rows(named=True)}
    for g in gaps.iter_rows(named=True):
        assert g["value"] == pytest.approx(by[("MultiVideo-4CH", g["init"])] - by[("SingleImage", g["init"])])
    # pretraining: half the training patients (rounded up), training split only, one per run's architecture
    s = {p.name: json.loads((p / "summary.json").read_text()) for p in (d / "data" / "fig2" / "pretrain").iterdir()}
    assert set(s) == {"convnext-0.5", "convnext_st-0.5"}
    index = pl.read_parquet(d / "data" / "cache" / "index.parquet")
    n_train = index.filter(pl.col("split") == "train")["patient_id"].n_unique()
    assert all(v["splits_seen"] == ["train"] and v["patients"] == -(-n_train // 2) for v in s.values())
    assert m["sizes"]["ssl-0.5"]["patients"] == -(-n_train // 2)
    # the runs trained from each initialisation record it
    summ = json.loads((d / "data" / "fig2" / "runs" / "ImageNet-21k" / "SingleImage" / "seed0" / "summary.json")
                      .read_text())
    assert summ["init"] == f"local:{d.parent / 'in21k.safetensors'}"
    assert np.isfinite(summ["best_val_mcmrr"])


def test_fig2_is_a_recorded_skip_until_sizes_or_local_weights_are_set(fig2_project, tmp_path):
    from echolib.fig2 import run_fig2

    d = make_project(tmp_path / "p", tiny_params(views={"source": "label"}))
    params = yaml.safe_load((d / "params.yaml").read_text())
    assert params["fig2"]["sizes"] == [] and params["fig2"]["local"] == {}
    assert "nothing to compare" in run_stage_entry(d, "fig2", run_fig2)["skipped"]
    assert "nothing to compare" in (d / "data" / "fig2" / "SKIPPED.txt").read_text()  # the declared output exists


def test_gap_sentences_read_the_interval():
    from echolib.report import fig2_sentences

    gaps = [{"difference": "MultiVideo-4CH@scratch - SingleImage@scratch", "init": "scratch", "metric": "mcmrr_v2r",
             "value": -12.0, "lo": -20.5, "hi": -3.25},
            {"difference": "MultiVideo-4CH@ssl-1 - SingleImage@ssl-1", "init": "ssl-1", "metric": "mcmrr_v2r",
             "value": 2.0, "lo": -4.0, "hi": 8.0},
            {"difference": "MultiVideo-4CH@ssl-1 - SingleImage@ssl-1", "init": "ssl-1", "metric": "r10_v2r",
             "value": 0.1, "lo": 0.05, "hi": 0.2}]
    assert fig2_sentences({"gaps": gaps}) == [
        "scratch: MultiVideo-4CH minus SingleImage = -12.0 ranks (-20.5 to -3.2): video better",
        "ssl-1: MultiVideo-4CH minus SingleImage = +2.0 ranks (-4.0 to +8.0): no difference shown"]


def test_init_ssl_pretrains_once_per_run_and_starts_from_those_weights(fig2_project, tmp_path):
    """`init: ssl`: the train stage pretrains the run's encoder on the training patients (pretrain.* settings)
    into RUN/pretrain once; a second seed reuses it; the model's tower starts from exactly those weights."""
    import torch

    from echolib.train import setup_run, ssl_weights_for, train_run

    d = fig2_project
    s0 = train_run("SingleImage", 0, d / "params.yaml", out_root=tmp_path, init="ssl")
    pre = tmp_path / "SingleImage" / "pretrain"
    first = json.loads((pre / "summary.json").read_text())
    assert s0["init"] == "ssl" and first["splits_seen"] == ["train"] and first["fraction"] == 1.0
    mtime = (pre / "encoder.pt").stat().st_mtime_ns
    assert ssl_weights_for("SingleImage", d / "params.yaml", tmp_path) == pre / "encoder.pt"
    assert (pre / "encoder.pt").stat().st_mtime_ns == mtime  # reused, not pretrained again
    r = setup_run("SingleImage", d / "params.yaml", 0, "ssl", pre / "encoder.pt")
    saved = torch.load(pre / "encoder.pt", weights_only=True)["echolib_init"]
    got = r.model.video_encoder.state_dict()
    assert all(torch.equal(got[k], v) for k, v in saved.items())

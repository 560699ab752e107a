import polars as pl
import pytest
import torch

from echolib.compare import finding_differences, view_dropout_frame, view_dropout_table
from echolib.evaluate import (
    ClipEmbeddings,
    dropout_subsets,
    embed_clips,
    evaluate_run,
    evaluate_views,
    view_dropout,
)
from echolib.models import load_clip_model


@pytest.mark.slow
def test_evaluate_trained_tiny_run(tiny_project):
    from echolib.store import ClipCache
    from echolib.train import train_run

    train_run("MultiVideo", 0, tiny_project / "params.yaml", out_root=tiny_project / "evalruns")
    model, frames, ck = load_clip_model(tiny_project / "evalruns" / "MultiVideo" / "seed0" / "model.pt")
    cache = ClipCache(tiny_project / "data" / "cache")
    studies = cache.index.filter(pl.col("pred_view") == "4CH")["study_id"].unique().sort().to_list()
    full = evaluate_views(model, frames, cache, studies, ["LAX", "SAX", "2CH", "3CH", "4CH"])
    only4 = evaluate_views(model, frames, cache, studies, ["4CH"])
    n = len(studies)
    for r in (full, only4):
        m = r["metrics"]
        assert m["n"] == n and 1 <= m["mcmrr_v2r"] <= n and 0 <= m["r10_r2v"] <= 1
        assert r["ranks"]["rank_v2r"].is_between(1, n).all()
    assert (full["ranks"]["n_clips"] >= only4["ranks"]["n_clips"]).all()
    # view dropout: on the studies with every view, each row's ranks equal evaluate_views' on those studies with
    # those views only (there the clips are embedded per call and pooled by embed_studies)
    views = ["LAX", "SAX", "2CH", "3CH", "4CH"]
    dropped = view_dropout(model, frames, cache, studies, views)
    per = cache.index.filter(pl.col("study_id").is_in(studies)).group_by("study_id").agg(pl.col("pred_view"))
    complete = sorted(s for s, v in per.iter_rows() if set(views) <= set(v))
    assert len(complete) >= 2 and list(dropped) == list(dropout_subsets(views)) and len(dropped) == 11
    for label, keep in dropout_subsets(views).items():
        ref = evaluate_views(model, frames, cache, complete, keep)["ranks"]
        assert dropped[label]["study_id"].to_list() == complete
        assert dropped[label]["rank_v2r"].to_list() == ref["rank_v2r"].to_list(), label
        assert dropped[label]["rank_r2v"].to_list() == ref["rank_r2v"].to_list(), label
    assert dropout_subsets(["4CH", "LAX"]) == {"all": ["4CH", "LAX"], "without-4CH": ["LAX"], "without-LAX": ["4CH"],
                                               "only-4CH": ["4CH"], "only-LAX": ["LAX"]}
    # each clip embedded once across calls: what a shared ClipEmbeddings returns equals embed_clips of the same rows
    embed = ClipEmbeddings(model, cache)
    some = cache.index.filter(pl.col("study_id").is_in(studies))
    first = embed(some[::2], frames)
    again = embed(pl.concat([some[1::2], some[::2]]), frames)
    assert embed.computed == len(some) and embed.asked == len(some) + len(some[::2])
    torch.testing.assert_close(again, embed_clips(model, cache, pl.concat([some[1::2], some[::2]]), frames))
    torch.testing.assert_close(again[len(some[1::2]):], first, rtol=0, atol=0)
    embed(some[:3], frames, order="reversed")  # a frame-order ablation is embedded afresh
    assert embed.computed == len(some) + 3
    matched = evaluate_views(model, frames, cache, studies, ["LAX", "SAX", "2CH", "3CH", "4CH"], ["4CH"], seed=1)
    assert matched["ranks"]["n_clips"].to_list() == only4["ranks"]["n_clips"].to_list()
    assert matched["per_clip"]["n_clips"] == only4["per_clip"]["n_clips"]
    # the whole run: ranks, zero-shot and the linear probe (fitted on training studies), per-study predictions
    ids = cache.index["study_id"].unique().sort().to_list()
    split = pl.DataFrame({"study_id": ids, "split": ["test" if s in studies[::2] else "train" for s in ids],
                          "eval_4ch": [s in studies[::2] for s in ids]})
    split.write_parquet(tiny_project / "split.parquet")
    res = evaluate_run(tiny_project / "evalruns" / "MultiVideo", tiny_project / "data" / "cache",
                       tiny_project / "split.parquet", tiny_project / "eval" / "MultiVideo",
                       studies_path=tiny_project / "data" / "raw" / "studies.parquet", n_boot=20, probe_studies=5)
    # the dropout table: every row on the same studies, "all" as the run's own ranks on them, differences from it
    table = view_dropout_frame(tiny_project / "eval" / "MultiVideo", n=50)
    drop = res["view_dropout"]
    assert table["views"].to_list() == list(dropout_subsets(views)) and set(table["studies"]) == {drop["n_studies"]}
    n_c = drop["n_studies"]
    assert table["MCMRR/N v→r"][0] == pytest.approx(drop["per_seed"]["seed0"]["all"]["mcmrr_v2r"] / n_c)
    assert table["MCMRR/N v→r - all"][0] == 0 and (table["MCMRR/N v→r lo"] <= table["MCMRR/N v→r hi"]).all()
    shown = view_dropout_table(table).row(1, named=True)  # without-LAX, as a reader sees it
    r = table.row(1, named=True)
    assert shown["views"] == "without-LAX" and shown["R@10 % v→r"] == (
        f"{r['R@10 % v→r']:.1f} [{r['R@10 % v→r lo']:.1f}, {r['R@10 % v→r hi']:.1f}]")
    assert shown["MCMRR/N minus all views"].startswith(f"{r['MCMRR/N v→r - all']:+.3f} [")
    used = res["clip_embeddings"]["seed0"]  # MultiVideo, -4CH, -matched, the probe and the dropout share clips
    assert used["computed"] < used["asked"] and used["computed"] <= cache.index.height
    pr = res["probe"]["MultiVideo-4CH"]["seed0"]
    assert pr["n_train_studies"] == 5 and pr["n_studies"] == res["n_studies"] == len(studies[::2])
    assert "MultiVideo-matched" not in res["probe"]  # matched draws are a retrieval check only
    found = pl.read_parquet(tiny_project / "eval" / "MultiVideo" / "MultiVideo" / "seed0" / "findings.parquet")
    assert set(found["method"]) == {"zero_shot", "probe"} and set(found["study_id"]) == set(studies[::2])
    diffs = finding_differences(tiny_project / "eval", "zero_shot", [("MultiVideo", "MultiVideo-4CH")], n_boot=20)
    assert set(diffs["difference"]) == {"MultiVideo - MultiVideo-4CH"} and (diffs["lo"] <= diffs["hi"]).all()
    assert finding_differences(tiny_project / "eval", "probe", [("MultiVideo", "SingleImage")]).is_empty()
    with pytest.raises(FileNotFoundError, match="no trained model"):
        load_clip_model(tiny_project / "nothing" / "model.pt")


def test_match_clip_counts_draws_as_many_clips_per_study_as_the_reference():
    from echolib.evaluate import match_clip_counts

    rows = pl.DataFrame({"row": range(9), "study_id": ["A"] * 5 + ["B"] * 3 + ["C"],
                         "pred_view": ["LAX", "SAX", "2CH", "3CH", "4CH", "LAX", "4CH", "4CH", "SAX"]})
    like = rows.filter(pl.col("pred_view") == "4CH")  # A: 1, B: 2, C: none -> at least one
    got = match_clip_counts(rows, like, seed=0)
    assert dict(got.group_by("study_id").len().iter_rows()) == {"A": 1, "B": 2, "C": 1}
    assert set(got["row"]) <= set(rows["row"]) and got["row"].is_sorted()
    draws = {tuple(match_clip_counts(rows, like, seed=s).filter(pl.col("study_id") == "A")["row"]) for s in range(20)}
    assert len(draws) > 1  # a random draw across views, not always the first clip
    assert match_clip_counts(rows, like, seed=3).equals(match_clip_counts(rows, like, seed=3))


def test_frame_order_ablations_read_the_window_as_said():
    import numpy as np

    from echolib.evaluate import reorder, variants_of

    idx = np.arange(10, 18)
    gen = np.random.default_rng(0)
    assert reorder(idx, None, gen).tolist() == idx.tolist()
    assert reorder(idx, "reversed", gen).tolist() == idx[::-1].tolist()
    shuffled = reorder(idx, "shuffled", gen)
    assert sorted(shuffled.tolist()) == idx.tolist() and shuffled.tolist() != idx.tolist()
    assert reorder(idx, "still", gen).tolist() == [14] * 8
    assert set(variants_of("SingleVideo", ["4CH"])) == {"SingleVideo", "SingleVideo-reversed",
                                                         "SingleVideo-shuffled", "SingleVideo-still"}
    assert set(variants_of("SingleImage", ["4CH"], image=True)) == {"SingleImage", "SingleImage-1frame"}

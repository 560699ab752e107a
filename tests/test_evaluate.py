import numpy as np
import polars as pl
import pytest

from echolib.evaluate import bootstrap_ci, evaluate_run, evaluate_views, finding_differences, load_clip_model


def _ranks(seed, n=60):
    rng = np.random.default_rng(seed)
    return pl.DataFrame({"study_id": [f"S{i}" for i in range(n)], "rank_v2r": rng.integers(1, n, n),
                         "rank_r2v": rng.integers(1, n, n)})


def test_bootstrap_matches_explicit_loop():
    a, b = _ranks(0), _ranks(1)
    res = bootstrap_ci({"A": a, "B": b}, n=200, seed=3, pairs=[("A", "B")])
    rng = np.random.default_rng(3)
    idx = rng.integers(0, 60, size=(200, 60))
    ra, rb = a["rank_v2r"].to_numpy(), b["rank_v2r"].to_numpy()
    boots = [ra[i].mean() for i in idx]
    assert res["runs"]["A"]["mcmrr_v2r"]["value"] == pytest.approx(ra.mean())
    assert res["runs"]["A"]["mcmrr_v2r"]["lo"] == pytest.approx(np.quantile(boots, 0.025))
    diffs = [ra[i].mean() - rb[i].mean() for i in idx]  # paired: the same studies for both runs
    d = res["differences"]["A - B"]["mcmrr_v2r"]
    assert d["lo"] == pytest.approx(np.quantile(diffs, 0.025)) and d["hi"] == pytest.approx(np.quantile(diffs, 0.975))
    r10 = [(rb[i] <= 10).mean() for i in idx]
    assert res["runs"]["B"]["r10_v2r"]["hi"] == pytest.approx(np.quantile(r10, 0.975))


def test_identical_runs_have_zero_difference_and_mismatch_is_an_error():
    a = _ranks(0)
    res = bootstrap_ci({"A": a, "A2": a}, n=50, pairs=[("A", "A2")])
    assert res["differences"]["A - A2"]["r10_r2v"] == {"value": 0.0, "lo": 0.0, "hi": 0.0}
    with pytest.raises(ValueError, match="different studies"):
        bootstrap_ci({"A": a, "B": _ranks(1, n=59)})


def test_table1_beside_round_trip_and_errors(tmp_path):
    import json

    from echolib.evaluate import differences_frame, load_table1, table1_frame

    res = bootstrap_ci({"SingleVideo": _ranks(0), "SingleImage": _ranks(1)}, n=50,
                       pairs=[("SingleImage", "SingleVideo")])
    (tmp_path / "table1.json").write_text(json.dumps(res))
    other = load_table1(tmp_path / "table1.json")
    assert table1_frame(other).equals(table1_frame(res))
    n, v = res["n_studies"], res["runs"]["SingleVideo"]["mcmrr_v2r"]
    norm = table1_frame(res, normalised=True).filter(pl.col("model") == "SingleVideo")["MCMRR/N v→r"].item()
    assert norm == f"{v['value'] / n:.3f} [{v['lo'] / n:.3f}, {v['hi'] / n:.3f}]"
    d = differences_frame(other).row(0, named=True)
    v = res["differences"]["SingleImage - SingleVideo"]["mcmrr_v2r"]
    assert d["difference"] == "SingleImage - SingleVideo" and d["mcmrr_v2r"] == f"{v['value']:.1f} [{v['lo']:.1f}, {v['hi']:.1f}]"
    with pytest.raises(FileNotFoundError, match="evaluate.beside: .*none.json does not exist"):
        load_table1(tmp_path / "none.json")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ValueError, match="not a table1.json"):
        load_table1(tmp_path / "x.json")


@pytest.mark.slow
def test_evaluate_trained_tiny_run(tiny_project):
    from echolib.data import ClipCache
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


def test_retrieval_examples_list_differing_findings():
    from echolib.evaluate import retrieval_examples

    studies = pl.DataFrame({"study_id": ["A", "B"], "mr": ["軽度", "高度"], "ar": ["なし", "なし"],
                            "report": ["rA", "rB"]})
    ranks = {"M": pl.DataFrame({"study_id": ["A", "B"], "top1_v2r": ["B", "B"]})}
    ex = retrieval_examples(ranks, studies, ["mr", "ar"], n=2)
    a = ex.filter(pl.col("study_id") == "A").row(0, named=True)
    assert a["differing_findings"] == "mr: 軽度 → 高度" and not a["correct"] and a["retrieved_report"] == "rB"
    b = ex.filter(pl.col("study_id") == "B").row(0, named=True)
    assert b["correct"] and b["differing_findings"] == "none"


def test_averaging_frame_separates_clip_and_study_scores(tmp_path):
    import json

    from echolib.evaluate import averaging_frame

    def variant(n_clips, clip_r10, study_r10):
        return {"per_clip": {"n_clips": n_clips, "mcmrr_v2r": 10.0, "r10_v2r": clip_r10},
                "study": {"mcmrr_v2r": 5.0, "r10_v2r": study_r10}}

    (tmp_path / "SingleVideo.json").write_text(json.dumps({"n_studies": 100, "variants": {
        "SingleVideo": variant(110, 0.30, 0.31)}}))
    (tmp_path / "MultiVideo.json").write_text(json.dumps({"n_studies": 100, "variants": {
        "MultiVideo": variant(600, 0.30, 0.50), "MultiVideo-4CH": variant(110, 0.30, 0.32)}}))
    f = averaging_frame(tmp_path)
    assert f["model"].to_list() == ["MultiVideo", "MultiVideo-4CH", "SingleVideo"]  # Table 1 order
    assert f["clips per study"].to_list() == [6.0, 1.1, 1.1]
    assert f["R@10 gain from averaging"].to_list() == [0.2, 0.02, 0.01]

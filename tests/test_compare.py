"""Comparing runs: paired bootstrap against an explicit loop, Table 1 round trip, examples, averaging."""

import json

import numpy as np
import polars as pl
import pytest

from echolib.compare import bootstrap_ci


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

    from echolib.compare import differences_frame, load_table1, table1_frame

    res = bootstrap_ci({"SingleVideo": _ranks(0), "SingleImage": _ranks(1)}, n=50,
                       pairs=[("SingleImage", "SingleVideo")])
    (tmp_path / "table1.json").write_text(json.dumps(res))
    other = load_table1(tmp_path / "table1.json")
    assert table1_frame(other).equals(table1_frame(res))
    # one set of units: MCMRR / N and R@10 in percent; the raw ranks only in the table labelled raw
    n, v = res["n_studies"], res["runs"]["SingleVideo"]["mcmrr_v2r"]
    row = table1_frame(res).filter(pl.col("model") == "SingleVideo").row(0, named=True)
    assert row["MCMRR/N v→r"] == f"{v['value'] / n:.3f} [{v['lo'] / n:.3f}, {v['hi'] / n:.3f}]"
    r = res["runs"]["SingleVideo"]["r10_r2v"]
    assert row["R@10 % r→v"] == f"{100 * r['value']:.1f} [{100 * r['lo']:.1f}, {100 * r['hi']:.1f}]"
    raw = table1_frame(res, raw=True).filter(pl.col("model") == "SingleVideo").row(0, named=True)
    assert raw[f"MCMRR rank of {n} v→r"] == f"{v['value']:.1f} [{v['lo']:.1f}, {v['hi']:.1f}]"
    d = differences_frame(other).row(0, named=True)
    v = res["differences"]["SingleImage - SingleVideo"]["mcmrr_v2r"]
    assert d["difference"] == "SingleImage - SingleVideo"
    assert d["MCMRR/N v→r"] == f"{v['value'] / n:+.3f} [{v['lo'] / n:+.3f}, {v['hi'] / n:+.3f}]"
    with pytest.raises(FileNotFoundError, match="evaluate.beside: .*none.json does not exist"):
        load_table1(tmp_path / "none.json")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ValueError, match="not a table1.json"):
        load_table1(tmp_path / "x.json")



def test_training_curves_are_shown_in_table1_units():
    """Validation MCMRR divided by the validation studies logged at the same step (per seed), R@10 in percent;
    everything else as logged; without val/n_studies the raw name stays (labelled raw)."""
    from echolib.charts import curves_in_units

    c = pl.DataFrame({"metric": ["val/mcmrr", "val/n_studies", "val/mcmrr", "val/n_studies", "val/r10_v2r",
                                 "train/loss", "val/mcmrr"],
                      "step": [10, 10, 20, 20, 10, 10, 10], "value": [30.0, 60.0, 12.0, 48.0, 0.25, 1.5, 9.0],
                      "seed": ["seed0"] * 6 + ["seed1"]})
    got = {(m, s, st): v for m, s, st, v in curves_in_units(c).select("metric", "seed", "step", "value").iter_rows()}
    assert got[("val/mcmrr_n", "seed0", 10)] == 0.5 and got[("val/mcmrr_n", "seed0", 20)] == 0.25
    assert got[("val/r10_pct_v2r", "seed0", 10)] == 25.0 and got[("train/loss", "seed0", 10)] == 1.5
    assert got[("val/mcmrr", "seed1", 10)] == 9.0  # no val/n_studies logged for seed1: raw, under its raw name


def test_example_records_list_differing_findings():
    from echolib.compare import example_records

    studies = pl.DataFrame({"study_id": ["A", "B"], "mr": ["軽度", "高度"], "ar": ["なし", "なし"],
                            "report": ["rA", "rB"]})
    ranks = {"M": pl.DataFrame({"study_id": ["A", "B"], "top1_v2r": ["B", "B"]})}
    ex = {r["study_id"]: r for r in example_records(ranks, studies, n=2)}
    a = ex["A"]["retrieved"][0]
    assert a["differs"] == [{"finding": "mr", "true": "軽度", "retrieved": "高度"}] and not a["correct"]
    assert a["report"] == "rB" and ex["A"]["report"] == "rA"
    b = ex["B"]["retrieved"][0]
    assert b["correct"] and b["differs"] == []


def test_averaging_frame_separates_clip_and_study_scores(tmp_path):

    from echolib.compare import averaging_frame

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


def test_bootstrap_over_seeds_and_studies():
    a0, a1, b = _ranks(0), _ranks(5), _ranks(1)
    one = bootstrap_ci({"A": a0, "B": b}, n=300, seed=2, pairs=[("A", "B")])
    # a run given the same seed twice is that seed: value and interval unchanged
    twice = bootstrap_ci({"A": [a0, a0], "B": b}, n=300, seed=2, pairs=[("A", "B")])
    assert twice["runs"]["A"]["mcmrr_v2r"] == {**one["runs"]["A"]["mcmrr_v2r"], "seeds": 2, "sd": 0.0}
    # two different seeds: the value is their mean, the spread over seeds is reported, and the interval is that of
    # an explicit two-level loop (studies drawn once for all runs, then each run's seeds with replacement)
    both = bootstrap_ci({"A": [a0, a1], "B": b}, n=300, seed=2, pairs=[("A", "B")])["runs"]["A"]["mcmrr_v2r"]
    m0, m1 = a0["rank_v2r"].mean(), a1["rank_v2r"].mean()
    assert both["value"] == pytest.approx((m0 + m1) / 2) and both["seeds"] == 2
    assert both["sd"] == pytest.approx(np.std([m0, m1], ddof=1))
    studies = np.random.default_rng(2).integers(0, 60, size=(300, 60))
    seeds = np.random.default_rng([2, 1]).integers(0, 2, size=(300, 2))
    r = [a0["rank_v2r"].to_numpy(), a1["rank_v2r"].to_numpy()]
    loop = [np.mean([r[k][studies[i]].mean() for k in seeds[i]]) for i in range(300)]
    assert both["lo"] == pytest.approx(np.quantile(loop, 0.025)) and both["hi"] == pytest.approx(np.quantile(loop, 0.975))

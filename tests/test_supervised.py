"""The positive control's schedule: every step count a profile may set runs (the tiny profile's 10 divided by zero
in OneCycleLR), and long runs keep the one-cycle schedule they were planned with."""

import pytest
import torch

from echolib.loop import one_cycle


def _lrs(steps: int, make) -> list[float]:
    opt = torch.optim.AdamW(torch.nn.Linear(2, 2).parameters(), lr=1e-3)
    sched = make(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("steps", [0, 1, 2, 3, 4, 5, 10, 19, 20])
def test_every_step_count_runs(steps):
    lrs = _lrs(steps, lambda o: one_cycle(o, 1e-3, steps))
    assert len(lrs) == steps and all(0 < x <= 1e-3 + 1e-12 for x in lrs)


def test_long_runs_keep_the_ten_percent_warm_up():
    ours = _lrs(600, lambda o: one_cycle(o, 1e-3, 600))
    ref = _lrs(600, lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=1e-3, total_steps=600, pct_start=0.1))
    assert ours == ref and max(range(600), key=ours.__getitem__) == 59


# --- the protocol of issue #26: balanced sampling, a validation plateau, every seed, AUROC per grade -------------

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from echolib import supervised as S  # noqa: E402
from echolib.interpret import auroc, score_over_seeds  # noqa: E402


def test_auroc_is_the_share_of_correctly_ordered_pairs():
    """Against the pairwise definition, brute force, with ties counted one half."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.random(40) < 0.3
        s = rng.integers(0, 6, 40).astype(float)  # many ties
        pos, neg = s[y], s[~y]
        ref = np.mean([(a > b) + 0.5 * (a == b) for a in pos for b in neg])
        assert auroc(y, s) == pytest.approx(ref)
    assert np.isnan(auroc(np.ones(3, bool), np.arange(3.0)))


def test_balanced_draws_see_every_finding_and_grade_equally_often():
    """Finding 0: 95 clips of grade 0 and 5 of grade 2; finding 1 shown by 10 clips only, two grades; finding 2
    has one grade and is not trained. Uniform sampling over the clips would give finding 1's clips 1/10 and
    finding 0's grade 2 about 1/20 of the draws."""
    n = 100
    y = np.zeros((n, 3), dtype=np.int64)
    y[95:, 0] = 2
    y[:5, 1], y[5:10, 1] = 0, 1
    seen = np.zeros((n, 3), dtype=bool)
    seen[:, 0] = True
    seen[:10, 1] = True
    seen[:, 2] = True
    rows = np.arange(n)
    pools = S.balanced_pools(rows, y, seen)
    assert [j for j, _ in pools] == [0, 1]
    pick, col = S.balanced_draw(pools, 20000, torch.Generator().manual_seed(0))
    assert (col == 1).mean() == pytest.approx(0.5, abs=0.02)
    assert (y[pick[col == 0], 0] == 2).mean() == pytest.approx(0.5, abs=0.02)
    assert (y[pick[col == 1], 1] == 1).mean() == pytest.approx(0.5, abs=0.02)
    assert seen[pick, col].all()


def _preds(p_by_seed, true):
    grades = {"none": "なし", "mild": "軽度", "severe": "高度"}
    return pl.concat([pl.DataFrame({"seed": s, "study_id": [f"s{i}" for i in range(len(true))], "finding": "lvh",
                                    "true": [grades[t] for t in true],
                                    "pred": [grades["none"] if p < 0.5 else grades["mild"] for p in ps],
                                    "p_any": ps}) for s, ps in enumerate(p_by_seed)])


def test_scores_are_means_over_seeds_with_per_grade_aurocs():
    """Worked by hand: seed 0 orders the studies perfectly (AUROC 1), seed 1 exactly backwards (0): the mean is
    0.5 for any grade and for each grade, and the interval spans both seeds' values."""
    true = ["none", "none", "none", "mild", "mild", "severe"]
    perfect = [0.1, 0.2, 0.3, 0.7, 0.8, 0.9]
    res = score_over_seeds(_preds([perfect, [1 - p for p in perfect]], true), 400, 0, 0.95)["lvh"]
    assert res["auroc_any"] == pytest.approx(0.5)
    assert set(res["grades"]) == {"軽度", "高度"} and res["grades"]["高度"]["n"] == 1
    assert all(v["auroc"] == pytest.approx(0.5) for v in res["grades"].values())
    assert res["auroc_any_ci"][0] == pytest.approx(0.0) and res["auroc_any_ci"][1] == pytest.approx(1.0)
    # grades predicted from p_any at 0.5 (none or mild): seed 0 right on 5 of 6 (the severe study is called mild),
    # seed 1 on none
    assert res["accuracy"] == pytest.approx(5 / 12) and res["seeds"] == 2
    one = score_over_seeds(_preds([perfect], true), 400, 0, 0.95)["lvh"]
    assert one["auroc_any"] == 1.0 and one["accuracy"] == pytest.approx(5 / 6)
    no_p = score_over_seeds(_preds([perfect], true).drop("p_any"), 400, 0, 0.95)["lvh"]
    assert "auroc_any" not in no_p and no_p["grades"] == {}


def test_training_stops_at_a_plateau_and_keeps_the_best_weights(tiny_project, tmp_path, monkeypatch):
    """Validation scores rise to step 2 and fall after: with patience 3 the run stops at step 5 and ends with the
    weights it had at step 2. Its steps show in the runner's progress file (the terminal)."""
    from echolib.progress import ENV

    monkeypatch.setenv(ENV, str(tmp_path / "progress.log"))
    from echolib.models import create_video_encoder
    from echolib.store import open_store
    from echolib.vocab import FINDINGS

    cache = open_store(tiny_project / "data" / "cache")
    studies = pl.read_parquet(tiny_project / "data" / "raw" / "studies.parquet")
    videos = pl.read_parquet(tiny_project / "data" / "raw" / "videos.parquet")
    y, seen = S.clip_targets(cache.index, studies, videos)
    torch.manual_seed(0)
    model = S.FindingClassifier(create_video_encoder("convnext_st", size="tiny"), FINDINGS)
    scores, weights = iter([0.5, 0.7, 0.6, 0.6, 0.65, 0.9]), {}

    def validate(m):
        weights[len(weights) + 1] = {k: v.clone() for k, v in m.state_dict().items()}
        return next(scores)

    rows = np.arange(cache.index.height)
    res = S.train_classifier(model, cache, rows, y, seen, 10, 2, 1e-3, 0, validate=validate, val_every=1, patience=3)
    assert res["steps_trained"] == 5 and res["best_step"] == 2
    assert [s for s, _ in res["validations"]] == [1, 2, 3, 4, 5]
    assert all(torch.equal(v, weights[2][k]) for k, v in model.state_dict().items())
    assert not all(torch.equal(v, weights[5][k]) for k, v in model.state_dict().items())
    shown = (tmp_path / "progress.log").read_text().splitlines()
    assert shown[0].startswith("positive control seed 0: 0/10 step") and "5/10 step" in shown[-1]


def test_lvh_is_trained_and_scored_on_its_full_views_only():
    assert S.full_views("lvh") == ("LAX", "SAX", "3CH") and S.full_views("rv_dilation") == ("SAX", "4CH")
    assert S.full_views("ef_grade") == ("LAX", "SAX", "2CH", "3CH", "4CH")


def test_the_stage_scores_every_seed(tiny_project):
    """Two seeds, each with its weights and predictions, the scores over both."""
    import dataclasses
    import json

    from echolib.stage import context

    ctx = context("positive_control", "pipeline", root=tiny_project)
    params = ctx.params
    assert params["positive_control"]["seeds"] == []
    ctx = dataclasses.replace(ctx, params={**params, "positive_control": {**params["positive_control"], "seeds": [3, 4]}})
    m = S.run_positive_control(ctx)
    assert [s["seed"] for s in m["seeds"]] == [3, 4]
    preds = pl.read_parquet(tiny_project / "data" / "positive_control" / "findings.parquet")
    assert sorted(preds["seed"].unique()) == [3, 4]
    assert (tiny_project / "data" / "positive_control" / "seed4" / "model.pt").is_file()
    json.dumps(m)

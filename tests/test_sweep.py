"""The training budget sweep: the rule that picks the budget, and the stage training at multiples of
train.epochs."""

import json
import math

import polars as pl
import yaml

from echolib.sweep import choose_budget, run_budget_sweep
from tests.conftest import make_project, run_stage_entry


def test_the_budget_is_the_smallest_multiple_every_run_has_converged_at():
    # mean validation MCMRR/N over two seeds: A 0.30, 0.21, 0.20 at x0.5, x1, x2; B 0.25, 0.24, 0.30
    rows = pl.DataFrame({"run": ["A"] * 6 + ["B"] * 6, "multiple": [0.5, 0.5, 1, 1, 2, 2] * 2,
                         "val_mcmrr_n": [0.29, 0.31, 0.20, 0.22, 0.19, 0.21, 0.26, 0.24, 0.23, 0.25, 0.30, 0.30],
                         "steps": [1, 1, 2, 2, 4, 4] * 2})
    c = choose_budget(rows, tolerance=0.01)
    # A: best 0.20 at x2, x1 (0.21) is within 0.01, x0.5 is not; B: best 0.24 at x1, x0.5 (0.25) within 0.01
    assert c["per_run"]["A"] == {"converged_at": 1.0, "best_multiple": 2.0, "best_val_mcmrr_n": 0.2}
    assert c["per_run"]["B"]["converged_at"] == 0.5 and c["per_run"]["B"]["best_multiple"] == 1.0
    assert c["multiple"] == 1.0  # the largest over runs: both have converged there
    assert choose_budget(rows, tolerance=0.0)["multiple"] == 2.0  # A's best is at x2


def test_stage_trains_each_run_at_each_multiple_of_its_own_epochs(tiny_project, tmp_path):
    params = yaml.safe_load((tiny_project / "params.yaml").read_text())
    params["runs"]["SingleVideo"]["budget"] = "epochs"
    params["train"]["epochs"] = 1.0
    params["sweep"].update(multiples=[0.5, 2], runs=["SingleVideo"], seeds=[0], tolerance=0.0)
    d = make_project(tmp_path / "p", params)
    (d / "data").mkdir()
    for part in ("raw", "cache", "split", "tokenizer"):
        (d / "data" / part).symlink_to(tiny_project / "data" / part)
    m = run_stage_entry(d, "budget_sweep", run_budget_sweep)
    rows = pl.DataFrame(m["rows"]).sort("multiple")
    clips = rows["train_clips"][0]
    # ceil(epochs x the run's own training clips / batch 4), each budget its own run (and schedule)
    assert rows["steps"].to_list() == [math.ceil(0.5 * clips / 4), math.ceil(2 * clips / 4)]
    assert rows["epochs"].to_list() == [0.5, 2.0] and rows["val_mcmrr_n"].is_finite().all()
    s = json.loads((d / "data" / "budget_sweep" / "x2" / "SingleVideo" / "seed0" / "summary.json").read_text())
    assert s["budget"]["basis"] == "epochs" and s["budget"]["epochs"] == 2.0 and s["train_clips"] == clips
    assert m["multiple"] in (0.5, 2) and m["recommended_epochs"] == m["multiple"] * 1.0
    # skipped while sweep.multiples is []
    params["sweep"]["multiples"] = []
    (d / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
    assert "skipped" in run_stage_entry(d, "budget_sweep", run_budget_sweep)

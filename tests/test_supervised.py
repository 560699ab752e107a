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

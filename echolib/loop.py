"""The one skeleton of echolib's hand-written training loops (the view classifier, the positive control and
self-supervised pretraining; contrastive training runs on Lightning, `echolib.lit`): AdamW over the model's
parameters, a one-cycle learning rate, optional gradient clipping and float16 loss scaling, one loss per step.

Each loop passes its own weight decay (view classifier 0.01, positive control and pretraining 0.05, on every
parameter): kept as they were when the loops were written, so that their results did not move when they came
together here."""

from __future__ import annotations

import torch
from torch import nn


def one_cycle(opt: torch.optim.Optimizer, lr: float, steps: int, warmup: float = 0.1, short_guard: bool = True):
    """One cycle, warming up over `warmup` of the steps. With `short_guard`, a short run (the tiny profile) warms
    up over at least 2 steps, which OneCycleLR needs (with fewer it divides by zero), and under 4 steps the rate
    stays constant; without it (the view classifier, as it always was), OneCycleLR as given."""
    if not short_guard:
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1), pct_start=warmup)
    if steps < 4:
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=max(warmup, 2 / steps))


class Stepper:
    """`step(loss)`: zero the gradients, backpropagate (scaled for float16), clip, step AdamW and the schedule;
    returns the loss as a float."""

    def __init__(self, model: nn.Module, lr: float, weight_decay: float, steps: int, warmup: float = 0.1,
                 clip: float | None = None, device_type: str = "cpu", float16: bool = False,
                 short_guard: bool = True):
        self.params = list(model.parameters())
        self.opt = torch.optim.AdamW(self.params, lr=lr, weight_decay=weight_decay)
        self.sched = one_cycle(self.opt, lr, steps, warmup, short_guard)
        self.scaler = torch.amp.GradScaler(device_type, enabled=float16)
        self.clip = clip

    def step(self, loss: torch.Tensor) -> float:
        self.opt.zero_grad()
        self.scaler.scale(loss).backward()
        if self.clip:
            self.scaler.unscale_(self.opt)
            nn.utils.clip_grad_norm_(self.params, self.clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.sched.step()
        return float(loss.detach())

    @property
    def lr(self) -> float:
        return self.sched.get_last_lr()[0]

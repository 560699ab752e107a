"""Where training runs and in what precision: one rule for Lightning runs, pretraining and the loops outside
Lightning (`train.accelerator`, `train.precision`; a GPU is LOCAL_RANK's)."""

from __future__ import annotations

import os

import torch


def uses_gpu(train) -> bool:
    """Whether `train` (the params section) puts work on a GPU: accelerator gpu, or auto with one present."""
    return train.accelerator == "gpu" or (train.accelerator == "auto" and torch.cuda.is_available())


def precision_of(train) -> str:
    """Lightning's precision string: train.precision, or for auto bf16-mixed on a GPU and 32-true on the CPU."""
    if train.precision != "auto":
        return train.precision
    return "bf16-mixed" if uses_gpu(train) else "32-true"


def device_for(train) -> tuple[torch.device, torch.dtype | None]:
    """The device and autocast type `train.accelerator` and `train.precision` ask for (a GPU: LOCAL_RANK's)."""
    if train is None:
        return torch.device("cpu"), None
    gpu = uses_gpu(train)
    if gpu and not torch.cuda.is_available():
        raise ValueError("train.accelerator is gpu, but torch finds no CUDA device here")
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if gpu else torch.device("cpu")
    return device, {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision_of(train))

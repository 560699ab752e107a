"""Shared fixtures: a tiny synthetic benchmark generated once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    from echolib.synth import generate

    out = tmp_path_factory.mktemp("synth") / "tiny"
    generate(out, profile="tiny", seed=0, n_patients=8, workers=2, progress=False)
    return out

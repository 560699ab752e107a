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


@pytest.fixture(scope="session")
def tiny_project(tmp_path_factory, tiny_data) -> Path:
    """A project folder with params.yaml (tiny sizes), filtered clips (true views), split, tokenizer and cache."""
    import shutil

    import polars as pl
    import yaml

    from echolib.data import build_cache
    from echolib.splits import assign_studies
    from echolib.text import load_tokenizer, train_tokenizer

    d = tmp_path_factory.mktemp("proj")
    shutil.copy(ROOT / "dvc.yaml", d / "dvc.yaml")
    (d / "echolib").symlink_to(ROOT / "echolib")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["base"].update(profile="tiny", seeds=[0])
    params["train"].update(batch_size=4, max_epochs=1, num_workers=0, warmup_steps=2)
    for run in params["runs"].values():
        run["max_epochs"] = 0  # train.max_epochs
    params["cache"].update(frames=16, stride=1)
    params["text"].update(vocab_size=1000)
    (d / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
    data = d / "data"
    raw = data / "raw"
    data.mkdir()
    raw.symlink_to(tiny_data)
    videos = pl.read_parquet(raw / "videos.parquet").with_columns(
        pred_view=pl.col("view"), kept=pl.col("view") != "OTHER")
    studies = pl.read_parquet(raw / "studies.parquet")
    assigned = assign_studies(studies, videos, (0.6, 0.2, 0.2), seed=0)
    studies = studies.join(assigned.select("study_id", "split"), on="study_id")
    train_tokenizer(studies.filter(pl.col("split") == "train")["report"].to_list(), data / "tokenizer", 1000)
    build_cache(raw, videos.filter(pl.col("kept")), studies, load_tokenizer(data / "tokenizer"), data / "cache",
                frames=16, size=64, workers=2, progress=False)
    return d

"""Shared fixtures: a tiny synthetic benchmark generated once per test session, and a tiny project whose data
stages ran through the same entry functions the pipeline's notebooks call."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs two workers on a 2-core machine: one thread each,
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # else their OpenMP threads wait on a core the other holds
    os.environ.setdefault("MKL_NUM_THREADS", "1")


def pytest_collection_modifyitems(config, items):
    """Tests marked `long` (minutes each) first: with `make test`'s two workers (pytest-xdist, work stealing) one
    starts them at once and the other core runs everything else meanwhile."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


def tiny_params(**sections) -> dict:
    """params.yaml with the tiny profile's values, fast training settings, and `sections` updated on top."""
    from echolib import config

    params = config.apply_profile(config.load_params(ROOT / "params.yaml"), "tiny")
    params["base"].update(seeds=[0], workers=2)
    params["synth"].update(n_patients=8)
    params["train"].update(batch_size=4, steps=6, val_check_clips=12, num_workers=0, warmup_steps=2,
                           checkpoint_steps=3)
    for run in params["runs"].values():  # a fixed number of steps (train.steps) for unit tests: the epochs budget
        run["budget"] = "steps"          # has tests of its own
    params["positive_control"].update(steps=4, batch_size=4)
    params["text"].update(vocab_size=1000)
    for name, values in sections.items():
        params[name].update(values)
    return params


def make_project(d: Path, params: dict) -> Path:
    """A project folder: params.yaml, dvc.yaml, notebooks and a link to echolib."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False))
    for name in ("dvc.yaml", "notebooks"):
        (d / name).symlink_to(ROOT / name)
    (d / "echolib").symlink_to(ROOT / "echolib")
    return d


def run_stage_entry(root: Path, stage: str, fn, key: str | None = None):
    """A stage's entry function with the stage's context (the listed params of root/params.yaml)."""
    from echolib.stage import context

    ctx = context(stage, "pipeline", key=key, root=root)
    return fn(ctx)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    from echolib import config
    from echolib.synth import generate

    out = tmp_path_factory.mktemp("synth") / "tiny"
    synth = config.SynthConfig.from_dict({**config.preset("tiny", "synth").to_dict(), "n_patients": 8})
    generate(out, synth, seed=0, workers=2, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_project(tmp_path_factory, tiny_data) -> Path:
    """A tiny project whose filter (true views), split, tokenizer and cache stages ran (data/raw: `tiny_data`)."""
    from echolib.cache import run_cache
    from echolib.splits import run_split
    from echolib.text import run_tokenizer
    from echolib.views import run_filter_views

    d = make_project(tmp_path_factory.mktemp("proj"), tiny_params(views={"source": "label"}))
    (d / "data").mkdir()
    (d / "data" / "raw").symlink_to(tiny_data)
    for stage, fn in (("filter_views", run_filter_views), ("split", run_split), ("tokenizer", run_tokenizer),
                      ("cache", run_cache)):
        run_stage_entry(d, stage, fn)
    return d


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium for the browser tests. `make test` installs it when missing (as root); without it these
    tests are skipped, unless ECHOLIB_REQUIRE_BROWSER=1 (CI) turns the absence into a failure."""
    from tests.browser import find_chromium

    try:
        return find_chromium()
    except FileNotFoundError as e:
        if os.environ.get("ECHOLIB_REQUIRE_BROWSER") == "1":
            pytest.fail(str(e))
        pytest.skip(str(e))

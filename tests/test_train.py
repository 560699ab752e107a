"""Training path: clip cache, dataset, Lightning fast_dev_run and a short real fit of each ablation run."""

import dataclasses
import json
import math
import os

import numpy as np
import polars as pl
import pytest
import torch

from echolib.datasets import ClipReportDataset, frame_indices, max_offset, model_input
from echolib.io.video import read_clip
from echolib.lit import param_groups, study_level_metrics
from echolib.store import ClipCache
from echolib.train import train_run


def test_cache_holds_decoded_clips(tiny_project):
    cache = ClipCache(tiny_project / "data" / "cache")
    row = cache.index.row(0, named=True)
    raw = pl.read_parquet(tiny_project / "data" / "raw" / "videos.parquet").filter(pl.col("video_id") == row["video_id"])
    # resampled in time to cache.fps (8/s) from the clip's own rate: frame k is the source frame nearest k / 8 s
    fps = raw["fps"][0]
    every = read_clip(tiny_project / "data" / "raw" / raw["path"][0], raw["n_frames"][0], size=64)
    expected = every[[min(round(k * fps / 8), len(every) - 1) for k in range(10)]]
    np.testing.assert_array_equal(cache.clips[row["row"]], expected)
    assert cache.meta["decode_errors"] == 0 and cache.input_ids.shape[1] == 256 and cache.meta["fps"] == 8


def test_training_reorders_finding_sentences_evaluation_keeps_them(tiny_project):
    cache = ClipCache(tiny_project / "data" / "cache")
    rows = cache.select("train")
    fixed = ClipReportDataset(cache, rows, 8, train=False, shuffle_findings=True)
    shuffled = ClipReportDataset(cache, rows, 8, train=True, shuffle_findings=True)
    s = int(fixed.study[0])
    ids = fixed[0]["input_ids"]
    assert ids.tolist() == cache.input_ids[s].tolist()
    torch.manual_seed(1)
    draws = [shuffled.report(s)[0] for _ in range(5)]
    n = int(cache.attention_mask[s].sum())
    assert all(sorted(d[:n].tolist()) == sorted(ids[:n].tolist()) for d in draws)  # the same tokens ...
    assert any(d[:n].tolist() != ids[:n].tolist() for d in draws)  # ... in another order
    first, last = cache.study_sents[s], cache.study_sents[s + 1]
    short = ClipReportDataset(cache, rows, 8, train=True, shuffle_findings=True, max_findings=2).report(s)[1]
    two_longest = sorted(np.diff(cache.sent_bounds[first:last + 1]))[-2:]
    assert int(short.sum()) <= 2 + sum(two_longest)  # [CLS] + at most two sentences + [SEP]


def test_frame_sampling():
    np.testing.assert_array_equal(frame_indices(32, 16, 1), np.arange(1, 32, 2))
    assert max_offset(32, 16) == 1 and max_offset(16, 16) == 0
    assert frame_indices(10, 16, 0).max() == 9


def test_dataset_train_random_val_deterministic(tiny_project):
    cache = ClipCache(tiny_project / "data" / "cache")
    rows = cache.select("train")
    val = ClipReportDataset(cache, rows, 8, train=False)
    a, b = val[0], val[0]
    torch.testing.assert_close(a["video"], b["video"])
    assert a["video"].shape == (8, 3, 64, 64) and a["input_ids"].shape == (256,)
    tr = ClipReportDataset(cache, rows, 8, train=True, seed=1)
    draws = []
    for epoch in range(6):  # a training item's window and augmentation are drawn from (seed, epoch, item) alone
        tr.set_epoch(epoch)
        draws.append(tr[0])
    x = torch.stack([model_input(d["video"], d["gain"], d["bias"]) for d in draws])
    assert any(not torch.allclose(x[0], x[i]) for i in range(1, 6))  # they vary from epoch to epoch ...
    tr.set_epoch(2)
    torch.manual_seed(123)  # ... and not with the global random state: a resumed run draws the same
    torch.testing.assert_close(model_input(tr[0]["video"], tr[0]["gain"], tr[0]["bias"]), x[2])
    assert a["video"].dtype == torch.uint8 and float(a["gain"]) == 1.0 and float(a["bias"]) == 0.0


def test_model_input_scales_augments_and_clamps():
    v = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 3, 1, 1, 1).expand(2, 3, 1, 1, 1)
    torch.testing.assert_close(model_input(v)[0].flatten(), torch.tensor([-2.0, -1.2, 2.0]))
    # clip 0: gain 0.5, bias 0.1 -> [0.1, 0.2, 0.6]; clip 1: gain 1.2, bias 0 -> [0, 0.24, 1.2 -> clamped 1]
    out = model_input(v, torch.tensor([0.5, 1.2]), torch.tensor([0.1, 0.0]))
    torch.testing.assert_close(out[0].flatten(), (torch.tensor([0.1, 0.2, 0.6]) - 0.5) / 0.25)
    torch.testing.assert_close(out[1].flatten(), (torch.tensor([0.0, 0.24, 1.0]) - 0.5) / 0.25)


def test_no_weight_decay_on_norms_biases_and_scale():
    from echolib.models import EchoClip, create_text_encoder, create_video_encoder

    m = EchoClip(create_video_encoder("vivit"), create_text_encoder("bert", vocab_size=50))
    decay, no_decay = param_groups(m, 0.1)
    ids = {id(p) for p in no_decay["params"]}
    assert id(m.logit_scale) in ids
    for name, p in m.named_parameters():
        if name.endswith("bias") or "LayerNorm" in name:
            assert id(p) in ids, name
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0


def test_study_level_metrics_average_clips():
    v = torch.tensor([[1.0, 0.0], [0.8, 0.2], [0.0, 1.0]])
    t = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    m = study_level_metrics(v, t, torch.tensor([7, 7, 9]))
    assert m["n"] == 2 and m["r1_v2r"] == 1.0


def test_fast_dev_run(tiny_project):
    train_run("MultiVideo", 0, tiny_project / "params.yaml", fast_dev_run=True,
              out_root=tiny_project / "fdr")


@pytest.mark.slow
@pytest.mark.parametrize("run", ["MultiVideo", "SingleVideo", "SingleImage"])
def test_short_fit_writes_checkpoints_logs_and_resumes(tiny_project, run):
    s = train_run(run, 0, tiny_project / "params.yaml")
    out = tiny_project / "data" / "runs" / run / "seed0"
    assert (out / "checkpoints" / "last.ckpt").is_file() and (out / "model.pt").is_file()
    assert s["global_steps"] == s["steps"] and s["train_clips"] > 0 and np.isfinite(s["best_val_mcmrr"])
    assert s["epochs_run"] == round(s["steps"] * s["batch_size"] / s["train_clips"], 2)
    logged = (out / "dvclive" / "metrics.json").read_text()
    assert "train" in json.loads(logged) and "val" in json.loads(logged)
    if run == "MultiVideo":  # resume continues from last.ckpt without error
        s2 = train_run(run, 0, tiny_project / "params.yaml", resume=True)
        assert s2["global_steps"] >= s["global_steps"]


@pytest.mark.slow
def test_two_process_cpu_ddp_entry_point(tiny_project, tmp_path):
    """The real multi-process path: `python -m echolib.train` with train.devices=2, strategy=ddp on CPU."""
    import subprocess
    import sys

    import yaml

    params = yaml.safe_load((tiny_project / "params.yaml").read_text())
    # 6 training clips: 3 per process, one batch each (smaller than train.batch_size, so not dropped)
    params["train"].update(devices=2, strategy="ddp", steps=3, val_check_clips=8)
    params["runs"] = {"SingleVideo": params["runs"]["SingleVideo"]}
    p = tiny_project / "params_ddp.yaml"
    p.write_text(yaml.safe_dump(params, allow_unicode=True))
    r = subprocess.run([sys.executable, "-m", "echolib.train", "--run", "SingleVideo", "--params", str(p)],
                       capture_output=True, text=True, timeout=600, cwd=tiny_project)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    summary = json.loads([line for line in r.stdout.splitlines() if line.startswith("{")][-1])
    assert summary["global_steps"] == 3 and summary["epochs_run"] > 0, summary


def test_collate_trims_padding_to_longest_report():
    from echolib.lit import collate_trim

    items = [{"video": torch.zeros(2), "input_ids": torch.tensor([5, 6, 7, 0, 0]),
              "attention_mask": torch.tensor([1, 1, 1, 0, 0]), "study": torch.tensor(0)},
             {"video": torch.zeros(2), "input_ids": torch.tensor([5, 6, 0, 0, 0]),
              "attention_mask": torch.tensor([1, 1, 0, 0, 0]), "study": torch.tensor(1)}]
    b = collate_trim(items)
    assert b["input_ids"].tolist() == [[5, 6, 7], [5, 6, 0]] and b["attention_mask"].shape == (2, 3)


def test_budgets_equal_epochs_equal_steps_and_equal_exposure():
    """The paper's design (every run the same epochs over its own clips), the compute-matched twins (600 steps
    each) and the exposure-matched run, worked out by hand on 100 training clips of which 20 are 4CH."""
    from echolib import config
    from echolib.train import run_budget, run_steps
    from tests.conftest import ROOT

    p = config.load(ROOT / "params.yaml")
    index = pl.DataFrame({"split": ["train"] * 100 + ["test"] * 50,
                          "pred_view": ["4CH"] * 20 + ["LAX"] * 80 + ["4CH"] * 50})
    assert p.train.steps == 600 and p.train.batch_size == 32 and p.train.epochs == 2.0
    # equal epochs: ceil(2 * 100 / 32) = 7 steps for MultiVideo, ceil(2 * 20 / 32) = 2 for the 4CH runs
    assert run_budget(p, "MultiVideo", index) == {"steps": 7, "basis": "epochs", "train_clips": 100, "epochs": 2.0,
                                                "passes": 2.24}
    assert run_steps(p, "SingleVideo", index) == run_steps(p, "SingleImage", index) == 2
    # equal steps: 600 each whatever the clips
    assert run_steps(p, "MultiVideo-steps", index) == run_steps(p, "SingleVideo-steps", index) == 600
    # equal exposure: MultiVideo-steps' 600 steps of 32 clips hold 600 * 32 * 0.2 4CH clips
    b = run_budget(p, "SingleVideo-exposure", index)
    assert b["steps"] == round(600 * 32 * 0.2 / 32) == 120 and b["basis"] == "exposure of MultiVideo-steps"
    # a run's own epochs override train.epochs; the sweep's override replaces the budget
    other = dataclasses.replace(p.runs["SingleVideo"], epochs=5.0)
    assert run_budget(p, "SingleVideo", index, other)["steps"] == math.ceil(5 * 20 / 32) == 4


def _train(project, out, *extra, env=None):
    import os
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "echolib.train", "--run", "MultiVideo", "--seed", "0", "--params",
                           str(project / "params_resume.yaml"), "--out-root", str(out), *extra], cwd=project,
                          capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})})


@pytest.mark.slow
def test_killed_mid_epoch_and_resumed_equals_uninterrupted(tiny_project, tmp_path):
    """SIGKILL at the start of step 7 (the last checkpoint: step 6, in the middle of an epoch of 9 batches), then
    --resume: the best weights and the metrics equal those of a run that was never interrupted."""
    import yaml

    params = yaml.safe_load((tiny_project / "params.yaml").read_text())
    params["train"].update(steps=12, checkpoint_steps=3, val_check_clips=16)
    (tiny_project / "params_resume.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
    assert _train(tiny_project, tmp_path / "a").returncode == 0
    killed = _train(tiny_project, tmp_path / "b", env={"ECHOLIB_KILL_AT_STEP": "7"})
    assert killed.returncode == -9  # SIGKILL, mid-epoch
    last = torch.load(tmp_path / "b" / "MultiVideo" / "seed0" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 6 and last["global_step"] % 9  # not at an epoch boundary
    resumed = _train(tiny_project, tmp_path / "b", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = (torch.load(p / "MultiVideo" / "seed0" / "model.pt", weights_only=True) for p in (tmp_path / "a", tmp_path / "b"))
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    sa, sb = (json.loads((p / "MultiVideo" / "seed0" / "summary.json").read_text()) for p in (tmp_path / "a", tmp_path / "b"))
    assert sa["best_val_mcmrr"] == sb["best_val_mcmrr"] and sa["global_steps"] == sb["global_steps"] == 12
    # --resume with nothing to resume from, and from a checkpoint of other settings: one line each
    missing = _train(tiny_project, tmp_path / "c", "--resume")
    assert missing.returncode == 1 and missing.stderr.strip().startswith("error: --resume: no checkpoint to resume")
    params["train"]["steps"] = 14
    (tiny_project / "params_resume.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
    other = _train(tiny_project, tmp_path / "b", "--resume")
    assert other.returncode == 1 and "written by a run with other settings" in other.stderr
    # a fresh run into a finished folder moves the earlier run aside: resume never mixes two runs
    fresh = _train(tiny_project, tmp_path / "b")
    assert fresh.returncode == 0 and (tmp_path / "b" / "MultiVideo" / ".seed0.replaced" / "model.pt").is_file()


def test_a_stage_subprocess_reads_only_what_its_stage_lists(tiny_project, tmp_path):
    """`python -m echolib.train` as the train stage starts it: its parameters come from the runner's file (the
    stage's listed keys only). A key the code reads but the file lacks is a one-line error naming the key, and
    params.yaml cannot be read there at all."""
    import copy
    import subprocess
    import sys

    from echolib.io.files import write_json
    from echolib.stage import stage_context

    ctx = stage_context("train", "SingleVideo", tiny_project)
    params = copy.deepcopy(ctx.params)
    del params["train"]["loss"]
    write_json(tmp_path / "p.json", {"stage": "train@SingleVideo", "root": str(tiny_project), "pipeline": True,
                                     "params": params})
    r = subprocess.run([sys.executable, "-m", "echolib.train", "--stage-params", str(tmp_path / "p.json"), "--run",
                        "SingleVideo", "--out-root", str(tmp_path / "out")], capture_output=True, text=True,
                       cwd=tiny_project, timeout=300)
    assert r.returncode == 1 and r.stderr.strip() == ("error: stage 'train@SingleVideo' reads 'train.loss', which its "
                                                      "params: list in dvc.yaml does not name (add it there)")
    r = subprocess.run([sys.executable, "-c", "from echolib import config; config.load_params('params.yaml')"],
                       capture_output=True, text=True, cwd=tiny_project, env={**os.environ,
                                                                             "ECHOLIB_STAGE_SUBPROCESS": "1"})
    assert "never params.yaml: it could depend on a key DVC does not track" in r.stderr


def test_every_run_validates_at_its_last_step(tiny_project, tmp_path):
    """7 steps validated every 5: validations at steps 5 and 7 (the run is scored at its real end, not at 5)."""
    import yaml

    params = yaml.safe_load((tiny_project / "params.yaml").read_text())
    params["train"].update(steps=7, val_check_clips=20, batch_size=4, checkpoint_steps=100)
    p = tiny_project / "params_last.yaml"
    p.write_text(yaml.safe_dump(params, allow_unicode=True))
    s = train_run("SingleVideo", 0, p, out_root=tmp_path)
    assert s["global_steps"] == 7
    tsv = tmp_path / "SingleVideo" / "seed0" / "dvclive" / "plots" / "metrics" / "val" / "mcmrr.tsv"
    steps = [int(line.split("\t")[0]) + 1 for line in tsv.read_text().splitlines()[1:]]  # dvclive counts from 0
    assert steps == [5, 7], steps


def test_training_prints_no_library_chatter(tiny_project, tmp_path):
    """Lightning's banners, model summary and end-of-fit notice are switched off where they are made (not
    filtered afterwards): the training subprocess prints its own progress and its summary only."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "echolib.train", "--run", "SingleVideo", "--params",
                        str(tiny_project / "params.yaml"), "--out-root", str(tmp_path)], capture_output=True,
                       text=True, cwd=tiny_project, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout + r.stderr
    for chatter in ("GPU available", "Total params", "| Name", "Trainer.fit stopped", "LOCAL_RANK"):
        assert chatter not in out, chatter
    assert json.loads(r.stdout.strip().splitlines()[-1])["global_steps"] == 6


def test_the_command_a_stage_page_shows_can_be_pasted(tiny_project, tmp_path, monkeypatch, capsys):
    """The runner hands the subprocess a temporary parameters file and a staging folder; the page shows the
    command with params.yaml and the folders where the stage puts them, and that command runs as shown."""
    import shlex
    import subprocess
    import sys

    from echolib.proc import run_module
    from echolib.stage import stage_context

    monkeypatch.setenv("ECHOLIB_STAGE_OUT", str(tmp_path / "staging"))
    ctx = stage_context("train", "SingleVideo", tiny_project)
    shown = ctx.by_hand("echolib.train", "--run", "SingleVideo", "--out-root", ctx.out("runs"), "--seed", 0)
    assert shown == ["-m", "echolib.train", "--params", "params.yaml", "--run", "SingleVideo", "--out-root",
                     "data/runs", "--seed", "0"]
    run_module("echolib.config", "check", "params.yaml", cwd=tiny_project, shown=["-m", "x", "y z"])
    assert capsys.readouterr().out.startswith("$ python -m x 'y z'\n")
    pasted = shlex.split(f"python {shlex.join(shown)}".replace("data/runs", str(tmp_path / "runs")))
    r = subprocess.run([sys.executable, *pasted[1:]], cwd=tiny_project, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "runs" / "SingleVideo" / "seed0" / "model.pt").is_file()

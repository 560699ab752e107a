"""params.yaml: one source of truth, checked as a whole; profiles as presets; the stage runner's parameter views."""

import copy
from pathlib import Path

import pytest
import yaml

from echolib import config
from tests.conftest import ROOT


@pytest.fixture
def params():
    return config.load_params(ROOT / "params.yaml")


def test_params_yaml_is_valid_and_typed(params):
    p = config.validate(params)
    assert p.base.profile in config.PROFILES and isinstance(p.base.seed, int)
    assert list(p.views.keep) == ["LAX", "SAX", "2CH", "3CH", "4CH"] and list(p.runs) == [
        "MultiVideo", "SingleVideo", "SingleImage", "MultiVideo-steps", "SingleVideo-steps", "SingleImage-steps",
        "SingleVideo-exposure"]


def test_committed_params_hold_the_default_profile(params):
    """params.yaml as committed is the `default` preset: the presets cannot drift from it."""
    assert config.apply_profile(params, "default") == params


@pytest.mark.parametrize("profile", config.PROFILES)
def test_switching_back_to_default_undoes_every_profile(params, profile):
    """`dvc exp run $(... overrides default)` after any other profile gives params.yaml back exactly: every key a
    profile sets has a default value to return to."""
    assert config.apply_profile(config.apply_profile(params, profile), "default") == params
    assert config.profile_drift(config.apply_profile(params, profile)) == []


@pytest.mark.parametrize("profile", config.PROFILES)
def test_every_profile_is_valid_and_names_real_keys(params, profile):
    eff = config.apply_profile(params, profile)
    config.validate(eff)
    flat = config.profile_values(profile, list(params["runs"]))
    for key in flat:  # a preset may only set keys params.yaml has
        config.get(params, key)
    assert eff["base"]["profile"] == profile
    args = config.profile_overrides(profile, params)
    assert args[:2] == ["-S", f"base.profile={profile}"] and len(args) == 2 * len(flat)


def test_show_prints_the_effective_parameters(capsys):
    assert config.main(["show", "tiny", "--params", str(ROOT / "params.yaml")]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["synth"]["n_patients"] == 24 and shown["views"]["threshold"] == 0.5
    assert shown["runs"]["MultiVideo"]["views"] == ["LAX", "SAX", "2CH", "3CH", "4CH"]


def test_a_fourth_run_gets_the_profile_too(params):
    params["runs"]["MultiVideo4"] = {**copy.deepcopy(params["runs"]["MultiVideo"]), "exposure_of": "MultiVideo4"}
    eff = config.apply_profile(params, "paper")
    assert eff["runs"]["MultiVideo4"]["size"] == "paper" and eff["runs"]["MultiVideo4"]["lr"] == 1e-5


def _set(params, key, value):
    node = params
    *path, last = key.split(".")
    for part in path:
        node = node[part]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return params


DELETE = object()


@pytest.mark.parametrize("key,value,message", [
    ("synth.n_frame", 3, r"unknown key 'synth.n_frame'; allowed: \["),
    ("base.seed", "1", r"'base.seed' must be int, got '1'"),
    ("base.seed", True, r"'base.seed' must be int, got True"),
    ("base.profile", "huge", r"'base.profile' must be one of 'tiny', 'default', 'control', 'paper', got 'huge'"),
    ("base.source", "dicomm", r"'base.source' must be one of 'synthetic', 'dicom'"),
    ("train.steps", -1, r"'train.steps' must be >= 1, got -1"),
    ("views.epochs", -3, r"'views.epochs' must be >= 1, got -3"),
    ("train.batch_size", 0, r"'train.batch_size' must be >= 2, got 0"),
    ("views.keep", ["5CH"], r"'views.keep' must be a list of one of 'LAX'"),
    ("runs.SingleVideo.encoder", "convnxt", r"'runs.SingleVideo.encoder' 'convnxt' is not a known encoder"),
    ("base.seeds", [], r"'base.seeds' must not be empty"),
    ("evaluate.n_bootstrap", -1, r"'evaluate.n_bootstrap' must be >= 1, got -1"),
    ("evaluate.level", 2, r"'evaluate.level' must be <= 0.999, got 2"),
    ("synth.size", 7, r"'synth.size' must be >= 32, got 7"),
    ("split.test", 0.3, r"'split.train' \+ 'valid' \+ 'test' must sum to 1"),
    ("cache.frames", 4, r"'runs.MultiVideo' \(convnext_st, size tiny\) takes 8 frames but 'cache.frames'"),
    ("cache.frames", 40, r"'cache.frames' at 'cache.fps' span 4.88 s, longer than a synthetic clip"),
    ("runs.SingleVideo-exposure.exposure_of", "Nope", r"'runs.SingleVideo-exposure.exposure_of' must name"),
    ("positive_control.encoder", "convnext", r"'positive_control.encoder' 'convnext' is not a known video encoder"),
    ("synth.report_style", "prose", r"'synth.report_style' must be one of 'findings', 'sectioned'"),
    ("runs.SingleVideo.views", ["2CH"], r"'runs.SingleVideo.views' uses \['2CH'\], which 'views.keep' drops"),
    ("ingest.encoding", "cp-nonsense", r"'ingest.encoding' 'cp-nonsense' is not a known text encoding"),
    ("train.lr", 0.1, r"unknown key 'train.lr'"),
    ("views.threshold", DELETE, r"section 'views' lacks key\(s\) \['threshold'\]"),
    ("runs.SingleImage.init", "imagenet", r"'runs.SingleImage.init' must be scratch, ssl or local:PATH"),
    ("runs.SingleImage.init", "local:", r"'runs.SingleImage.init' must be scratch, ssl or local:PATH"),
    ("runs.SingleImage.weights", "x.pt", r"unknown key 'runs.SingleImage.weights'"),
    ("runs.SingleVideo.encoder", "authors", r"'runs.SingleVideo.init' must be local:PATH \(the authors' checkpoint"),
    ("pretrain.mask_ratio", 1.0, r"'pretrain.mask_ratio' must be <= 0.99, got 1.0"),
    ("fig2.sizes", [0.25, 0.25], r"'fig2.sizes' must be distinct fractions in \(0, 1\]"),
    ("fig2.sizes", [0, 1.0], r"'fig2.sizes' must be distinct fractions in \(0, 1\]"),
    ("fig2.runs", ["Nope"], r"'fig2.runs' names 'Nope', which is not in runs"),
    ("fig2.local", {"IN21k": {"SingleVideo": "/w"}}, r"'fig2.local.IN21k' names run 'SingleVideo', not one of"),
    # NaN and infinity pass every comparison: refused by name
    ("views.threshold", float("nan"), r"'views.threshold' must be a finite number, got nan"),
    ("runs.SingleVideo.lr", float("inf"), r"'runs.SingleVideo.lr' must be a finite number, got inf"),
    ("fig2.sizes", [0.5, float("nan")], r"'fig2.sizes' must be a finite number, got \[0.5, nan\]"),
    ("synth.seconds", float("-inf"), r"'synth.seconds' must be a finite number, got -inf"),
    # seeds numpy and Lightning can take
    ("base.seed", 2 ** 32, r"'base.seed' must be <= 4294967295, got 4294967296"),
    ("base.seeds", [0, 2 ** 40], r"'base.seeds' must be distinct integers from 0 to 4294967295"),
    ("runs.SingleVideo.seeds", [-1], r"'runs.SingleVideo.seeds' must be distinct integers from 0 to 4294967295"),
    ("fig2.seeds", [3, 3], r"'fig2.seeds' must be distinct integers from 0 to 4294967295"),
    # the salt never inside what is shared, mailed or replaced
    ("ingest.salt_file", "reports/site/salt", r"'ingest.salt_file' 'reports/site/salt' lies inside reports/"),
    ("ingest.salt_file", "data/ingested/salt", r"'ingest.salt_file' 'data/ingested/salt' lies inside data/"),
    ("ingest.salt_file", "metrics/.salt", r"'ingest.salt_file' 'metrics/.salt' lies inside metrics/"),
    ("ingest.max_decoded_mb", 1, r"'ingest.max_decoded_mb' must be >= 16, got 1"),
    ("ingest.allow_unmasked", "yes", r"'ingest.allow_unmasked' must be bool, got 'yes'"),
])
def test_bad_parameter_is_one_line_naming_the_key(params, key, value, message):
    if key == "views.keep":  # then the runs' views are dropped too; keep them consistent with the bad value
        params["runs"] = {"SingleVideo": params["runs"]["SingleVideo"]}
    if key == "runs.SingleVideo.views":
        params["views"]["keep"] = ["4CH"]
        params["runs"] = {"SingleVideo": params["runs"]["SingleVideo"]}
    if key == "fig2.runs":  # the runs Fig. 2 names are checked when it is to run
        params["fig2"]["sizes"] = [1.0]
    with pytest.raises(config.ConfigError, match=message) as e:
        config.validate(_set(params, key, value))
    assert "\n" not in str(e.value)


def test_unknown_section_and_bad_yaml(tmp_path, params, capsys):
    params["trian"] = {"lr": 1}
    with pytest.raises(config.ConfigError, match=r"unknown section\(s\) \['trian'\]"):
        config.validate(params)
    bad = tmp_path / "params.yaml"
    bad.write_text("base: [unclosed\n")
    assert config.main(["check", str(bad)]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_salt_inside_another_data_root_is_refused(params):
    params["base"]["data_root"] = "work/echo"
    params["ingest"]["salt_file"] = "work/echo/salt"
    with pytest.raises(config.ConfigError, match=r"'ingest.salt_file' 'work/echo/salt' lies inside base.data_root"):
        config.validate(params)


@pytest.mark.parametrize("text,message", [
    ("base:\n  seed: 0\n  seed: 1\n", r"params.yaml: duplicated key 'seed' \(lines 2 and 3; DVC refuses such a file\)$"),
    ("base: {seed: 0}\nbase: {seed: 1}\n", r"params.yaml: duplicated key 'base' \(lines 1 and 2;"),
])
def test_a_duplicated_key_is_one_line(tmp_path, text, message):
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(config.ConfigError, match=message):
        config.load_params(tmp_path / "params.yaml")


def test_a_file_that_is_not_utf8_is_one_line(tmp_path, capsys):
    (tmp_path / "params.yaml").write_bytes("report:\n  title: 心エコー\n".encode("cp932"))
    assert config.main(["check", str(tmp_path / "params.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("params.yaml: not valid UTF-8 text (byte 17); save it as UTF-8") and "\n" not in err


def test_check_cli(capsys):
    assert config.main(["check", str(ROOT / "params.yaml")]) == 0
    assert "ok (profile default" in capsys.readouterr().out


def test_project_root_found_from_subfolder():
    assert config.project_root(ROOT / "notebooks") == ROOT


def test_encoder_catalogue_matches_the_registry():
    from echolib import encoders
    from echolib.models import create_video_encoder, list_encoders

    reg = list_encoders()
    for kind in ("video", "image", "text"):
        assert reg[kind] == encoders.names(kind), kind
    for name in encoders.names("video"):
        assert create_video_encoder(name, size="tiny").num_frames == encoders.frames(name, "tiny")


def test_fig2_runs_are_checked_only_when_fig2_is_to_run(params):
    """A project that drops SingleImage from `runs:` keeps working while Fig. 2 is off (its default)."""
    params["runs"] = {"SingleVideo": params["runs"]["SingleVideo"]}
    assert params["fig2"]["sizes"] == [] and params["fig2"]["runs"] == ["SingleImage", "MultiVideo"]
    config.validate(params)
    params["fig2"]["sizes"] = [0.5]
    with pytest.raises(config.ConfigError, match="'fig2.runs' names 'SingleImage', which is not in runs"):
        config.validate(params)


def test_the_readme_profile_table_matches_the_presets():
    """Each row of the README's profile table: patients, frame size, frames and rate stored, the video encoder."""
    import re

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(\w+)` \| [^|]+ \| ([\d,]+) \| (\d+) px \| (\d+) frames at ([\d.]+) fps \| `(\w+)`, (\w+) \|$",
                      text, re.M)
    assert sorted(r[0] for r in rows) == sorted(config.PROFILES)
    for profile, patients, size, frames, fps, encoder, enc_size in rows:
        v = config.profile_values(profile, ["MultiVideo"])
        assert (int(patients.replace(",", "")), int(size), int(frames), float(fps)) == (
            v["synth.n_patients"], v["synth.size"], v["cache.frames"], v["cache.fps"]), profile
        assert (encoder, enc_size) == (v["runs.MultiVideo.encoder"], v["runs.MultiVideo.size"]), profile


def test_make_repro_runs_dvc_without_its_git_add_dvc_lock_hint(tmp_path):
    """`make repro` runs DVC through echolib.dvc_cli: the `git add dvc.lock` hint (this project never commits
    dvc.lock) is gone, the stage's own lines stay; plain `dvc repro` in the same project prints the hint."""
    import subprocess
    import sys

    def run(*cmd):
        return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, check=True)

    run("git", "init", "-q")
    run(sys.executable, "-m", "dvc", "init", "-q")
    run(sys.executable, "-m", "dvc", "stage", "add", "-q", "-n", "s", "-o", "out.txt", "echo hi > out.txt")
    ours = run(sys.executable, "-m", "echolib.dvc_cli", "repro")
    assert "Running stage 's'" in ours.stdout + ours.stderr and (tmp_path / "out.txt").is_file()
    assert "git add" not in ours.stdout + ours.stderr and "autostage" not in ours.stdout + ours.stderr
    (tmp_path / "out.txt").unlink()
    (tmp_path / "dvc.lock").unlink()
    plain = run(sys.executable, "-m", "dvc", "repro")
    assert "git add dvc.lock" in plain.stdout + plain.stderr


def test_the_readme_run_of_the_authors_model_is_a_valid_run(tmp_path):
    """The README's YAML for scoring the authors' model in the pipeline passes the params check (it once lacked the
    budget keys added later)."""
    import re

    import yaml

    from echolib import config as C

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", readme, re.S) if "Authors-VideoMAE2:" in b)
    snippet = yaml.safe_load(block)
    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    params["text"]["pretrained_dir"] = snippet["text"]["pretrained_dir"]
    params["runs"]["Authors-VideoMAE2"] = snippet["runs"]["Authors-VideoMAE2"]
    C.validate(params)

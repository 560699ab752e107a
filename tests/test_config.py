import pytest

from echolib import config
from tests.conftest import ROOT


def test_params_yaml_loads_into_typed_sections():
    sections = config.load_all(ROOT / "params.yaml")
    assert sections["base"].profile in config.PROFILES
    assert isinstance(sections["base"].seed, int)


def test_unknown_key_is_named():
    with pytest.raises(config.ConfigError, match=r"'synth'.*unknown key\(s\) \['n_patient'\]"):
        config.SynthConfig.from_dict({"n_patient": 3})


def test_mistyped_key_is_named():
    with pytest.raises(config.ConfigError, match=r"key 'seed' must be int, got '1'"):
        config.BaseConfig.from_dict({"seed": "1"})
    with pytest.raises(config.ConfigError, match=r"key 'profile' must be one of"):
        config.BaseConfig.from_dict({"profile": "huge"})
    with pytest.raises(config.ConfigError, match=r"key 'seed' must be int, got True"):
        config.BaseConfig.from_dict({"seed": True})


def test_value_checks_and_optional():
    assert config.SynthConfig.from_dict({"n_patients": None}).n_patients is None
    with pytest.raises(config.ConfigError, match="'n_frames' must be positive"):
        config.SynthConfig.from_dict({"n_frames": 0})


def test_unknown_section(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("base: {seed: 1}\ntrian: {lr: 1}\n")
    with pytest.raises(config.ConfigError, match=r"unknown params section\(s\) \['trian'\]"):
        config.load_all(p)


def test_project_root_found_from_subfolder():
    assert config.project_root(ROOT / "notebooks") == ROOT


def test_profile_overrides_name_real_params():
    import yaml

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for profile in config.PROFILES:
        args = config.profile_overrides(profile)
        assert args[:2] == ["-S", f"base.profile={profile}"]
        for a in args[1::2]:
            node = params
            for part in a.split("=")[0].split("."):
                assert part in node, f"{profile}: {a} names no key of params.yaml"
                node = node[part]
    with pytest.raises(config.ConfigError, match="unknown profile"):
        config.profile_overrides("huge")


@pytest.mark.parametrize("stage,source,skipped", [("synthetic", "synthetic", False), ("synthetic", "dicom", True),
                                                  ("ingest", "synthetic", True), ("ingest", "paper-csv", False)])
def test_only_the_selected_data_stage_runs(tmp_path, stage, source, skipped):
    import json

    from echolib.report import notebook_to_html

    nb, metrics = tmp_path / "nb.ipynb", tmp_path / "m.json"
    assert config.skip_unselected(stage, source, tmp_path / "data", nb, metrics) is skipped
    assert config.main(["skip-unselected", stage, source, str(tmp_path / "d2"), str(nb), str(metrics)]) == \
        (0 if skipped else 1)
    if skipped:  # placeholders satisfy the stage's outputs and render like any page
        assert (tmp_path / "data" / "NOT_SELECTED").is_file()
        assert json.loads(metrics.read_text()) == {"selected": False, "source": source}
        assert "Not selected" in notebook_to_html(nb).read_text()
    else:
        assert not nb.exists() and not (tmp_path / "data").exists()
    assert config.raw_dir("data", source).name == ("raw" if source == "synthetic" else "ingested")

"""Typed configuration: one dataclass per params.yaml section.

`load_section(params, "synth")` (or `SynthConfig.from_dict(d)`) turns a mapping into a typed, frozen object and
rejects unknown keys and values of the wrong type with a message that names the section and the key.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, ClassVar

import yaml

PROFILES = ("tiny", "default", "control", "paper")


class ConfigError(ValueError):
    """A params section is malformed: unknown key, missing key or wrong type."""


def _type_ok(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, tuple):
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        return isinstance(value, (list, tuple)) and all(_type_ok(v, inner) for v in value)
    if origin is dict:
        k, v = typing.get_args(tp) or (Any, Any)
        return isinstance(value, dict) and all(_type_ok(a, k) and _type_ok(b, v) for a, b in value.items())
    if origin is typing.Literal:
        return value in typing.get_args(tp)
    return isinstance(value, tp)


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


@dataclasses.dataclass(frozen=True)
class Section:
    """Base class: subclasses are frozen dataclasses whose fields are the section's keys."""

    section: ClassVar[str] = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Section:
        data = dict(data or {})
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ConfigError(
                f"params section '{cls.section}': unknown key(s) {unknown}; allowed: {sorted(fields)}"
            )
        for name, value in data.items():
            tp = hints[name]
            if not _type_ok(value, tp):
                raise ConfigError(
                    f"params section '{cls.section}': key '{name}' must be {_type_name(tp)}, "
                    f"got {value!r} ({type(value).__name__})"
                )
        missing = [
            n for n, f in fields.items()
            if n not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise ConfigError(f"params section '{cls.section}': missing key(s) {missing}")
        obj = cls(**data)
        obj.validate()
        return obj

    def validate(self) -> None:
        """Cross-field checks; subclasses raise ConfigError naming the key."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class BaseConfig(Section):
    section: ClassVar[str] = "base"
    seed: int = 0
    profile: typing.Literal["tiny", "default", "control", "paper"] = "default"
    source: typing.Literal["synthetic", "dicom", "paper-csv", "echonet-dynamic", "mimic-iv-echo"] = "synthetic"
    data_root: str = "data"
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0])
    workers: int = 0  # 0 = all cores


@dataclasses.dataclass(frozen=True)
class SynthConfig(Section):
    section: ClassVar[str] = "synth"
    n_patients: int | None = None  # None = the profile's size
    size: int | None = None
    n_frames: int | None = None

    def validate(self) -> None:
        for key in ("n_patients", "size", "n_frames"):
            v = getattr(self, key)
            if v is not None and v <= 0:
                raise ConfigError(f"params section 'synth': key '{key}' must be positive, got {v}")


@dataclasses.dataclass(frozen=True)
class IngestConfig(Section):
    """Real-data source for the `ingest` stage (used when base.source is not `synthetic`)."""

    section: ClassVar[str] = "ingest"
    src: str = ""                   # archive folder (dicom, echonet-dynamic, mimic-iv-echo) or CSV (paper-csv)
    reports: str = ""               # optional CSV with columns study_key, report_text
    salt_file: str = ".echolib-salt"  # de-identification salt: created on first use, git-ignored, never shared
    encoding: str = "utf-8"         # of the CSVs (cp932 for many Japanese hospital exports)

    def require_src(self) -> None:
        if not self.src:
            raise ConfigError("params section 'ingest': key 'src' is empty; name the archive folder or CSV to ingest")


@dataclasses.dataclass(frozen=True)
class ViewsConfig(Section):
    section: ClassVar[str] = "views"
    model: str = "resnet10t"  # any timm architecture name
    frames: int = 3
    size: int = 64
    epochs: int = 4
    batch_size: int = 64
    lr: float = 1e-3
    max_train_clips: int = 6000
    threshold: float = 0.9
    keep: str = "LAX,SAX,2CH,3CH,4CH"  # comma-separated (DVC passes scalars to notebooks)
    source: typing.Literal["classifier", "label"] = "classifier"

    def validate(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"params section 'views': key 'threshold' must lie in [0, 1], got {self.threshold}")
        bad = [v for v in self.keep_views if v not in ("LAX", "SAX", "2CH", "3CH", "4CH")]
        if bad or not self.keep_views:
            raise ConfigError(f"params section 'views': key 'keep' has unknown view(s) {bad}; use LAX,SAX,2CH,3CH,4CH")

    @property
    def keep_views(self) -> list[str]:
        return [v.strip() for v in self.keep.split(",") if v.strip()]


@dataclasses.dataclass(frozen=True)
class SplitConfig(Section):
    section: ClassVar[str] = "split"
    train: float = 0.875
    valid: float = 0.025
    test: float = 0.1

    def validate(self) -> None:
        if min(self.ratios) < 0 or abs(sum(self.ratios) - 1) > 1e-6:
            raise ConfigError(f"params section 'split': train + valid + test must be 1, got {self.ratios}")

    @property
    def ratios(self) -> tuple[float, float, float]:
        return (self.train, self.valid, self.test)


@dataclasses.dataclass(frozen=True)
class TextConfig(Section):
    section: ClassVar[str] = "text"
    vocab_size: int = 8000
    max_length: int = 256
    pretrained_dir: str = ""  # local copy of tohoku-nlp/bert-base-japanese-v3 (tokenizer + weights); "" = train own
    layers: int = 0  # transformer layers of a text encoder trained from scratch; 0 = the encoder size's default


@dataclasses.dataclass(frozen=True)
class CacheConfig(Section):
    section: ClassVar[str] = "cache"
    frames: int = 32  # frames stored per clip (training samples model frames from these at a random offset)
    stride: int = 1  # decode stride
    size: int = 64


@dataclasses.dataclass(frozen=True)
class TrainConfig(Section):
    section: ClassVar[str] = "train"
    accelerator: typing.Literal["cpu", "gpu", "auto"] = "cpu"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"  # auto | ddp | ddp_spawn ...
    precision: str = "auto"  # auto = bf16-mixed on GPU, 32-true on CPU
    batch_size: int = 32
    max_epochs: int = 8
    patience: int = 3  # validations without improvement before stopping
    val_check_clips: int = 0  # validate every this many training clips (0 = once per epoch); equal across runs
    min_clips: int = 0  # train on at least this many clips before early stopping may end a run
    warmup_steps: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    num_workers: int = 2
    loss: typing.Literal["clip", "siglip"] = "clip"
    torch_threads: int = 0  # 0 = torch default


@dataclasses.dataclass(frozen=True)
class RunConfig(Section):
    section: ClassVar[str] = "runs.<name>"
    encoder: str = "vivit"  # a registered video encoder (vivit, videomae, convnext_early) or image encoder (convnext)
    views: str = "LAX,SAX,2CH,3CH,4CH"
    lr: float = 5e-4
    size: str = "auto"  # encoder size: tiny | paper | auto (paper for the paper profile, else tiny)
    batch_size: int = 0  # 0 = train.batch_size
    max_epochs: int = 0  # 0 = train.max_epochs
    weights: str = ""  # optional local weights for the video/image backbone

    @property
    def view_list(self) -> list[str]:
        return [v.strip() for v in self.views.split(",") if v.strip()]


def load_runs(params: dict[str, Any]) -> dict[str, RunConfig]:
    runs = params.get("runs") or {}
    if not isinstance(runs, dict) or not runs:
        raise ConfigError("params section 'runs': must map run names to their settings")
    out = {}
    for name, d in runs.items():
        try:
            out[name] = RunConfig.from_dict(d)
        except ConfigError as e:
            raise ConfigError(str(e).replace("runs.<name>", f"runs.{name}")) from None
    return out


@dataclasses.dataclass(frozen=True)
class EvaluateConfig(Section):
    section: ClassVar[str] = "evaluate"
    n_bootstrap: int = 1000
    level: float = 0.95
    beside: str = ""  # another pipeline's metrics/table1.json (e.g. the control profile's), shown beside Table 1
    probe_studies: int = 1000  # training studies a linear probe of each run's study embeddings is fitted on (0: none)


@dataclasses.dataclass(frozen=True)
class ReportConfig(Section):
    section: ClassVar[str] = "report"
    title: str = "Video CLIP for multi-view echocardiography: reproduction report"


SECTIONS: dict[str, type[Section]] = {
    c.section: c
    for c in (BaseConfig, SynthConfig, IngestConfig, ViewsConfig, SplitConfig, TextConfig, CacheConfig, TrainConfig, EvaluateConfig,
              ReportConfig)
}


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def load_section(params: dict[str, Any], name: str) -> Section:
    """Typed object for params[name]; unknown section names are errors too."""
    if name not in SECTIONS:
        raise ConfigError(f"unknown params section '{name}'; known: {sorted(SECTIONS)}")
    return SECTIONS[name].from_dict(params.get(name))


def load_all(path: str | Path = "params.yaml") -> dict[str, Section]:
    params = load_params(path)
    unknown = sorted(set(params) - set(SECTIONS) - {"runs"})
    if unknown:
        raise ConfigError(f"{path}: unknown params section(s) {unknown}; known: {sorted(SECTIONS)}")
    out: dict[str, Any] = {name: load_section(params, name) for name in SECTIONS}
    out["runs"] = load_runs(params)
    return out


def project_root(start: str | Path | None = None) -> Path:
    """The folder holding dvc.yaml, searched upward from `start` (default: the working directory).

    Notebooks run with their own folder or the repository root as working directory (JupyterLab vs papermill);
    both resolve paths from here, never by changing directory.
    """
    here = Path(start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "dvc.yaml").is_file() and (d / "echolib").is_dir():
            return d
    raise FileNotFoundError(f"no echolib project (dvc.yaml + echolib/) found above {here}")


#: settings a profile changes besides base.profile (the synthetic sizes follow the profile automatically)
PROFILE_OVERRIDES: dict[str, dict[str, Any]] = {
    # a smoke test in minutes: a classifier trained on ~170 clips needs more epochs and cannot be held to 0.9
    "tiny": {"train.max_epochs": 2, "train.batch_size": 8, "cache.frames": 16, "cache.stride": 1,
             "views.epochs": 20, "views.threshold": 0.5, "split.train": 0.6, "split.valid": 0.2, "split.test": 0.2},
    "default": {},
    "control": {},
    # the paper: lr 1e-5, 2,000 warm-up steps, batch 64 (video) / 2,304 (image), 256 tokens, 512-d, 224 px
    "paper": {"cache.size": 224, "cache.frames": 32, "cache.stride": 2, "views.size": 224,
              "train.warmup_steps": 2000, "train.batch_size": 64, "train.accelerator": "gpu", "train.strategy": "ddp",
              "runs.MultiVideo.lr": 1e-5, "runs.SingleVideo.lr": 1e-5, "runs.SingleImage.lr": 1e-5,
              "runs.SingleImage.batch_size": 2304, "text.max_length": 256, "text.layers": 0,
              "runs.MultiVideo.encoder": "vivit", "runs.SingleVideo.encoder": "vivit"},
}


def profile_overrides(profile: str) -> list[str]:
    """`-S key=value` arguments for `dvc exp run` that switch every stage to `profile`."""
    if profile not in PROFILE_OVERRIDES:
        raise ConfigError(f"unknown profile {profile!r}; choose one of {sorted(PROFILE_OVERRIDES)}")
    items = {"base.profile": profile, **PROFILE_OVERRIDES[profile]}

    def fmt(v):  # YAML 1.1 reads 1e-05 as a string: keep a decimal point in exponents
        return f"{v:.1e}" if isinstance(v, float) and abs(v) < 1e-3 else v

    return [a for k, v in items.items() for a in ("-S", f"{k}={fmt(v)}")]


def raw_dir(data_root: str | Path, source: str) -> Path:
    """Where the pipeline's input tables live: the synthesize stage's output or the ingest stage's."""
    return Path(data_root) / ("raw" if source == "synthetic" else "ingested")


def skip_unselected(stage_source: str, source: str, out_dir: str | Path, notebook: str | Path,
                    metrics: str | Path) -> bool:
    """For the synthesize/ingest pair: when `source` does not select this stage, write placeholder outputs
    (empty data folder, a one-cell notebook and its HTML, metrics saying so) and return True."""
    import nbformat

    selected = (source == "synthetic") == (stage_source == "synthetic")
    if selected:
        return False
    note = (f"Not selected: `base.source` is `{source}`, so the "
            f"{'ingest' if source != 'synthetic' else 'synthesize'} stage provides the data.")
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    (Path(out_dir) / "NOT_SELECTED").write_text(note + "\n")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# {Path(notebook).stem}\n\n{note}")])
    nb.metadata["kernelspec"] = {"name": "echolib", "display_name": "echolib", "language": "python"}
    Path(notebook).parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, notebook)
    Path(metrics).parent.mkdir(parents=True, exist_ok=True)
    Path(metrics).write_text(json.dumps({"selected": False, "source": source}) + "\n")
    return True


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m echolib.config")
    sub = ap.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("overrides", help="print `-S key=value` arguments that switch every stage to a profile")
    o.add_argument("profile")
    s = sub.add_parser("skip-unselected", help="exit 0 after writing placeholders if base.source does not select "
                                               "this stage, 1 if the stage must run")
    for name in ("stage_source", "source", "out_dir", "notebook", "metrics"):
        s.add_argument(name)
    a = ap.parse_args(argv)
    if a.cmd == "overrides":
        print(" ".join(profile_overrides(a.profile)))
        return 0
    skipped = skip_unselected(a.stage_source, a.source, a.out_dir, a.notebook, a.metrics)
    if skipped:
        print(f"stage for source {a.stage_source!r} not selected (base.source = {a.source!r}): placeholders written")
    return 0 if skipped else 1


if __name__ == "__main__":
    import sys

    sys.exit(main())

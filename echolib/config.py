"""Typed parameters: params.yaml is the single source of truth; this module reads, checks and presents it.

Every params.yaml section has a frozen dataclass whose fields are its keys, with no defaults: a missing key is an
error naming the section and the key, so nothing a run uses can come from a default that disagrees with
params.yaml. `validate(params)` checks the whole file up front (unknown keys, types, ranges, known names, settings
that must agree across sections) and raises one `ConfigError` line naming the key and what is allowed.

Profiles (`tiny`, `default`, `control`, `paper`) are presets: named sets of values for the keys a profile
changes, kept here and nowhere else. params.yaml as committed holds the `default` preset (a test checks).

    python -m echolib.config check [PARAMS]        validate params.yaml alone
    python -m echolib.config show PROFILE          the effective parameters of a profile (YAML)
    python -m echolib.config overrides PROFILE     `-S key=value` arguments for `dvc exp run`
"""

from __future__ import annotations

import codecs
import copy
import dataclasses
import math
import sys
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml

from . import encoders
from .io.safe import for_terminal

PROFILES = ("tiny", "default", "control", "paper")
PUBLISHED = ("data", "metrics", "reports", "scratch")  # folders the pipeline writes, replaces, shares or mails
SEED_MAX = 2 ** 32 - 1  # numpy's and Lightning's seeds are 32-bit
#: set in the environment of a process a stage starts with its parameters in a file: params.yaml is not read there
STAGE_PARAMS_ENV = "ECHOLIB_STAGE_SUBPROCESS"
SOURCES = ("synthetic", "dicom", "paper-csv", "echonet-dynamic", "mimic-iv-echo", "video-folder")
View = Literal["LAX", "SAX", "2CH", "3CH", "4CH"]


class ConfigError(ValueError):
    """params.yaml is malformed: unknown, missing or mistyped key, value out of range, or settings that disagree."""


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
    if origin is Literal:
        return value in typing.get_args(tp)
    return isinstance(value, tp)


def _non_finite(value: Any) -> bool:
    """NaN or infinity anywhere in a value (YAML's .nan and .inf pass every range check otherwise)."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return any(_non_finite(v) for v in value)
    if isinstance(value, dict):
        return any(_non_finite(v) for v in value.values())
    return False


def _check_seeds(where: str, seeds: list[int]) -> None:
    if len(set(seeds)) != len(seeds) or any(not 0 <= x <= SEED_MAX for x in seeds):
        raise ConfigError(f"params: '{where}' must be distinct integers from 0 to {SEED_MAX}, got {seeds}")


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _check(lo=None, hi=None, *, lo_open: bool = False, nonempty: bool = False) -> dict:
    return {"lo": lo, "hi": hi, "lo_open": lo_open, "nonempty": nonempty}


def _f(**check) -> Any:
    """A required field with an optional range check (see `_check`)."""
    return dataclasses.field(metadata=_check(**check) if check else {})


@dataclasses.dataclass(frozen=True)
class Section:
    """Base class: subclasses are frozen dataclasses whose fields are the section's keys (all required)."""

    section: ClassVar[str] = ""

    @classmethod
    def check_value(cls, name: str, value: Any, where: str | None = None) -> None:
        """Type and range of one key; raises ConfigError naming `where.name`."""
        where = where or cls.section
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if name not in fields:
            raise ConfigError(f"params: unknown key '{where}.{name}'; allowed: {sorted(fields)}")
        tp = typing.get_type_hints(cls)[name]
        if not _type_ok(value, tp):
            raise ConfigError(f"params: '{where}.{name}' must be {_type_name(tp)}, got {value!r} "
                              f"({type(value).__name__})")
        if _non_finite(value):
            raise ConfigError(f"params: '{where}.{name}' must be a finite number, got {value!r}")
        m = fields[name].metadata
        if m.get("nonempty") and not value:
            raise ConfigError(f"params: '{where}.{name}' must not be empty")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            lo, hi = m.get("lo"), m.get("hi")
            if lo is not None and (value <= lo if m.get("lo_open") else value < lo):
                raise ConfigError(f"params: '{where}.{name}' must be {'>' if m.get('lo_open') else '>='} {lo}, "
                                  f"got {value!r}")
            if hi is not None and value > hi:
                raise ConfigError(f"params: '{where}.{name}' must be <= {hi}, got {value!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, where: str | None = None) -> Section:
        where = where or cls.section
        if data is not None and not isinstance(data, dict):
            raise ConfigError(f"params: section '{where}' must be a mapping of keys to values, got {data!r}")
        data = dict(data or {})
        for name, value in data.items():
            cls.check_value(name, value, where)
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in data]
        if missing:
            raise ConfigError(f"params: section '{where}' lacks key(s) {missing}")
        obj = cls(**data)
        obj.validate(where)
        return obj

    def validate(self, where: str) -> None:
        """Checks across keys of the section; subclasses raise ConfigError naming the key."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class BaseConfig(Section):
    section: ClassVar[str] = "base"
    seed: int = _f(lo=0, hi=SEED_MAX)
    seeds: list[int] = _f(nonempty=True)
    profile: Literal["tiny", "default", "control", "paper"] = _f()
    source: Literal["synthetic", "dicom", "paper-csv", "echonet-dynamic", "mimic-iv-echo", "video-folder"] = _f()
    data_root: str = _f(nonempty=True)
    workers: int = _f(lo=0)  # 0 = all cores

    def validate(self, where: str) -> None:
        _check_seeds(f"{where}.seeds", self.seeds)


@dataclasses.dataclass(frozen=True)
class SynthConfig(Section):
    section: ClassVar[str] = "synth"
    n_patients: int = _f(lo=1)
    size: int = _f(lo=32, hi=1024)  # frame size in pixels
    seconds: float = _f(lo=1.2, hi=10.0)  # clip duration: at least one cardiac cycle at the slowest rate (50 bpm)
    control: bool = _f()  # the negative control: every finding static and visible in every view
    quality: int = _f(lo=2, hi=31)  # MPEG-4 quantiser of the written clips (2 best)
    report_style: Literal["findings", "sectioned"] = _f()  # the paper's finding sentences, or sections + numbers

    def validate(self, where: str) -> None:
        if self.size % 2:
            raise ConfigError(f"params: '{where}.size' must be even (the videos are yuv420p), got {self.size}")


@dataclasses.dataclass(frozen=True)
class IngestConfig(Section):
    """Real-data source for the `ingest` stage (used when base.source is not `synthetic`)."""

    section: ClassVar[str] = "ingest"
    src: str = _f()  # archive folder (dicom, echonet-dynamic, mimic-iv-echo, video-folder) or CSV (paper-csv)
    reports: str = _f()  # optional CSV with columns study_key, report_text
    salt_file: str = _f(nonempty=True)  # de-identification salt: created on first use, git-ignored, never shared
    encoding: str = _f(nonempty=True)  # of the CSVs (cp932 for many Japanese hospital exports)
    max_decoded_mb: float = _f(lo=16)  # a larger cine (decoded, 8-bit RGB) is a recorded reject
    allow_unmasked: bool = _f()  # keep clips whose sector is not found whole (text still blanked)

    def validate(self, where: str) -> None:
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise ConfigError(f"params: '{where}.encoding' {self.encoding!r} is not a known text encoding "
                              "(e.g. utf-8, cp932, shift_jis)") from None
        top = Path(self.salt_file).parts[:1]
        if top and top[0] in PUBLISHED:
            raise ConfigError(f"params: '{where}.salt_file' {self.salt_file!r} lies inside {top[0]}/, which is shared "
                              "or replaced by each run; keep the salt outside (e.g. .echolib-salt)")

    def require_src(self) -> None:
        if not self.src:
            raise ConfigError("params: 'ingest.src' is empty; name the archive folder or CSV to ingest")


@dataclasses.dataclass(frozen=True)
class ViewsConfig(Section):
    section: ClassVar[str] = "views"
    model: str = _f(nonempty=True)  # any timm architecture name
    frames: int = _f(lo=1)
    size: int = _f(lo=16)
    epochs: int = _f(lo=1)
    batch_size: int = _f(lo=2)
    lr: float = _f(lo=0, lo_open=True)
    max_train_clips: int = _f(lo=1)
    threshold: float = _f(lo=0, hi=1)
    keep: list[View] = _f(nonempty=True)
    source: Literal["classifier", "label"] = _f()


@dataclasses.dataclass(frozen=True)
class SplitConfig(Section):
    section: ClassVar[str] = "split"
    train: float = _f(lo=0, lo_open=True, hi=1)
    valid: float = _f(lo=0, lo_open=True, hi=1)
    test: float = _f(lo=0, lo_open=True, hi=1)
    min_valid_4ch: int = _f(lo=0)  # the split stage refuses fewer validation studies with a 4CH clip (0: any)

    def validate(self, where: str) -> None:
        if abs(sum(self.ratios) - 1) > 1e-6:
            raise ConfigError(f"params: '{where}.train' + 'valid' + 'test' must sum to 1, got {self.ratios}")

    @property
    def ratios(self) -> tuple[float, float, float]:
        return (self.train, self.valid, self.test)


@dataclasses.dataclass(frozen=True)
class TextConfig(Section):
    section: ClassVar[str] = "text"
    vocab_size: int = _f(lo=100)
    max_length: int = _f(lo=8, hi=512)
    pretrained_dir: str = _f()  # local copy of tohoku-nlp/bert-base-japanese-v3 (tokenizer + weights); "" = train own
    layers: int = _f(lo=1)  # transformer layers of a text encoder trained from scratch
    shuffle_findings: bool = _f()  # training: a report's finding sentences in a new random order every time
    max_findings: int = _f(lo=1)  # training: at most this many finding sentences (the authors' loader: 35)


@dataclasses.dataclass(frozen=True)
class CacheConfig(Section):
    section: ClassVar[str] = "cache"
    fps: float = _f(lo=1, lo_open=False)  # clips are resampled in time to this rate (nearest frame)
    frames: int = _f(lo=1)  # frames stored per clip (training takes the encoder's frames at a random offset)
    size: int = _f(lo=16)
    store: Literal["memmap", "shards"] = _f()  # one memory-mapped array, or WebDataset shards of H.264 clips
    shard_mb: int = _f(lo=1, hi=4000)  # shards: about this many MB each
    qp: int = _f(lo=0, hi=51)  # shards: H.264 constant quantiser (lower: better and larger)


@dataclasses.dataclass(frozen=True)
class TrainConfig(Section):
    section: ClassVar[str] = "train"
    accelerator: Literal["cpu", "gpu", "auto"] = _f()
    devices: int = _f(lo=1)
    num_nodes: int = _f(lo=1)
    strategy: Literal["auto", "ddp", "ddp_spawn"] = _f()
    precision: Literal["auto", "32-true", "bf16-mixed", "16-mixed"] = _f()  # auto = bf16-mixed on GPU, else 32
    batch_size: int = _f(lo=2)  # a contrastive batch needs negatives
    steps: int = _f(lo=1)  # optimisation steps of a run whose budget is in steps (the cosine schedule ends here)
    epochs: float = _f(lo=0)  # > 0: every run with steps 0 trains this many epochs of its own training clips
    patience: int = _f(lo=0)  # early stopping after this many validations without improvement (0 = never)
    val_check_clips: int = _f(lo=1)  # validate every this many training clips, the same for every run
    min_clips: int = _f(lo=0)  # train on at least this many clips before early stopping may end a run
    checkpoint_steps: int = _f(lo=1)  # save a checkpoint to resume from (checkpoints/last.ckpt) every this many steps
    warmup_steps: int = _f(lo=0)
    weight_decay: float = _f(lo=0)
    grad_clip: float = _f(lo=0)
    num_workers: int = _f(lo=0)
    loss: Literal["clip", "siglip"] = _f()
    torch_threads: int = _f(lo=0)  # 0 = torch default


@dataclasses.dataclass(frozen=True)
class RunConfig(Section):
    section: ClassVar[str] = "runs.<name>"
    encoder: str = _f(nonempty=True)  # a video encoder (convnext_st, vivit, ...), image (convnext), or authors
    views: list[View] = _f(nonempty=True)
    lr: float = _f(lo=0, lo_open=True)
    size: Literal["tiny", "paper"] = _f()  # encoder sizes (models.*.SIZES)
    batch_size: int = _f(lo=0)  # 0 = train.batch_size
    budget: Literal["epochs", "steps"] = _f()  # epochs: the paper's design; steps: a compute-matched run
    steps: int = _f(lo=0)  # budget steps: this many optimisation steps (0 = train.steps)
    epochs: float = _f(lo=0)  # budget epochs: passes over the run's own training clips (0 = train.epochs)
    seeds: list[int] = _f()  # empty = base.seeds
    exposure_of: str = _f(nonempty=True)  # a run (itself: its own steps), or another run: as many steps as that
    # run needs to see this run's views as often (DVC tracks that run's settings for this run's stage)
    init: str = _f(nonempty=True)  # the video/image tower's start: scratch | ssl | local:PATH (see `init_spec`)

    def validate(self, where: str) -> None:
        kind, _ = init_spec(self.init, f"{where}.init")
        if self.encoder == "authors" and kind != "local":
            raise ConfigError(f"params: '{where}.init' must be local:PATH (the authors' checkpoint file) for "
                              f"encoder authors, got {self.init!r}")
        known = encoders.names("video", "image", "checkpoint")
        if self.encoder not in known:
            raise ConfigError(f"params: '{where}.encoder' {self.encoder!r} is not a known encoder; choose one "
                              f"of {known}")
        if self.batch_size == 1:
            raise ConfigError(f"params: '{where}.batch_size' must be 0 (train.batch_size) or >= 2, got 1")
        _check_seeds(f"{where}.seeds", self.seeds)


def init_spec(value: str, where: str = "init") -> tuple[str, str]:
    """`scratch`, `ssl` or `local:PATH` -> (kind, path); ConfigError naming the key otherwise."""
    if value in ("scratch", "ssl"):
        return value, ""
    if value.startswith("local:") and value[len("local:"):].strip():
        return "local", value[len("local:"):].strip()
    raise ConfigError(f"params: '{where}' must be scratch, ssl or local:PATH (a local weights file or folder), "
                      f"got {value!r}")


@dataclasses.dataclass(frozen=True)
class PretrainConfig(Section):
    """Self-supervised pretraining of a run's video or image encoder on the training patients' clips (init: ssl)."""

    section: ClassVar[str] = "pretrain"
    steps: int = _f(lo=1)
    batch_size: int = _f(lo=2)
    lr: float = _f(lo=0, lo_open=True)
    temperature: float = _f(lo=0, lo_open=True)  # contrastive objective (ConvNeXt encoders)
    mask_ratio: float = _f(lo=0, lo_open=True, hi=0.99)  # masked video autoencoding (ViT encoders), tube masking


@dataclasses.dataclass(frozen=True)
class Fig2Config(Section):
    """The paper's Fig. 2: runs trained from each initialisation, self-supervised at several pretraining sizes."""

    section: ClassVar[str] = "fig2"
    runs: list[str] = _f()  # runs (of `runs:`) trained from each initialisation; MultiVideo is scored on 4CH
    sizes: list[float] = _f()  # fractions of the training patients pretrained on (log-spaced); [] = not run
    seeds: list[int] = _f(nonempty=True)  # seeds of each pretrained run (the scratch point: Table 1's same seeds)
    local: dict[str, dict[str, str]] = _f()  # label -> {run: local weights PATH}, e.g. ImageNet-21k weights

    def validate(self, where: str) -> None:
        if any(not 0 < x <= 1 for x in self.sizes) or len(set(self.sizes)) != len(self.sizes):
            raise ConfigError(f"params: '{where}.sizes' must be distinct fractions in (0, 1], got {self.sizes}")
        _check_seeds(f"{where}.seeds", self.seeds)


@dataclasses.dataclass(frozen=True)
class SweepConfig(Section):
    """The training budget sweep (echolib.sweep): runs trained at multiples of train.epochs, scored on validation."""

    section: ClassVar[str] = "sweep"
    multiples: list[float] = _f()  # multiples of train.epochs (each its own schedule); [] = not run
    runs: list[str] = _f()  # runs (of `runs:`) swept
    seeds: list[int] = _f(nonempty=True)
    tolerance: float = _f(lo=0)  # converged: validation MCMRR/N within this of the run's best over the multiples

    def validate(self, where: str) -> None:
        if any(not x > 0 for x in self.multiples) or len(set(self.multiples)) != len(self.multiples):
            raise ConfigError(f"params: '{where}.multiples' must be distinct positive numbers, got {self.multiples}")
        _check_seeds(f"{where}.seeds", self.seeds)


@dataclasses.dataclass(frozen=True)
class PositiveControlConfig(Section):
    """A supervised classifier per finding on pixels: is each finding measurable from the clips at all?"""

    section: ClassVar[str] = "positive_control"
    encoder: str = _f(nonempty=True)  # a video encoder (see encoders)
    size: Literal["tiny", "paper"] = _f()
    steps: int = _f(lo=0)  # at most this many steps per seed; 0: no positive control
    batch_size: int = _f(lo=2)
    lr: float = _f(lo=0, lo_open=True)
    val_every: int = _f(lo=1)  # validate (AUROC on the validation studies) every this many steps and at the last
    patience: int = _f(lo=0)  # stop after this many validations without a higher AUROC (0: train all the steps)
    seeds: list[int] = _f()  # [] = base.seeds

    def validate(self, where: str) -> None:
        if self.encoder not in encoders.names("video"):
            raise ConfigError(f"params: '{where}.encoder' {self.encoder!r} is not a known video encoder; choose one "
                              f"of {encoders.names('video')}")
        _check_seeds(f"{where}.seeds", self.seeds)


@dataclasses.dataclass(frozen=True)
class EvaluateConfig(Section):
    section: ClassVar[str] = "evaluate"
    n_bootstrap: int = _f(lo=1)
    level: float = _f(lo=0.5, hi=0.999)
    beside: str = _f()  # another pipeline's metrics/table1.json (e.g. the control profile's), shown beside Table 1
    probe_studies: int = _f(lo=0)  # training studies a linear probe of each run's embeddings is fitted on (0: none)


@dataclasses.dataclass(frozen=True)
class ReportConfig(Section):
    section: ClassVar[str] = "report"
    title: str = _f(nonempty=True)


SECTIONS: dict[str, type[Section]] = {
    c.section: c for c in (BaseConfig, SynthConfig, IngestConfig, ViewsConfig, SplitConfig, TextConfig, CacheConfig,
                           TrainConfig, PretrainConfig, PositiveControlConfig, EvaluateConfig, Fig2Config,
                           SweepConfig, ReportConfig)
}


@dataclasses.dataclass(frozen=True)
class Params:
    """The whole of params.yaml, checked: one typed object per section, and the runs by name."""

    base: BaseConfig
    synth: SynthConfig
    ingest: IngestConfig
    views: ViewsConfig
    split: SplitConfig
    text: TextConfig
    cache: CacheConfig
    train: TrainConfig
    runs: dict[str, RunConfig]
    pretrain: PretrainConfig
    positive_control: PositiveControlConfig
    evaluate: EvaluateConfig
    fig2: Fig2Config
    sweep: SweepConfig
    report: ReportConfig


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader refusing a key given twice in one mapping (YAML keeps the last silently; DVC refuses
    the file)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(f"duplicated key {key!r} (lines {seen[key] + 1} and {key_node.start_mark.line + 1}; "
                                  "DVC refuses such a file)")
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    import os

    if os.environ.get(STAGE_PARAMS_ENV):
        raise ConfigError(f"{path}: a process a stage started reads the stage's own parameters (--stage-params), "
                          "never params.yaml: it could depend on a key DVC does not track for that stage")
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no params.yaml here")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not valid UTF-8 text (byte {e.start}); save it as UTF-8") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a mapping of sections")
    return data


def load_runs(params: dict[str, Any]) -> dict[str, RunConfig]:
    runs = params.get("runs")
    if not isinstance(runs, dict) or not runs:
        raise ConfigError("params: section 'runs' must map run names to their settings")
    for name in runs:
        if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"params: run name {name!r} must be letters, digits, '-' or '_'")
    return {name: RunConfig.from_dict(d, f"runs.{name}") for name, d in runs.items()}


def validate(params: dict[str, Any]) -> Params:
    """Check the whole of params.yaml; the first problem is raised as one ConfigError line."""
    unknown = sorted(set(params) - set(SECTIONS) - {"runs"})
    if unknown:
        raise ConfigError(f"params: unknown section(s) {unknown}; known: {sorted([*SECTIONS, 'runs'])}")
    sections = {name: cls.from_dict(params.get(name), name) for name, cls in SECTIONS.items()}
    p = Params(**sections, runs=load_runs(params))
    _check_across(p)
    return p


def _check_across(p: Params) -> None:
    """Settings of different sections that must agree."""
    for name, run in p.runs.items():
        need = encoders.frames(run.encoder, run.size)
        if need > p.cache.frames:
            raise ConfigError(f"params: 'runs.{name}' ({run.encoder}, size {run.size}) takes {need} frames but "
                              f"'cache.frames' stores {p.cache.frames}: raise cache.frames or change the encoder")
        missing = sorted(set(run.views) - set(p.views.keep))
        if missing:
            raise ConfigError(f"params: 'runs.{name}.views' uses {missing}, which 'views.keep' drops "
                              f"(keep: {p.views.keep})")
        other = p.runs.get(run.exposure_of)
        if other is None or (run.exposure_of != name and (other.exposure_of != run.exposure_of
                                                          or not set(run.views) <= set(other.views))):
            raise ConfigError(f"params: 'runs.{name}.exposure_of' must name the run itself ({name!r}: its own steps) "
                              f"or another run whose views include {run.views} and whose exposure_of is its own "
                              f"name; runs: {sorted(p.runs)}")
    for name, run in p.runs.items():
        if run.exposure_of == name and run.budget == "epochs" and not (run.epochs or p.train.epochs):
            raise ConfigError(f"params: 'runs.{name}.budget' is epochs but 'runs.{name}.epochs' and 'train.epochs' "
                              "are both 0; give a number of epochs or budget: steps")
    for run in p.sweep.runs if p.sweep.multiples else []:  # checked when the sweep is to run
        if run not in p.runs:
            raise ConfigError(f"params: 'sweep.runs' names {run!r}, which is not in runs: {sorted(p.runs)}")
        if p.runs[run].budget != "epochs" or p.runs[run].exposure_of != run:
            raise ConfigError(f"params: 'sweep.runs' names {run!r}, whose budget is not in epochs of its own clips")
    if p.sweep.multiples and not p.train.epochs:
        raise ConfigError("params: 'sweep.multiples' multiplies 'train.epochs', which is 0; set train.epochs")
    for run in p.fig2.runs if p.fig2.sizes or p.fig2.local else []:  # checked when Fig. 2 is to run
        if run not in p.runs:
            raise ConfigError(f"params: 'fig2.runs' names {run!r}, which is not in runs: {sorted(p.runs)}")
    for label, by_run in p.fig2.local.items():
        for run, path in by_run.items():
            if run not in p.fig2.runs:
                raise ConfigError(f"params: 'fig2.local.{label}' names run {run!r}, not one of fig2.runs "
                                  f"{p.fig2.runs}")
            if not path:
                raise ConfigError(f"params: 'fig2.local.{label}.{run}' must be a local weights path")
    need = encoders.frames(p.positive_control.encoder, p.positive_control.size)
    if p.positive_control.steps and need > p.cache.frames:
        raise ConfigError(f"params: 'positive_control.encoder' takes {need} frames but 'cache.frames' stores "
                          f"{p.cache.frames}")
    if Path(p.base.data_root) in Path(p.ingest.salt_file).parents:
        raise ConfigError(f"params: 'ingest.salt_file' {p.ingest.salt_file!r} lies inside base.data_root, which each "
                          "run replaces; keep the salt outside (e.g. .echolib-salt)")
    covered = (p.cache.frames - 1) / p.cache.fps
    if p.base.source == "synthetic" and covered > p.synth.seconds:
        raise ConfigError(f"params: 'cache.frames' at 'cache.fps' span {covered:.2f} s, longer than a synthetic clip "
                          f"('synth.seconds' = {p.synth.seconds})")


def load(path: str | Path = "params.yaml") -> Params:
    return validate(load_params(path))


def project_root(start: str | Path | None = None) -> Path:
    """The folder holding dvc.yaml and echolib/, searched upward from `start` (default: the working directory).

    Notebooks run with their own folder or the repository root as working directory (JupyterLab vs the runner);
    both resolve paths from here, never by changing directory.
    """
    here = Path(start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "dvc.yaml").is_file() and (d / "echolib").is_dir():
            return d
    raise FileNotFoundError(f"no echolib project (dvc.yaml + echolib/) found above {here}")


def raw_dir(data_root: str | Path, source: str) -> Path:
    """Where the pipeline's input tables live: the synthesize stage's output or the ingest stage's."""
    return Path(data_root) / ("raw" if source == "synthetic" else "ingested")


# --- profiles ---------------------------------------------------------------------------------------------------

#: The keys a profile sets, with the `default` profile's values (params.yaml as committed holds these; a test
#: checks). `runs.*.KEY` applies to every run in params.yaml.
_DEFAULT: dict[str, Any] = {
    "base.seeds": [0, 1, 2],
    "synth.n_patients": 1700, "synth.size": 64, "synth.seconds": 1.25, "synth.control": False, "synth.quality": 3,
    "synth.report_style": "findings",
    "views.size": 64, "views.epochs": 3, "views.threshold": 0.9,
    "split.train": 0.835, "split.valid": 0.065, "split.test": 0.1, "split.min_valid_4ch": 150,
    "cache.size": 64, "cache.fps": 8.0, "cache.frames": 10, "cache.store": "memmap",
    "text.layers": 1,
    "train.accelerator": "cpu", "train.strategy": "auto", "train.batch_size": 32, "train.steps": 600, "train.epochs": 2.0,
    "train.warmup_steps": 100, "train.val_check_clips": 3200, "train.num_workers": 0, "train.checkpoint_steps": 50,
    "positive_control.size": "tiny", "positive_control.steps": 1500, "pretrain.steps": 150, "pretrain.batch_size": 32,
    "runs.*.size": "tiny", "runs.*.lr": 5e-4,
    "runs.MultiVideo.encoder": "convnext_st", "runs.SingleVideo.encoder": "convnext_st",
    "runs.SingleVideo-exposure.encoder": "convnext_st", "runs.SingleImage.batch_size": 0,
    "runs.MultiVideo-steps.encoder": "convnext_st", "runs.SingleVideo-steps.encoder": "convnext_st",
    "runs.SingleImage-steps.batch_size": 0,
}
#: what each profile changes relative to `default`
_PROFILE_CHANGES: dict[str, dict[str, Any]] = {
    "default": {},
    # a smoke test in minutes: a classifier trained on ~170 clips needs more epochs and cannot be held to 0.9
    "tiny": {"base.seeds": [0], "synth.n_patients": 24, "train.steps": 20, "train.epochs": 1.0, "train.batch_size": 8, "train.val_check_clips": 80,
             "train.checkpoint_steps": 5,
             "train.warmup_steps": 5, "positive_control.steps": 10, "pretrain.steps": 4, "pretrain.batch_size": 4, "views.epochs": 20, "views.threshold": 0.5,
             "split.train": 0.6, "split.valid": 0.2, "split.test": 0.2, "split.min_valid_4ch": 0},
    # the negative control: the default's sizes, every finding static and visible in every view
    "control": {"synth.control": True},
    # the paper: 224 px, 32-frame ViViT-B / ConvNeXt-B / BERT-base, lr 1e-5, 2,000 warm-up steps, batch 16 per
    # GPU (the authors' 64 on 4 GPUs; 576 per GPU for the image model's 2,304), GPUs with DDP, the sharded store
    "paper": {"base.seeds": [0], "synth.n_patients": 20000, "synth.size": 224, "synth.seconds": 1.5, "synth.quality": 2,
              "split.train": 0.875, "split.valid": 0.025,
              "views.size": 224, "cache.size": 224, "cache.fps": 24.0, "cache.frames": 32, "cache.store": "shards",
              "text.layers": 12,
              "train.accelerator": "gpu", "train.strategy": "ddp", "train.batch_size": 16,
              "train.warmup_steps": 2000, "train.steps": 100000, "train.epochs": 10.0, "train.num_workers": 8, "train.checkpoint_steps": 1000,
              "positive_control.size": "paper", "positive_control.steps": 0,
              # self-supervised pretraining of ViViT-B (two views of 32 x 224): batch 32 ran out of memory on an
              # H200, 16 took 78.9 GiB there (benchmarks/gpu_check.py); use 8 on an 80 GB card
              "pretrain.batch_size": 16,
              "runs.*.size": "paper", "runs.*.lr": 1e-5,
              "runs.MultiVideo.encoder": "vivit", "runs.SingleVideo.encoder": "vivit",
              "runs.SingleVideo-exposure.encoder": "vivit",
              "runs.MultiVideo-steps.encoder": "vivit", "runs.SingleVideo-steps.encoder": "vivit",
              "runs.SingleImage.batch_size": 576, "runs.SingleImage-steps.batch_size": 576},
}


def profile_values(profile: str, runs: list[str]) -> dict[str, Any]:
    """Dotted key -> value for everything `profile` sets, with `runs.*` expanded over `runs`."""
    if profile not in _PROFILE_CHANGES:
        raise ConfigError(f"unknown profile {profile!r}; choose one of {list(_PROFILE_CHANGES)}")
    out: dict[str, Any] = {"base.profile": profile}
    for key, value in {**_DEFAULT, **_PROFILE_CHANGES[profile]}.items():
        if key.startswith("runs.*."):
            out.update({f"runs.{r}.{key[7:]}": value for r in runs})
        elif not key.startswith("runs.") or key.split(".")[1] in runs:
            out[key] = value
    return out


def apply_profile(params: dict[str, Any], profile: str) -> dict[str, Any]:
    """A copy of `params` with every value `profile` sets."""
    out = copy.deepcopy(params)
    for key, value in profile_values(profile, list(out.get("runs") or {})).items():
        node = out
        *path, last = key.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def preset(profile: str, section: str) -> Section:
    """A section wholly set by a profile (e.g. `synth`), typed: for tools that take a profile name."""
    prefix = section + "."
    values = {k[len(prefix):]: v for k, v in profile_values(profile, []).items() if k.startswith(prefix)}
    return SECTIONS[section].from_dict(values, section)


def profile_drift(params: dict[str, Any]) -> list[str]:
    """The keys whose values differ from the profile params.yaml names (base.profile): empty when the file is
    that profile as preset; what a report must say besides the profile's name."""
    profile = get(params, "base.profile")
    out = []
    for key, value in profile_values(profile, list(params.get("runs") or {})).items():
        try:
            now = get(params, key)
        except (KeyError, ConfigError):
            now = None
        if now != value:
            out.append(key)
    return out


def params_digest(params: dict[str, Any]) -> str:
    """A short digest of every value of params.yaml (key order and formatting ignored): what ran, in 12 hex."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:12]


def profile_overrides(profile: str, params: dict[str, Any] | None = None) -> list[str]:
    """`-S key=value` arguments for `dvc exp run` that switch every stage to `profile`."""
    runs = list((params or load_params()).get("runs") or {})

    def fmt(v):  # YAML 1.1 reads 1e-05 as a string: keep a decimal point in exponents
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, list):
            return "[" + ",".join(map(str, v)) + "]"
        return f"{v:.1e}" if isinstance(v, float) and abs(v) < 1e-3 else v

    return [a for k, v in profile_values(profile, runs).items() for a in ("-S", f"{k}={fmt(v)}")]


def get(params: dict[str, Any], key: str) -> Any:
    """The value of a dotted key ('views.threshold', 'runs.MultiVideo'); ConfigError naming it when absent."""
    node: Any = params
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"params: '{key}' is not in params.yaml")
        node = node[part]
    return node


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m echolib.config", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="validate params.yaml (unknown keys, types, ranges, names, agreement)")
    c.add_argument("params", nargs="?", default="params.yaml")
    for name, help_ in (("show", "print the effective parameters of a profile"),
                        ("overrides", "print `-S key=value` arguments that switch every stage to a profile")):
        s = sub.add_parser(name, help=help_)
        s.add_argument("profile")
        s.add_argument("--params", default="params.yaml")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "check":
            p = load(a.params)
            print(f"{a.params}: ok (profile {p.base.profile}, source {p.base.source}, runs {list(p.runs)})")
        elif a.cmd == "show":
            eff = apply_profile(load_params(a.params), a.profile)
            validate(eff)
            print(yaml.safe_dump(eff, allow_unicode=True, sort_keys=False), end="")
        else:
            print(" ".join(profile_overrides(a.profile, load_params(a.params))))
    except ConfigError as e:
        print(f"error: {for_terminal(e)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

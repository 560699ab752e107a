"""The stage runner and the one way a stage notebook gets its parameters.

    python -m echolib.stage NAME            run one dvc.yaml stage (foreach stages as NAME@KEY: train@MultiVideo)

The runner validates the whole params.yaml first, reads the params the stage lists in dvc.yaml, passes them to
the stage's notebook as papermill parameters (one per params section: mappings and lists as themselves, only
the listed keys), executes it in the project's kernel and writes the executed notebook (the stage's .ipynb out in dvc.yaml) and its
offline HTML beside it. Of `synthesize` and `ingest`, the one `base.source` does not select is a recorded skip:
placeholder outputs and a page that says why, exit 0.

A notebook's parameters cell holds `None` for each section and `outputs = "scratch"`; its first code cell calls
`context(...)`. Run by the runner, the context holds the injected values and writes the pipeline's outputs.
Opened in JupyterLab, it reads params.yaml's current values the same way and writes to scratch/, so a notebook
explored by hand never replaces what `dvc repro` made. Reading a key the stage does not list in dvc.yaml is an
error, so a stage cannot depend on a parameter DVC does not track.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import shutil
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

import yaml

from . import config as C
from .io.files import write_json
from .io.safe import for_terminal
from .kernel import KERNEL
from .progress import ENV as PROGRESS_ENV
from .progress import Relay

SCRATCH = Path("scratch")
STAGING = Path(".stage")  # a stage writes here; its declared outputs are swapped into place when it succeeds
#: stages whose work an interrupted attempt leaves for the next one to resume (their staging is kept)
RESUMABLE = {"cache", "train"}
#: stages that only one kind of data source runs
SOURCE_STAGES = {"synthesize": lambda source: source == "synthetic", "ingest": lambda source: source != "synthetic"}
#: the stage that makes the report site (reports/site: its own page for readers, without code, and every other
#: stage's page from its executed notebook, code folded); after its notebook ran, the runner calls
#: `build_site` of this module (so that only this stage depends on the site's code and templates)
SITE_STAGES = {"report": "echolib.site"}
#: parameters whose values are a user's own paths (an archive folder may be named after a patient): written on no
#: page or executed notebook, where `<key>` stands in their place
PRIVATE_KEYS = ("ingest.src", "ingest.reports", "ingest.salt_file")


class StageError(RuntimeError):
    """A stage cannot run or failed; the message is one line naming the stage and why."""


@dataclasses.dataclass(frozen=True)
class StageSpec:
    name: str  # as dvc names it: synthesize, train@MultiVideo
    stage: str  # the dvc.yaml key: train
    key: str | None  # the foreach item: MultiVideo
    notebook: Path  # relative to the project root
    page: Path  # the executed notebook, relative to the project root
    params: tuple[str, ...]  # dotted params.yaml keys the stage lists, `${key}` resolved
    outs: tuple[str, ...]  # outputs as listed (interpolations left as written)
    metrics: tuple[str, ...]

    @property
    def sections(self) -> list[str]:
        return list(dict.fromkeys(p.split(".")[0] for p in self.params))

    @property
    def html(self) -> Path:
        """Its page in the report site (made by the report stage): the site's first page for the site's own stage,
        reports/site/stages/<executed notebook>.html for every other."""
        return Path("reports/site/index.html") if self.stage in SITE_STAGES else \
            Path("reports/site/stages") / f"{self.page.stem}.html"


def dvc_stages(root: Path) -> dict[str, dict]:
    return yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def _entries(items) -> list[str]:
    return [next(iter(i)) if isinstance(i, dict) else str(i) for i in items or []]


def spec(name: str, root: Path, params: dict | None = None) -> StageSpec:
    """The dvc.yaml definition of stage `name` (`train@MultiVideo` for a foreach stage)."""
    stage, _, key = name.partition("@")
    stages = dvc_stages(root)
    if stage not in stages:
        raise StageError(f"no stage {stage!r} in dvc.yaml; stages: {sorted(stages)}")
    body, item = stages[stage], {}
    if "foreach" in body:
        items = C.get(params if params is not None else C.load_params(root / "params.yaml"),
                      body["foreach"].strip("${} "))
        if key not in items:
            raise StageError(f"stage {stage!r} runs once per item of {body['foreach']}: name one as {stage}@ITEM "
                             f"with ITEM in {list(items)}")
        body, item = body["do"], items[key] if isinstance(items, dict) else {}
    elif key:
        raise StageError(f"stage {stage!r} is not a foreach stage: run it as {stage!r}")

    def sub(s: str) -> str:  # DVC's ${key} and ${item.FIELD} in a foreach stage
        s = s.replace("${key}", key) if key else s
        return re.sub(r"\$\{item\.(\w+)\}", lambda m: str(item[m.group(1)]), s)

    notebooks = [d for d in _entries(body.get("deps")) if re.fullmatch(r"notebooks/[^/]+\.ipynb", d)]
    outs = tuple(sub(o) for o in _entries(body.get("outs")))
    pages = [o for o in outs if o.endswith(".ipynb")]
    if len(notebooks) != 1 or len(pages) != 1:
        raise StageError(f"stage {stage!r}: dvc.yaml must list one notebooks/*.ipynb among its deps and one "
                         "executed .ipynb among its outs")
    return StageSpec(name, stage, key or None, Path(notebooks[0]), Path(pages[0]),
                     tuple(dict.fromkeys(sub(p) for p in _entries(body.get("params")))), outs,
                     tuple(sub(m) for m in _entries(body.get("metrics"))))


def stage_names(root: Path, params: dict | None = None) -> list[str]:
    """Every stage as dvc names it, in dvc.yaml order, foreach stages expanded over their items."""
    params = params if params is not None else C.load_params(root / "params.yaml")
    out = []
    for name, body in dvc_stages(root).items():
        if "foreach" in body:
            out += [f"{name}@{k}" for k in C.get(params, body["foreach"].strip("${} "))]
        else:
            out.append(name)
    return out


def injected(sp: StageSpec, params: dict) -> dict[str, Any]:
    """The listed params grouped by section: {"base": {"seed": 0, ...}, "runs": {"MultiVideo": {...}}}."""
    out: dict[str, Any] = {}
    for key in sp.params:
        section, *rest = key.split(".")
        value = copy.deepcopy(C.get(params, key))
        if not rest:
            out[section] = value
            continue
        node = out.setdefault(section, {})
        for part in rest[:-1]:
            node = node.setdefault(part, {})
        node[rest[-1]] = value
    return out


# --- the notebook side ---------------------------------------------------------------------------------------


class SectionView:
    """Read-only access to the listed keys of one params section, typed as its Section class. Reading a key
    the stage does not list raises ConfigError naming it; the section class's properties and methods work."""

    def __init__(self, cls: type[C.Section], values: dict[str, Any], where: str, stage: str):
        for k, v in values.items():
            cls.check_value(k, v, where)
        object.__setattr__(self, "_cls", cls)
        object.__setattr__(self, "_values", dict(values))
        object.__setattr__(self, "_where", where)
        object.__setattr__(self, "_stage", stage)

    def __getattr__(self, name: str):
        if name.startswith("_"):  # private and dunder lookups (pickling, copying) never reach the params
            raise AttributeError(name)
        values, cls = self._values, self._cls
        if name in values:
            return values[name]
        attr = getattr(cls, name, None)
        if isinstance(attr, property):
            return attr.fget(self)
        if callable(attr) and not name.startswith("_"):
            return types.MethodType(attr, self)
        if name in {f.name for f in dataclasses.fields(cls)}:
            raise C.ConfigError(f"stage '{self._stage}' reads '{self._where}.{name}', which its params: list in "
                                "dvc.yaml does not name (add it there)")
        raise AttributeError(name)

    def __setattr__(self, name, value):
        raise AttributeError("parameters are read-only")

    def to_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def replace(self, **changes) -> SectionView:
        """A copy with `changes` (checked like params.yaml's values), e.g. a run trained from another init."""
        return SectionView(self._cls, {**self._values, **changes}, self._where, self._stage)

    def __repr__(self) -> str:
        return f"{self._where}{self._values}"


@dataclasses.dataclass
class Context:
    """What a stage notebook works with: its parameters, where to read and where to write."""

    spec: StageSpec
    root: Path
    params: dict[str, Any]  # the listed keys, grouped by section (what the runner injects)
    pipeline: bool  # True: write the pipeline's outputs; False: write under scratch/

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def key(self) -> str | None:
        return self.spec.key

    def __getattr__(self, section: str):
        if section.startswith("_") or section not in {*C.SECTIONS, "runs"}:
            raise AttributeError(section)
        if section not in self.params:
            raise C.ConfigError(f"stage '{self.spec.name}' reads params section '{section}', which its params: "
                                "list in dvc.yaml does not name")
        if section == "runs":
            return {n: SectionView(C.RunConfig, v, f"runs.{n}", self.spec.name) for n, v in self.params["runs"].items()}
        return SectionView(C.SECTIONS[section], self.params[section], section, self.spec.name)

    @property
    def run(self) -> SectionView:
        """The settings of this foreach stage's run (runs.KEY)."""
        return self.runs[self.spec.key]

    @property
    def data(self) -> Path:
        """The pipeline's data folder (inputs are always read from here)."""
        return self.root / self.base.data_root

    @property
    def raw(self) -> Path:
        """The input tables: the synthesize stage's output or the ingest stage's."""
        return self.root / C.raw_dir(self.base.data_root, self.base.source)

    @property
    def out_root(self) -> Path:
        """Where outputs go: the runner's staging folder (swapped into place on success), the project when a
        stage function is called directly, scratch/ when the notebook is explored by hand."""
        if not self.pipeline:
            return self.root / SCRATCH
        staged = os.environ.get("ECHOLIB_STAGE_OUT")
        return Path(staged) if staged else self.root

    def out(self, *parts: str) -> Path:
        """Where this stage writes data: data/... in the pipeline, scratch/data/... when explored by hand."""
        return self.out_root / self.base.data_root / Path(*parts)

    def metrics_path(self, name: str) -> Path:
        return self.out_root / "metrics" / f"{name}.json"

    def write_metrics(self, name: str, metrics: dict) -> dict:
        """metrics/NAME.json (NAME may hold a folder: 'train/MultiVideo'); returns `metrics` as a dict that displays
        as a table (echolib.display.Fields)."""
        from .display import Fields

        write_json(self.metrics_path(name), metrics)
        return Fields(metrics)

    def save_params(self, folder: str | Path) -> Path:
        """The stage's parameters (its listed keys only, already checked) in FOLDER/stage-params.json: what a
        subprocess the stage starts reads instead of params.yaml (`load_context`)."""
        path = Path(folder) / "stage-params.json"
        write_json(path, {"stage": self.spec.name, "root": str(self.root), "pipeline": self.pipeline,
                          "params": self.params})
        return path

    def run_module(self, module: str, *args) -> None:
        """`python -m module --stage-params FILE args...` in the project folder: the subprocess gets this stage's
        parameters and nothing else (it may not read params.yaml: `config.load_params` refuses there)."""
        from .proc import run_module

        with tempfile.TemporaryDirectory(prefix="echolib-params-") as folder:
            run_module(module, "--stage-params", self.save_params(folder), *args, cwd=self.root,
                       env={C.STAGE_PARAMS_ENV: "1"}, shown=self.by_hand(module, *args))

    def by_hand(self, module: str, *args) -> list[str]:
        """The command a reader can paste in the project folder to do what `run_module(module, *args)` does: the
        project's params.yaml instead of the runner's temporary file, paths inside the staging folder as where the
        stage puts them (relative to the project)."""
        out = []
        for a in map(str, args):
            for base in (self.out_root, self.root):
                if Path(a).is_absolute() and Path(a).is_relative_to(base):
                    a = Path(a).relative_to(base).as_posix() or "."
                    break
            out.append(a)
        return ["-m", module, "--params", "params.yaml", *out]

    def note(self) -> str:
        """One line saying where this run writes (shown at the top of every stage page)."""
        where = "the pipeline's outputs" if self.pipeline else f"scratch/ (not the pipeline's outputs: {SCRATCH}/)"
        return f"stage {self.spec.name}: writing to {where}"


def stage_context(stage: str, key: str | None = None, root: str | Path | None = None,
                  params_file: str | Path | None = None) -> Context:
    """The parameters of `stage` (its listed keys of params.yaml, which is checked as a whole) for a command run by
    hand outside a notebook, e.g. `python -m echolib.train --run RUN` as the stage train@RUN sees them.
    `params_file`: another file in params.yaml's format (default: the project's params.yaml)."""
    root = Path(root).resolve() if root else C.project_root()
    params = C.load_params(params_file or root / "params.yaml")
    C.validate(params)
    sp = spec(f"{stage}@{key}" if key else stage, root, params)
    ctx = Context(sp, root, injected(sp, params), True)
    for section in ctx.params:
        _ = getattr(ctx, section)
    return ctx


def load_context(path: str | Path) -> Context:
    """The context a stage's subprocess was given (`Context.save_params`): the stage's listed keys only."""
    from .io.files import read_json

    saved = read_json(path)
    root = Path(saved["root"])
    sp = spec(saved["stage"], root, {"runs": saved["params"].get("runs")} if "@" in saved["stage"] else None)
    ctx = Context(sp, root, saved["params"], saved["pipeline"])
    for section in ctx.params:  # checked again, as a notebook's injected values are
        _ = getattr(ctx, section)
    return ctx


def context(stage: str, outputs: str = "scratch", key: str | None = None, root: str | Path | None = None,
            **sections: Any) -> Context:
    """The parameters and paths of `stage` for its notebook (or for a test calling a stage's entry function).

    `sections` are the notebook's parameters (None when not injected). With none injected (JupyterLab), the
    stage's listed keys are read from params.yaml, checked as a whole; `key` None then means the first run.
    `root`: the project folder (default: found above the working directory)."""
    from .display import setup_notebook

    if outputs not in ("scratch", "pipeline"):
        raise C.ConfigError(f"outputs must be 'scratch' or 'pipeline', got {outputs!r}")
    setup_notebook()
    root = Path(root).resolve() if root else C.project_root()
    given = {k: v for k, v in sections.items() if v is not None}
    params = None
    if not given:
        params = C.load_params(root / "params.yaml")
        C.validate(params)
        if key is None and "foreach" in dvc_stages(root).get(stage, {}):
            key = next(iter(params["runs"]))
    sp = spec(f"{stage}@{key}" if key else stage, root, params if params is not None else {"runs": given.get("runs")})
    values = injected(sp, params) if params is not None else given
    missing = sorted(set(sp.sections) - set(values))
    if missing:
        raise C.ConfigError(f"stage '{sp.name}': parameters for section(s) {missing} were not given")
    ctx = Context(sp, root, values, outputs == "pipeline")
    for section in values:  # every given value is checked now, not when first read
        _ = getattr(ctx, section)
    print(ctx.note())
    return ctx


# --- the runner -------------------------------------------------------------------------------------------------


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _ipc_kernel_manager(ip: Path):
    """The kernel manager class papermill starts the stage's kernel with: local IPC sockets under `ip` (a private
    temporary folder) instead of TCP on localhost, so nothing listens on the network and the kernel has nothing to
    warn about."""
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import Unicode

    class IPCKernelManager(AsyncKernelManager):
        transport = Unicode("ipc")

        def __init__(self, **kw):
            super().__init__(**kw)
            self.ip = str(ip)

    return IPCKernelManager


def _kernel() -> str:
    from jupyter_client.kernelspec import KernelSpecManager

    return KERNEL if KERNEL in KernelSpecManager().find_kernel_specs() else "python3"


def _skip(sp: StageSpec, staging: Path, source: str, params: dict, root: Path) -> None:
    """Placeholder outputs of a data stage `base.source` does not select, and a page saying so (titled as the
    stage's notebook is)."""
    import nbformat

    note = (f"Not selected: `base.source` is `{source}`, so the "
            f"{'ingest' if source != 'synthetic' else 'synthesize'} stage provides the data.")
    for out in _outputs(sp, params):
        if out.endswith(".json"):
            write_json(staging / out, {"selected": False, "source": source})
        elif not out.startswith("reports/"):
            (staging / out).mkdir(parents=True, exist_ok=True)
            (staging / out / "NOT_SELECTED").write_text(note + "\n")
    first = nbformat.read(root / sp.notebook, as_version=4).cells[0].source.splitlines()
    title = next((line for line in first if line.startswith("# ")), f"# {sp.notebook.stem}")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"{title} (not selected)\n\n{note}")])
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": KERNEL, "language": "python"}
    (staging / sp.page).parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, staging / sp.page)


def _outputs(sp: StageSpec, params: dict) -> list[str]:
    """The stage's declared outputs and metrics, interpolations resolved."""
    data_root = C.get(params, "base.data_root")
    return [o.replace("${base.data_root}", data_root) for o in (*sp.outs, *sp.metrics)]


def redact(notebook: Path, params: dict, root: Path) -> None:
    """Rewrite an executed notebook with every PRIVATE_KEYS value (as written and as an absolute path) replaced by
    `<key>` wherever it appears: cells, outputs, and papermill's record of the parameters in its metadata; the
    project's own absolute path (papermill records the notebook's input and output paths) written relative."""
    subs = {}
    for key in PRIVATE_KEYS:
        value = C.get(params, key)
        if value:
            for form in {str((root / value).resolve()), str(root / value), value}:
                subs[form] = f"<{key}>"
    for staged in (root / STAGING / notebook.relative_to(root / STAGING).parts[0], root):
        subs[str(staged) + os.sep] = ""
        subs.setdefault(str(staged), ".")
    subs = dict(sorted(subs.items(), key=lambda kv: -len(kv[0])))  # the longest form first
    pattern = re.compile("|".join(re.escape(s) for s in subs))

    def clean(node):
        if isinstance(node, str):
            return pattern.sub(lambda m: subs[m.group()], node)
        if isinstance(node, list):
            return [clean(v) for v in node]
        if isinstance(node, dict):
            return {k: clean(v) for k, v in node.items()}
        return node

    nb = json.loads(notebook.read_text(encoding="utf-8"))
    notebook.write_text(json.dumps(clean(nb), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


JOURNAL = "PUBLISH.json"  # in a staging folder: the commit point of a stage whose outputs are all complete


def _publish(sp: StageSpec, root: Path, staging: Path, params: dict) -> None:
    """Swap every declared output from the staging folder into place; refuse if one is missing (nothing moved).

    Several outputs cannot be renamed at once, so the list is first written to a journal in the staging folder
    (the commit point): a kill before it leaves every previous output as it was; a kill after it, between two
    renames, is finished by `recover` when the next stage starts (all new outputs are complete by then)."""
    from .io.files import write_json

    outs = _outputs(sp, params)
    missing = [o for o in outs if not (staging / o).exists()]
    if missing:
        raise StageError(f"stage {sp.name} did not write its declared output(s) {missing}; previous outputs kept")
    write_json(staging / JOURNAL, {"stage": sp.name, "outputs": outs})
    _finish(root, staging)


def _finish(root: Path, staging: Path) -> None:
    from .io.files import remove_path, swap_into_place

    for o in json.loads((staging / JOURNAL).read_text())["outputs"]:
        if (staging / o).exists() or (staging / o).is_symlink():  # not swapped yet
            swap_into_place(staging / o, root / o)
        remove_path((root / o).with_name(f".{(root / o).name}.old"))  # swapped; the previous one not yet removed
    shutil.rmtree(staging)


def recover(root: Path) -> list[str]:
    """Finish every publication that a kill interrupted after its commit point; returns the stages finished."""
    done = []
    for journal in sorted((root / STAGING).glob(f"*/{JOURNAL}")):
        _finish(root, journal.parent)
        done.append(journal.parent.name)
    return done


def run(name: str, root: str | Path | None = None, log_output: bool = False) -> Path:
    """Execute stage `name`: check params.yaml, inject the listed params, write the page and its HTML.

    Everything is written to a staging folder (.stage/NAME) first and swapped into place only when the stage
    succeeds, so a failure or a kill at any point leaves the previous outputs as they were."""
    import papermill as pm

    root = Path(root).resolve() if root else C.project_root()
    params = C.load_params(root / "params.yaml")
    C.validate(params)
    sp = spec(name, root, params)
    for finished in recover(root):
        print(f"stage {finished}: an interrupted publication of its outputs was finished")
    staging = root / STAGING / sp.name
    if sp.stage not in RESUMABLE:
        shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True, exist_ok=True)
    source = C.get(params, "base.source")
    if sp.stage in SOURCE_STAGES and not SOURCE_STAGES[sp.stage](source):
        _skip(sp, staging, source, params, root)
        _publish(sp, root, staging, params)
        print(f"stage {sp.name}: not selected by base.source = {source!r}; placeholders written")
        return root / sp.page
    page = staging / sp.page
    page.parent.mkdir(parents=True, exist_ok=True)
    parameters = {**injected(sp, params), "outputs": "pipeline", **({"key": sp.key} if sp.key else {})}
    print(f"stage {sp.name}: {sp.notebook} -> {sp.page}", flush=True)
    # the kernel inherits these: the notebook's context writes to staging, progress bars write to the relay's file
    env = {"ECHOLIB_STAGE_OUT": str(staging), PROGRESS_ENV: str(staging / "progress.log"), "TQDM_DISABLE": "1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    t0 = time.time()
    try:
        with Relay(staging / "progress.log", sp.name), tempfile.TemporaryDirectory(prefix="echolib-k") as sock:
            pm.execute_notebook(str(root / sp.notebook), str(page), parameters=parameters, kernel_name=_kernel(),
                                cwd=str(root), log_output=log_output, progress_bar=False,
                                kernel_manager_class=_ipc_kernel_manager(Path(sock) / "kernel"))
    except pm.PapermillExecutionError as e:
        first = str(e.evalue).splitlines()[0] if e.evalue else ""
        raise StageError(f"stage {sp.name} failed in cell {e.exec_count}: {e.ename}: {first} (the executed "
                         f"notebook: {page.relative_to(root)}; previous outputs kept)") from None
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    (staging / "progress.log").unlink(missing_ok=True)
    redact(page, params, root)
    print(f"stage {sp.name}: done in {_minutes(time.time() - t0)}", flush=True)
    if sp.stage in SITE_STAGES:  # the site: this stage's page and every other stage's, from the executed notebooks
        import importlib

        importlib.import_module(SITE_STAGES[sp.stage]).build_site(root, staging, sp, params)
    _publish(sp, root, staging, params)
    return root / (sp.html if sp.stage in SITE_STAGES else sp.page)


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m echolib.stage", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", nargs="?", help="a stage of dvc.yaml (train@RUN for a foreach stage)")
    ap.add_argument("--list", action="store_true", help="print every stage name and exit")
    ap.add_argument("--log-output", action="store_true", help="stream the notebook's output to the terminal")
    a = ap.parse_args(argv)
    try:
        root = C.project_root()
        if a.list or not a.name:
            print("\n".join(stage_names(root)))
            return 0
        print(run(a.name, root, a.log_output).relative_to(root))
    except (C.ConfigError, StageError, FileNotFoundError) as e:
        print(f"error: {for_terminal(e)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

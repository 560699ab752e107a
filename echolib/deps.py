"""The code each dvc.yaml stage runs, derived from the imports, and its `deps:` kept exactly that.

    python -m echolib.deps            rewrite the echolib entries of every stage's deps in dvc.yaml
    python -m echolib.deps --check    list the stages whose deps differ (exit 1), write nothing

A stage runs the runner (`echolib.stage`), its notebook's imports and everything they import (imports inside
functions included: a lazy import still runs), the modules it starts with `run_module("echolib....")`, the
module the runner calls after the site's stage (`stage.SITE_STAGES`) and the data files a module reads
(`DATA_FILES`). Those files, and no other echolib file, are the stage's echolib deps: a change to a module
reruns exactly the stages that run it (editing the report page's code reruns the report stage alone). Other deps
(the notebook, data folders, metrics) are kept as written.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RUNNER = "echolib.stage"
#: files a module reads besides Python code
DATA_FILES = {"echolib.site": ("echolib/templates",)}


def module_file(name: str, root: Path = ROOT) -> Path:
    base = root / Path(*name.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def _resolve(current: str, node: ast.ImportFrom, root: Path) -> list[str]:
    if node.level:
        pkg = current.split(".")
        pkg = pkg if module_file(current, root).name == "__init__.py" else pkg[:-1]
        pkg = pkg[: len(pkg) - (node.level - 1)]
        base = ".".join(pkg + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    names = [base] + [f"{base}.{a.name}" for a in node.names]
    return [n for n in names if n.startswith("echolib") and module_file(n, root).is_file()]


def imports_of(tree: ast.AST, current: str = "", root: Path = ROOT) -> set[str]:
    """echolib modules a piece of code imports anywhere (functions included) or starts with run_module."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("echolib")}
        elif isinstance(node, ast.ImportFrom):
            out |= set(_resolve(current, node, root))
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "run_module":
            if node.args and isinstance(node.args[0], ast.Constant) and str(node.args[0].value).startswith("echolib"):
                out.add(node.args[0].value)
    return out


def closure(start: set[str], root: Path = ROOT) -> set[str]:
    """Every module reachable from `start`, with the packages whose __init__ runs on the way."""
    seen: set[str] = set()
    todo = list(start)
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__
            mod = ".".join(parts[:i])
            if mod in seen or not module_file(mod, root).is_file():
                continue
            seen.add(mod)
            todo += sorted(imports_of(ast.parse(module_file(mod, root).read_text()), mod, root))
    return seen


def notebook_imports(notebook: Path) -> set[str]:
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    return imports_of(ast.parse(code))


def stage_modules(stage: str, notebook: Path, root: Path = ROOT) -> set[str]:
    """The echolib modules stage `stage` (a dvc.yaml key) runs, from its notebook."""
    from .stage import SITE_STAGES

    start = notebook_imports(root / notebook) | {RUNNER}
    if stage in SITE_STAGES:
        start.add(SITE_STAGES[stage])
    return closure(start, root)


def code_deps(stage: str, notebook: Path, root: Path = ROOT) -> list[str]:
    """The echolib files (and data folders) stage `stage` runs, sorted, as dvc.yaml lists them."""
    mods = stage_modules(stage, notebook, root)
    files = {module_file(m, root).relative_to(root).as_posix() for m in mods}
    files |= {f for m in mods for f in DATA_FILES.get(m, ())}
    return sorted(files)


def _bodies(root: Path) -> dict[str, dict]:
    stages = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    return {name: body.get("do", body) for name, body in stages.items()}


def _notebook(deps: list[str]) -> str:
    return next(d for d in deps if re.fullmatch(r"notebooks/[^/]+\.ipynb", d))


def expected(root: Path = ROOT) -> dict[str, list[str]]:
    """Every stage's deps as they should be: its notebook, its echolib code, then its other deps as written."""
    out = {}
    for name, body in _bodies(root).items():
        deps = [str(d) for d in body.get("deps", [])]
        nb = _notebook(deps)
        others = [d for d in deps if d != nb and not d.startswith("echolib/") and d != "echolib"]
        out[name] = [nb, *code_deps(name, Path(nb), root), *others]
    return out


def differences(root: Path = ROOT) -> dict[str, dict[str, list[str]]]:
    """Per stage whose echolib deps are not exactly the code it runs: what is missing and what is extra."""
    out = {}
    want = expected(root)
    for name, body in _bodies(root).items():
        have = {str(d) for d in body.get("deps", []) if str(d).startswith("echolib")}
        code = {d for d in want[name] if d.startswith("echolib")}
        if have != code:
            out[name] = {"missing": sorted(code - have), "extra": sorted(have - code)}
    return out


def _flow(items: list[str], indent: int, width: int = 118) -> str:
    """A YAML flow list wrapped at `width`, continuation lines under the first item."""
    lines, line = [], "["
    for i, item in enumerate(items):
        text = json.dumps(item) if any(c in item for c in "${}:#,[]") else item
        piece = text + ("]" if i == len(items) - 1 else ",")
        if len(line) + 1 + len(piece) + indent > width and line != "[":
            lines.append(line)
            line = " " * (indent + 1) + piece
        else:
            line = line + ("" if line.endswith("[") else " ") + piece
    lines.append(line)
    return "\n".join(lines)


def write(root: Path = ROOT) -> list[str]:
    """Rewrite each stage's `deps: [...]` in dvc.yaml (comments and everything else kept); returns the stages
    changed."""
    text = (root / "dvc.yaml").read_text(encoding="utf-8")
    want = expected(root)
    changed = []
    pattern = re.compile(r"^(?P<pad> +)deps: \[(?P<body>[^\]]*)\]", re.M)
    names = iter(_bodies(root))
    out, last = [], 0
    for m, name in zip(pattern.finditer(text), names, strict=True):
        current = yaml.safe_load("[" + m.group("body") + "]")
        if [str(d) for d in current] != want[name]:
            changed.append(name)
        prefix = f"{m.group('pad')}deps: "
        out += [text[last:m.start()], prefix + _flow(want[name], len(prefix))]
        last = m.end()
    new = "".join(out) + text[last:]
    if new != text:
        (root / "dvc.yaml").write_text(new, encoding="utf-8")
    return changed


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m echolib.deps", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="only list the stages whose deps differ (exit 1 if any)")
    a = ap.parse_args(argv)
    if a.check:
        diff = differences()
        for name, d in diff.items():
            print(f"{name}: missing {d['missing']}, extra {d['extra']}")
        return 1 if diff else 0
    changed = write()
    print(f"dvc.yaml: deps of {changed} rewritten" if changed else "dvc.yaml: every stage's deps already exact")
    return 0


if __name__ == "__main__":
    sys.exit(main())

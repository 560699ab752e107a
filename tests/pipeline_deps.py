"""The `echolib` modules a stage runs: its notebook's imports, followed through every module they import (lazy
imports inside functions included), plus the modules it starts with `run_module("echolib....")` and the stage
runner itself. Used by test_pipeline to check that dvc.yaml's deps cover them."""

from __future__ import annotations

import ast
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNNER = "echolib.stage"


def module_file(name: str) -> Path:
    base = ROOT / Path(*name.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def _resolve(current: str, node: ast.ImportFrom) -> list[str]:
    if node.level:
        pkg = current.split(".")
        is_pkg = module_file(current).name == "__init__.py"
        pkg = pkg if is_pkg else pkg[:-1]
        pkg = pkg[: len(pkg) - (node.level - 1)]
        base = ".".join(pkg + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    names = [base] + [f"{base}.{a.name}" for a in node.names]
    return [n for n in names if n.startswith("echolib") and module_file(n).is_file()]


def imports_of(tree: ast.AST, current: str = "") -> set[str]:
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("echolib")}
        elif isinstance(node, ast.ImportFrom):
            out |= set(_resolve(current, node))
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "run_module":
            if node.args and isinstance(node.args[0], ast.Constant) and str(node.args[0].value).startswith("echolib"):
                out.add(node.args[0].value)
    return out


def closure(start: set[str]) -> set[str]:
    """Every module reachable from `start`, with the packages whose __init__ runs on the way."""
    seen: set[str] = set()
    todo = list(start)
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__
            mod = ".".join(parts[:i])
            if mod in seen or not module_file(mod).is_file():
                continue
            seen.add(mod)
            todo += sorted(imports_of(ast.parse(module_file(mod).read_text()), mod))
    return seen


def notebook_closure(notebook: Path) -> set[str]:
    nb = json.loads(notebook.read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    return closure(imports_of(ast.parse(code)) | {RUNNER})


def covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(ROOT).as_posix()
    return any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in deps)

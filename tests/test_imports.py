"""The library's import graph: no circle, at module level or inside functions (a lazy import hides a circle; it
does not remove it), and the helpers every loop shares are leaves."""

from __future__ import annotations

import ast

from echolib.deps import ROOT, imports_of


def import_graph() -> dict[str, set[str]]:
    """echolib module -> the echolib modules it imports anywhere in its file (a package: its __init__)."""
    mods = {}
    for p in sorted((ROOT / "echolib").rglob("*.py")):
        parts = p.relative_to(ROOT).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return {m: {d for d in imports_of(ast.parse(p.read_text()), m) if d in mods and d != m} for m, p in mods.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circle_in_echolib():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_sees_a_function_level_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    src = "def f():\n    from .train import x\n"
    assert imports_of(ast.parse(src), "echolib.pretrain") == {"echolib.train"}


def test_shared_helpers_are_leaves():
    graph = import_graph()
    for leaf in ("echolib.accel", "echolib.stats", "echolib.io.safe", "echolib.io.weights", "echolib.curves"):
        assert graph[leaf] == set(), (leaf, graph[leaf])

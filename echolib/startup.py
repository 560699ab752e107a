"""Start-up time of every process a stage runs: a deferred import that changes no behaviour.

`jsonschema` (imported by nbformat, hence papermill, and by altair) loads every format checker it can find when it
is imported. With `rfc3987-syntax` installed (nbformat asks for `jsonschema[format-nongpl]`), that import compiles
about 35 Earley parsers of RFC 3987's grammar with lark: 1.8-2 s on this 2-core machine, in the stage runner and
again in the notebook's kernel, on every stage, for the `iri` formats that no schema of ours, Jupyter's or
Vega-Lite's uses (upstream: python-jsonschema/jsonschema#1428). `defer_rfc3987_syntax` puts a stand-in module in
its place whose functions load the real one on first use, so an IRI is still checked exactly as before, only the
grammar is compiled when a schema first asks for it. Measured in `benchmarks/startup.py`.

`import echolib` applies it (before papermill or altair is imported by anything of ours), and the notebook kernel
`make setup` registers starts through `python -m echolib.kernel`, which applies it before the first cell runs.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

DEFERRED = "rfc3987_syntax"


def defer_rfc3987_syntax() -> bool:
    """Replace `rfc3987_syntax` by a stand-in that imports the real module at its first attribute access.
    Returns whether the stand-in was installed (not when the module is absent or already imported)."""
    if DEFERRED in sys.modules:
        return False
    try:
        spec = importlib.util.find_spec(DEFERRED)
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    stub = types.ModuleType(DEFERRED, "stand-in for rfc3987_syntax: the real module loads at first use")
    stub.__spec__ = spec
    real: list[types.ModuleType] = []

    def load() -> types.ModuleType:
        if not real:
            if sys.modules.get(DEFERRED) is stub:
                del sys.modules[DEFERRED]
            real.append(importlib.import_module(DEFERRED))
        return real[0]

    def is_valid_syntax(term: str, value: str) -> bool:
        """rfc3987_syntax.is_valid_syntax, loaded on first call."""
        return load().is_valid_syntax(term, value)

    def __getattr__(name: str):  # PEP 562: any other name is the real module's
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(load(), name)

    stub.is_valid_syntax = is_valid_syntax
    stub.__getattr__ = __getattr__
    sys.modules[DEFERRED] = stub
    return True

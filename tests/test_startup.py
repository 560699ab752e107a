"""echolib.startup: the deferred rfc3987_syntax import saves its grammar's compilation in every process a stage
starts (runner, kernel) and changes nothing a schema check answers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from echolib.lab import kernel_argv

IRIS = ["http://例え.jp/a", "http://例え.jp/a b", "http://example.com/a?q=1#f", "a:b", "//host/path", "", "http://[::1]/",
        "http://exa mple.com", "mailto:someone@example.com", "urn:isbn:0451450523", "%zz"]
CHECK = f"""
import json, sys
import jsonschema
fc = jsonschema.FormatChecker()
res = {{f: [fc.conforms(s, f) for s in {IRIS!r}] for f in ("iri", "iri-reference")}}
print(json.dumps({{"lark_after_import": LARK, "answers": res}}))
"""


def _run(first: str) -> dict:
    code = first + "\nimport nbformat, altair\nLARK = 'lark' in sys.modules\n" + CHECK
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def test_importing_echolib_first_defers_the_grammar_and_answers_alike():
    pytest.importorskip("rfc3987_syntax")
    plain, ours = _run("import sys"), _run("import sys, echolib")
    assert plain["lark_after_import"] is True  # the reference: without echolib, importing them compiles the grammar
    assert ours["lark_after_import"] is False
    assert ours["answers"] == plain["answers"]  # the real checker answers, loaded at its first use
    assert plain["answers"]["iri"][:2] == [True, False]  # a space is not allowed in an IRI


def test_the_echolib_kernel_starts_with_the_deferred_import():
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    assert kernel_argv(["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"]) == [
        "python", "-m", "echolib.kernel", "-f", "{connection_file}"]
    try:
        spec = KernelSpecManager().get_kernel_spec("echolib")
    except NoSuchKernel:
        pytest.skip("the echolib kernel is not registered (make setup registers it)")
    assert "echolib.kernel" in spec.argv
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import sys, altair\nprint('lark' in sys.modules)")])
    NotebookClient(nb, kernel_name="echolib", timeout=120).execute()
    assert nb.cells[0].outputs[0]["text"].strip() == "False"

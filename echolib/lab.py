"""Saving a pipeline notebook in JupyterLab leaves the pipeline as it was.

Each stage's notebook (notebooks/NN_*.ipynb) is a DVC dependency by its bytes. Run in JupyterLab and saved, it
would carry outputs, execution counts and the kernel's metadata, and `dvc status` would call its stage and every
stage after it changed (exploring 06_train would retrain every run). `make setup` registers `strip_on_save` as
the Jupyter server's pre-save hook in the project's virtual environment
(`.venv/etc/jupyter/jupyter_server_config.d/echolib.json`): a pipeline notebook is written as its code and
narrative only, so saving one whose code did not change writes the same bytes, and an edit to its code is what
DVC sees. The executed notebooks are the stage pages (reports/stages/, reports/site/stages/); outputs of an
exploration are not kept in the file. Any other notebook is saved as Jupyter saves it.
"""

from __future__ import annotations

from pathlib import Path

from .kernel import KERNEL

#: the pre-save hook as Jupyter's config names it
HOOK = "echolib.lab.strip_on_save"
#: a cell's metadata kept (papermill's parameters tag); everything else is Lab's own state (scroll, collapse, timing)
CELL_METADATA = ("tags",)


def strip(nb: dict) -> dict:
    """A notebook (as a JSON dict) as the pipeline commits it: no outputs, no execution counts, cells' metadata
    only `CELL_METADATA`, the notebook's only its kernelspec and the language's name."""
    for cell in nb.get("cells", []):
        cell["metadata"] = {k: v for k, v in (cell.get("metadata") or {}).items() if k in CELL_METADATA}
        if cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None
    meta = nb.get("metadata") or {}
    nb["metadata"] = {k: v for k, v in {"kernelspec": meta.get("kernelspec"),
                                        "language_info": {"name": (meta.get("language_info") or {}).get("name",
                                                                                                     "python")}
                                        }.items() if v}
    return nb


def is_pipeline_notebook(path: str | Path, root: str | Path = ".") -> bool:
    """Whether `path` (relative to the Jupyter server's root) is a stage notebook: notebooks/*.ipynb beside a
    dvc.yaml."""
    p = Path(root) / path
    return p.suffix == ".ipynb" and p.parent.name == "notebooks" and (p.parent.parent / "dvc.yaml").is_file()


def strip_on_save(model: dict, path: str, contents_manager=None, **_) -> None:
    """Jupyter's pre-save hook: a pipeline notebook is saved stripped (`strip`); anything else untouched."""
    if model.get("type") != "notebook" or not isinstance(model.get("content"), dict):
        return
    root = getattr(contents_manager, "root_dir", ".") if contents_manager is not None else "."
    if is_pipeline_notebook(path, root):
        strip(model["content"])


def jupyter_config() -> dict:
    """The Jupyter server configuration `make setup` writes into the virtual environment."""
    return {"ContentsManager": {"pre_save_hook": HOOK}}  # the base of the server's (async) file managers


def main(argv: list[str] | None = None) -> int:
    """`python -m echolib.lab install`: write the hook's configuration into this interpreter's environment."""
    import argparse
    import json
    import sys

    ap = argparse.ArgumentParser(prog="python -m echolib.lab", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cmd", choices=["install"])
    ap.parse_args(argv)
    out = Path(sys.prefix) / "etc" / "jupyter" / "jupyter_server_config.d" / "echolib.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(jupyter_config(), indent=2) + "\n")
    print(f"Jupyter pre-save hook: {out}")
    spec = Path(sys.prefix) / "share" / "jupyter" / "kernels" / KERNEL / "kernel.json"
    if spec.is_file():  # registered just before by `ipykernel install --sys-prefix --name echolib`
        kernel = json.loads(spec.read_text())
        kernel["argv"] = kernel_argv(kernel["argv"])
        spec.write_text(json.dumps(kernel, indent=1) + "\n")
        print(f"Jupyter kernel {KERNEL!r} starts through python -m echolib.kernel: {spec}")
    return 0


def kernel_argv(argv: list[str]) -> list[str]:
    """ipykernel's launch command with its launcher module replaced by `echolib.kernel` (the same kernel,
    started after echolib.startup's deferred import)."""
    return ["echolib.kernel" if a == "ipykernel_launcher" else a for a in argv]


if __name__ == "__main__":
    raise SystemExit(main())

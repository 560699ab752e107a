"""What the pipeline writes, atomically: metrics JSON (one convention for every stage), folders swapped into place.

An output folder a command is told to write (`--out`) is replaced whole by a complete new one, so the command must
know it is its own: the folder must be new, empty, or carry the marker file `MARKER` that echolib writes into every
folder it creates this way, and it may not hold, or lie inside, the command's input. Anything else is refused
before a byte is written (`claim_output`)."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

MARKER = ".echolib-output"  # in every output folder echolib made: the folder may be replaced by the next run


class OutputError(ValueError):
    """An output folder echolib may not replace (it holds other files, or overlaps the input)."""


def claim_output(dest: str | Path, inputs=()) -> None:
    """Refuse `dest` as an output folder unless echolib may replace it: new, empty, or marked as echolib's, and
    neither holding nor inside any of `inputs` (files or folders). One-line OutputError otherwise."""
    dest = Path(dest)
    for src in inputs:
        if overlap(dest, src):
            raise OutputError(f"{dest}: the output folder and the input {src} overlap (one holds the other); "
                              "write the output somewhere else")
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise OutputError(f"{dest}: exists and is not a folder; give a new or empty folder")
    if dest.is_dir() and not (dest / MARKER).is_file() and any(dest.iterdir()):
        raise OutputError(f"{dest}: holds files echolib did not write (no {MARKER} marker), which the output would "
                          "replace; give a new or empty folder (nothing was changed)")


def shown(path: str | Path) -> str:
    """A path as it may be printed on a page or in a log: relative to the working directory when inside it, else
    its name alone (never an absolute path, which names the machine's folders and often a user)."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return path.name


def overlap(a: str | Path, b: str | Path) -> bool:
    """Whether two paths are the same or one lies inside the other (links resolved)."""
    a, b = Path(a).resolve(), Path(b).resolve()
    return a == b or a in b.parents or b in a.parents


def mark_output(folder: str | Path) -> None:
    """Mark `folder` as an output echolib made (the next run may replace it)."""
    Path(folder, MARKER).write_text("written by echolib: the next run with this folder as its output replaces it\n")


def _plain(obj: Any) -> Any:
    """JSON-ready copy: numpy scalars and arrays as Python numbers and lists, tuples as lists, NaN as null."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # numpy scalars and arrays
        return _plain(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: str | Path, obj: Any) -> Path:
    """`obj` as indented UTF-8 JSON (Japanese kept readable), written beside `path` and renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(json.dumps(_plain(obj), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """The SHA-256 of a file's bytes (hex), read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def remove_path(path: str | Path) -> None:
    """Remove a file, a link or a folder tree, if there is one."""
    import shutil

    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def swap_into_place(new: str | Path, dest: str | Path) -> None:
    """Replace `dest` (a file or folder, which may not exist yet) by `new`, by renames: the old one is moved
    aside first and removed only once the new one is in place, so an interruption leaves one or the other."""
    new, dest = Path(new), Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    old = dest.with_name(f".{dest.name}.old")
    remove_path(old)
    if dest.exists() or dest.is_symlink():
        dest.rename(old)
    new.rename(dest)
    remove_path(old)


class atomic_dir:
    """`with atomic_dir(dest, inputs) as tmp:` write into `tmp` (a fresh folder beside `dest`); on success it
    replaces `dest`, on an error or a kill `dest` stays as it was (a leftover tmp is removed by the next attempt).
    `dest` must be an output echolib may replace (`claim_output`); the new folder carries the marker."""

    def __init__(self, dest: str | Path, inputs=()):
        self.dest = Path(dest)
        self.inputs = tuple(inputs)
        self.tmp = self.dest.with_name(f".{self.dest.name}.part")

    def __enter__(self) -> Path:
        claim_output(self.dest, self.inputs)
        claim_output(self.tmp, self.inputs)  # a leftover of ours (marked) or nothing
        remove_path(self.tmp)
        self.tmp.mkdir(parents=True)
        mark_output(self.tmp)
        return self.tmp

    def __exit__(self, kind, value, tb) -> bool:
        import shutil

        if kind is None:
            swap_into_place(self.tmp, self.dest)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return False

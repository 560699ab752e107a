"""What the pipeline writes, atomically: metrics JSON (one convention for every stage), folders swapped into place."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


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
    """`with atomic_dir(dest) as tmp:` write into `tmp` (a fresh folder beside `dest`); on success it replaces
    `dest`, on an error or a kill `dest` stays as it was (a leftover tmp is removed by the next attempt)."""

    def __init__(self, dest: str | Path):
        self.dest = Path(dest)
        self.tmp = self.dest.with_name(f".{self.dest.name}.part")

    def __enter__(self) -> Path:
        import shutil

        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir(parents=True)
        return self.tmp

    def __exit__(self, kind, value, tb) -> bool:
        import shutil

        if kind is None:
            swap_into_place(self.tmp, self.dest)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return False

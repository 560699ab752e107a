"""Progress of long loops, shown where a person is watching and never in a stage's page.

Run by the stage runner (`python -m echolib.stage`, i.e. `dvc repro`), a notebook's kernel finds the path of a
progress file in ECHOLIB_PROGRESS: bars write their lines there (one line per update, at most every
`mininterval` seconds) and the runner prints them to the terminal as they arrive, prefixed by the stage's name.
The executed notebook, and so its page, holds no progress residue. Outside the runner (a CLI in a terminal, a
notebook in JupyterLab) a bar is an ordinary text tqdm on stderr.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

ENV = "ECHOLIB_PROGRESS"
#: one progress line as the terminal shows it: "train MultiVideo seed 0: 120/600 step (20 %), 2:01 so far, 8:05 left"
LINE = "{desc}: {n_fmt}/{total_fmt} {unit} ({percentage:.0f} %), {elapsed} so far, {remaining} left{postfix}"


class _LineFile:
    """A file-like sink for tqdm that turns its carriage-return redraws into whole lines."""

    def __init__(self, path: str):
        self._f = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - closed with the bar

    def write(self, s: str) -> None:
        for part in s.replace("\r", "\n").split("\n"):
            part = part.strip()
            if part:
                self._f.write(part + "\n")

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def bar(total: int | None = None, desc: str = "", unit: str = "it", enabled: bool = True, mininterval: float = 10):
    """A tqdm bar over `total` items: into the runner's progress file when there is one, else on stderr."""
    from tqdm import tqdm

    path = os.environ.get(ENV)
    if not enabled:
        return tqdm(total=total, disable=True)
    if path:
        sink = _LineFile(path)
        b = tqdm(total=total, desc=desc, unit=unit, file=sink, mininterval=mininterval, bar_format=LINE,
                 disable=False)  # disable=False: TQDM_DISABLE silences others
        close = b.close

        def close_both():
            close()
            sink.close()

        b.close = close_both
        return b
    return tqdm(total=total, desc=desc, unit=unit, mininterval=mininterval, disable=False)


def track(iterable, total: int | None = None, desc: str = "", unit: str = "it", enabled: bool = True,
          mininterval: float = 10):
    """Iterate with a bar (see `bar`)."""
    total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
    with bar(total, desc, unit, enabled, mininterval) as b:
        for x in iterable:
            yield x
            b.update(1)


class Relay:
    """The runner's side: follows a progress file and prints its new lines, prefixed, until stopped."""

    def __init__(self, path: Path, prefix: str, out=None, poll: float = 0.5):
        self.path, self.prefix, self.poll = Path(path), prefix, poll
        self.out = out
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.lines: list[str] = []

    def __enter__(self) -> Relay:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("", encoding="utf-8")
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _emit(self, line: str) -> None:
        import sys

        self.lines.append(line)
        print(f"  {self.prefix}: {line}", file=self.out or sys.stdout, flush=True)

    def _run(self) -> None:
        pos, pending = 0, ""
        while True:
            stopping = self._stop.is_set()
            try:
                with open(self.path, encoding="utf-8") as f:
                    f.seek(pos)
                    chunk = f.read()
                    pos = f.tell()
            except FileNotFoundError:
                chunk = ""
            pending += chunk
            *done, pending = pending.split("\n")
            for line in done:
                if line.strip():
                    self._emit(line.strip())
            if stopping:
                if pending.strip():
                    self._emit(pending.strip())
                return
            time.sleep(self.poll)

"""Processes: an echolib entry point as a subprocess from a notebook (DDP stays out of the kernel), and a
progress-bar process pool shared by the synthetic generator and ingestion."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor


def run_module(module: str, *args, cwd=None) -> None:
    """`python -m module args...` with the kernel's interpreter, output streamed; raises naming the command."""
    cmd = [sys.executable, "-m", module, *map(str, args)]
    print("$", " ".join(cmd[1:]), flush=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd)
    tail = []
    for line in proc.stdout:
        print(line, end="", flush=True)
        tail = (tail + [line])[-20:]
    if proc.wait() != 0:
        raise RuntimeError(f"`python -m {module}` failed with exit code {proc.returncode}:\n{''.join(tail)}")


def map_jobs(fn, jobs: list, workers: int = 0, desc: str = "", unit: str = "item", progress: bool = True,
             chunksize: int = 4, each=None) -> list:
    """fn over jobs in order, in `workers` processes (0 = every core), with a progress bar; `each(result)` is
    called as every result arrives (e.g. to record progress that survives an interruption)."""
    from .progress import bar as progress_bar

    workers = workers or os.cpu_count() or 1
    bar = progress_bar(len(jobs), desc, unit, enabled=progress)
    out = []
    if workers == 1 or len(jobs) <= 1:
        for j in jobs:
            out.append(fn(j))
            if each:
                each(out[-1])
            bar.update()
    else:
        with ProcessPoolExecutor(workers) as pool:
            for r in pool.map(fn, jobs, chunksize=chunksize):
                out.append(r)
                if each:
                    each(r)
                bar.update()
    bar.close()
    return out

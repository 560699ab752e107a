"""Processes: an echolib entry point as a subprocess from a notebook (DDP stays out of the kernel), and a
progress-bar process pool shared by the synthetic generator and ingestion."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor


def run_module(module: str, *args, cwd=None, env: dict[str, str] | None = None,
               shown: list[str] | None = None) -> None:
    """`python -m module args...` with the kernel's interpreter (`env` added to its environment), output
    streamed; raises naming the command. `shown`: the arguments printed as the command (what a reader can paste,
    when the real ones name temporary files)."""
    cmd = [sys.executable, "-m", module, *map(str, args)]
    print("$ python", " ".join(shlex.quote(c) for c in (shown or cmd[1:])), flush=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd,
                            env={**os.environ, **(env or {})})
    tail = []
    for line in proc.stdout:
        print(line, end="", flush=True)
        tail = (tail + [line])[-20:]
    if proc.wait() != 0:
        raise RuntimeError(f"`python -m {module}` failed with exit code {proc.returncode}:\n{''.join(tail)}")


class WorkerDied(RuntimeError):
    """A worker process was killed (the kernel's out-of-memory killer, a signal) while running one job."""


def map_jobs(fn, jobs: list, workers: int = 0, desc: str = "", unit: str = "item", progress: bool = True,
             each=None, died=None, keep: bool = True) -> list:
    """fn over jobs in order, in `workers` processes (0 = every core), with a progress bar: the one process pool
    of echolib (rendering, ingestion, the clip cache, the view classifier's decoding, shards). `each(i, result)`
    is called as the result of job i arrives (e.g. to record progress that survives an interruption, or to copy
    it into place); with keep=False the results are not also collected (the list returned holds None).

    A worker that dies (killed by the out-of-memory killer or a signal) costs only the job it was running: the
    jobs in flight when it died are run again one at a time, each in a process of its own, and the one that
    kills its process again gets `died(job)` as its result, or raises WorkerDied naming it when `died` is None.
    Every other job's result is kept."""
    from .progress import bar as progress_bar

    workers = workers or os.cpu_count() or 1
    bar = progress_bar(len(jobs), desc, unit, enabled=progress)
    out: list = [None] * len(jobs)
    finished: set[int] = set()

    def record(i, r):
        finished.add(i)
        if each:
            each(i, r)
        out[i] = r if keep else None
        bar.update()

    if workers == 1 or len(jobs) <= 1:
        for i, j in enumerate(jobs):
            record(i, fn(j))
    else:
        pending = list(range(len(jobs)))
        while pending:
            suspects = _pool_pass(fn, jobs, pending, workers, record)
            for i in suspects:  # alone, so that a death names its job
                r = _run_alone(fn, jobs[i])
                if r is _DIED:
                    if died is None:
                        raise WorkerDied(f"a worker process died while running {desc or 'a job'} {i + 1} of "
                                         f"{len(jobs)} (killed: out of memory?)")
                    r = died(jobs[i])
                record(i, r)
            pending = [i for i in pending if i not in finished]
    bar.close()
    return out


_DIED = object()


def _pool_pass(fn, jobs, pending, workers, record) -> list[int]:
    """Run `pending` in a pool; [] when all finished, else the jobs that were running when a worker died (the
    results that arrived before are recorded; the jobs never started stay pending). Each job marks its start and
    end with a file, which outlives a killed worker."""
    import tempfile
    from concurrent.futures import FIRST_COMPLETED, wait
    from concurrent.futures.process import BrokenProcessPool

    with tempfile.TemporaryDirectory(prefix="echolib-jobs-") as marks, \
            ProcessPoolExecutor(min(workers, len(pending))) as pool:
        futures = {pool.submit(_marked, fn, jobs[i], os.path.join(marks, str(i))): i for i in pending}
        todo = set(futures)
        while todo:
            finished, todo = wait(todo, return_when=FIRST_COMPLETED)
            for f in finished:
                try:
                    record(futures[f], f.result())
                except BrokenProcessPool:
                    for g in todo:
                        g.cancel()
                    return sorted(int(name) for name in os.listdir(marks))
    return []


def _marked(fn, job, mark: str):
    with open(mark, "w"):
        pass
    result = fn(job)
    os.remove(mark)
    return result


def _run_alone(fn, job):
    from concurrent.futures.process import BrokenProcessPool

    with ProcessPoolExecutor(1) as pool:
        try:
            return pool.submit(fn, job).result()
        except BrokenProcessPool:
            return _DIED

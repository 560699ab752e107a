"""Run an echolib entry point as a subprocess from a notebook (DDP and process pools stay out of the kernel)."""

from __future__ import annotations

import subprocess
import sys


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

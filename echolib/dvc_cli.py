"""`dvc` as `make repro` runs it: DVC's own command line, with one hint switched off at its source.

After every `dvc repro` that writes dvc.lock, DVC suggests `git add dvc.lock` (and `dvc config core.autostage
true`). This project never commits dvc.lock (README, "DVC"; a test fails if it is): no shared DVC remote holds
the outputs it names, so a clone with a committed lock would believe results it does not have. The hint is one
INFO record of DVC's `scm_context` logger; its level is raised to WARNING here, so every other line DVC prints
(stages run, skipped, errors) is unchanged.

    python -m echolib.dvc_cli repro [dvc repro's arguments]
"""
from __future__ import annotations

import logging
import sys


def quiet_git_hint() -> None:
    """Raise DVC's scm_context logger above INFO: no `git add dvc.lock` / autostage hint, nothing else changed."""
    from dvc.repo import scm_context

    scm_context.logger.setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    from dvc.cli import main as dvc_main

    quiet_git_hint()
    return dvc_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())

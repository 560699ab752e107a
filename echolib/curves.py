"""Training curves: dvclive where it is installed (what the pages and `dvc plots` read), a CSV where it is not (a
bare GPU node). `lightning_logger` for Lightning runs, `curves_logger` for the loops outside Lightning."""

from __future__ import annotations

from pathlib import Path


def _curves_only():
    from dvclive import Live
    from scmrepo.exceptions import SCMError

    class CurvesOnly(Live):
        """dvclive as a curve logger (no experiment saved, no dvc.yaml written). dvclive 3.49 asks git for the
        current commit before checking that there is one, and raises in a repository without commits: where a
        user who ran `git init && dvc init && dvc repro` stands. There it carries on without the repository."""

        def _init_dvc(self):
            try:
                super()._init_dvc()
            except SCMError:
                self._dvc_repo, self._save_dvc_exp = None, False
                self._dvc_file = self._init_dvc_file()

    return CurvesOnly


class CsvCurves:
    """The curve logger where dvclive is not installed (a bare GPU node): FOLDER/curves.csv, one row per value
    (step, metric, value), with the methods the pretraining loop calls on a dvclive Live."""

    def __init__(self, folder: str | Path):
        self.path, self.step = Path(folder) / "curves.csv", 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("step,metric,value\n")

    def log_metric(self, name: str, value: float) -> None:
        with self.path.open("a") as f:
            f.write(f"{self.step},{name},{value!r}\n")

    def next_step(self) -> None:
        self.step += 1

    def end(self) -> None:
        pass


def curves_logger(folder: str | Path):
    """A dvclive Live writing curves only into `folder` (what the pages and `dvc plots` read), for loops outside
    Lightning (self-supervised pretraining); `CsvCurves` where dvclive is not installed."""
    try:
        live = _curves_only()
    except ImportError:
        print(f"dvclive is not installed: curves go to {Path(folder) / 'curves.csv'}")
        return CsvCurves(folder)
    return live(dir=str(folder), save_dvc_exp=False, dvcyaml=None, report=None)


def lightning_logger(out: Path, resume: bool):
    """dvclive (curves for the pipeline's pages and `dvc plots`); Lightning's CSV logger in an environment without
    it (a bare GPU node running `python -m echolib.train` from a copied store)."""
    try:
        from dvclive.lightning import DVCLiveLogger
    except ImportError:
        from lightning.pytorch.loggers import CSVLogger

        print("dvclive is not installed: curves go to csv/ (Lightning's CSVLogger)")
        return CSVLogger(str(out), name="csv")
    from lightning.fabric.loggers.logger import rank_zero_experiment

    CurvesOnly = _curves_only()

    class CurvesLogger(DVCLiveLogger):
        @property
        @rank_zero_experiment
        def experiment(self):  # created on rank 0 only, when first used, as DVCLiveLogger does
            if self._experiment is None:
                self._experiment = CurvesOnly(**self._kwargs)
            return self._experiment

    return CurvesLogger(dir=str(out / "dvclive"), save_dvc_exp=False, dvcyaml=None, resume=resume)

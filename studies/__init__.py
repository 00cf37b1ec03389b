"""Studies: a grid of training settings run over seeds with tools/train.py, and their results
aggregated with confidence intervals (``tools/study.py``; docs/studies.md).

:mod:`.spec` reads and checks a study file and expands its grid, :mod:`.runs` runs one (setting, seed)
pair, :mod:`.executors` runs the pending pairs here or through submitit, :mod:`.aggregate` writes the
statistics, tables and curves.
"""
from .aggregate import Estimate, aggregate, paired_difference, t_interval
from .executors import run_study
from .spec import Study, load_study

__all__ = ["Estimate", "Study", "aggregate", "load_study", "paired_difference", "run_study", "t_interval"]

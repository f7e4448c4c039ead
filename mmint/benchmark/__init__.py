"""``mmint benchmark``: a suite of fits (models x datasets x seeds x variants) with
``results.csv``, ``report.md`` and plots; see ``docs/benchmark.md``."""

from mmint.benchmark.grid import RunSpec, Suite, expand
from mmint.benchmark.runner import SuiteRun, run_suite

__all__ = ["RunSpec", "Suite", "SuiteRun", "expand", "run_suite"]

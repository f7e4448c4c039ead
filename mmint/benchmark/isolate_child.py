"""The child process of ``suite.isolate`` (:mod:`mmint.benchmark.isolate`): fit one job's run
exactly as an in-process run does and write its outcome beside the job."""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path

from mmint.benchmark.runner import execute
from mmint.callbacks.timing import own_and_children_peak_rss_mb
from mmint.io import write_json


def main(job_path: str) -> None:
    """Fit the run of ``job_path`` (``cfg``, ``run_dir``, ``outcome``); write the outcome."""
    job = json.loads(Path(job_path).read_text())
    if threads := os.environ.get("MMINT_TORCH_THREADS"):
        import torch

        torch.set_num_threads(int(threads))
    try:
        error, tb, _ = execute(job["cfg"], job["run_dir"])
    except BaseException as err:  # noqa: BLE001 - report anything, then exit
        error, tb = f"{type(err).__name__}: {err}", traceback.format_exc()
    # the parent's wait4 peak RSS would include its own high-water mark (see peak_rss_mb)
    peak = own_and_children_peak_rss_mb()
    write_json(job["outcome"], {"error": error, "traceback": tb, "peak_rss_mb": peak})


if __name__ == "__main__":
    main(sys.argv[1])

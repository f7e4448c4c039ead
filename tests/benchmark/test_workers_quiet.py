"""A suite with worker processes (``suite.n_jobs: 2``) keeps the console as quiet as an
in-process one: Lightning's banners and library warnings go to the suite's log file."""

from __future__ import annotations

import pytest
from reliability.helpers import TINY, mmint

NOISE = ("GPU available", "TPU available", "Tip:", "LeafSpec", "Trainer.fit")


@pytest.mark.slow
def test_worker_processes_are_quiet(tmp_path):
    done = mmint(
        "benchmark",
        "suite=quick",
        "suite.n_jobs=2",
        "suite.models=[multivi]",
        "suite.floor=[]",
        "suite.umap=false",
        "model.max_epochs=1",
        *TINY,
        "hydra.run.dir=quick",
        cwd=tmp_path,
        timeout=600,
    )
    console = done.stdout + done.stderr
    assert done.returncode == 0, console[-2000:]
    assert "suite quick: 2 ok" in console
    assert not [n for n in NOISE if n in console], console[-3000:]
    # what the console left out is in the log file
    assert "GPU available" in (tmp_path / "quick" / "cli.log").read_text()

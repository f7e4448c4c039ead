"""A suite with worker processes (``suite.n_jobs: 2``) keeps the console as quiet as an
in-process one: Lightning's banners and library warnings go to the suite's log file."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

TINY = [
    "data.simulate.n_cells=200",
    "data.simulate.n_types=3",
    "data.simulate.n_major=2",
    "eval.scib=false",
    "eval.leiden=false",
    "suite.umap=false",
    "model.max_epochs=1",
]
NOISE = ("GPU available", "TPU available", "Tip:", "LeafSpec", "Trainer.fit")


@pytest.mark.slow
def test_worker_processes_are_quiet(tmp_path):
    suite_dir = tmp_path / "quick"
    cmd = [
        sys.executable,
        "-m",
        "mmint.cli",
        "benchmark",
        "suite=quick",
        "suite.n_jobs=2",
        "suite.models=[multivi]",
        "suite.floor=[]",
        f"hydra.run.dir={suite_dir}",
        *TINY,
    ]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    console = done.stdout + done.stderr
    assert done.returncode == 0, console[-2000:]
    assert "suite quick: 2 ok" in console
    assert not [n for n in NOISE if n in console], console[-3000:]
    # what the console left out is in the log file
    log = (suite_dir / "cli.log").read_text()
    assert "GPU available" in log

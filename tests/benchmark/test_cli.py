"""``mmint benchmark suite=...`` end to end (one tiny pca run through Hydra)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from mmint.data.registry import config_dir


def _suite_arg(name: str) -> str:
    """``suite=<name>`` once the root config lists the group, ``+suite=<name>`` before."""
    defaults = OmegaConf.load(Path(config_dir()) / "config.yaml").defaults
    return f"{'' if any('suite' in str(d) for d in defaults) else '+'}suite={name}"


@pytest.mark.slow
def test_benchmark_command(tmp_path):
    suite_dir = tmp_path / "suite"
    cmd = [
        sys.executable,
        "-c",
        "from mmint.cli import main; main()",
        "benchmark",
        _suite_arg("quick"),
        "model=pca",
        "suite.models=[pca]",
        "suite.seeds=[0]",
        "suite.umap=false",
        "logger=csv",
        "eval.scib=false",
        "eval.leiden=false",
        "data.simulate.n_cells=300",
        f"hydra.run.dir={suite_dir}",
    ]
    env = {**os.environ, "CI": "true", "WANDB_MODE": "disabled"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "[1/1] pca__synthetic__default__seed0: ok" in out.stdout
    assert re.search(r"\| synthetic +\| pca +\| default +\|", out.stdout)  # the summary table
    assert (suite_dir / "results.csv").exists() and (suite_dir / "report.md").exists()
    assert (suite_dir / "runs/pca__synthetic__default__seed0/metrics.json").exists()
    cfg = OmegaConf.load(suite_dir / "runs/pca__synthetic__default__seed0/config.yaml")
    assert cfg.logger.group == "quick" and cfg.data.simulate.n_cells == 300

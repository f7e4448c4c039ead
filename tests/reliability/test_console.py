"""A quiet terminal: what runs, progress with the time left, where the results are and the
summary; third-party chatter only in the log file (or with verbose=true)."""

from __future__ import annotations

import os
import re
import subprocess

from benchmark.conftest import tiny_suite

from mmint.benchmark.runner import run_suite
from mmint.cli import compose_run

from .helpers import MMINT, TINY

#: the lines `mmint fit` may print
ALLOWED = [
    r"fit multivi on synthetic, seed 0, 4 epochs -> .*/run$",
    r"epoch [1-4]/4  val/loss [0-9.e+]+  time left \d+s$",
    r"results: .*/run$",
    r"ari=[0-9.]+, nmi=[0-9.]+, ari_kmeans=[0-9.]+, foscttm=[0-9.]+, fit_seconds=[0-9.]+$",
]


def _fit(tmp_path, *extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CI"}  # a user's terminal, not CI
    env["WANDB_MODE"] = "offline"  # the default W&B logger, as a new user has it
    args = [a for a in TINY if a != "logger=csv"]
    return subprocess.run(
        [MMINT, "fit", "model=multivi", *args, "model.max_epochs=4", "hydra.run.dir=run", *extra],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_fit_prints_only_what_a_user_needs(tmp_path):
    out = _fit(tmp_path)
    assert out.returncode == 0, out.stderr
    lines = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.strip()]
    for line in lines:
        assert any(re.match(p, line) for p in ALLOWED), line
    for pattern in ALLOWED:  # and each of them is there
        assert any(re.match(pattern, ln) for ln in lines), pattern
    log = (tmp_path / "run/cli.log").read_text()
    assert "GPU available: False" in log and "[py.warnings][WARNING]" in log


def test_verbose_shows_everything(tmp_path):
    out = _fit(tmp_path, "verbose=true")
    assert out.returncode == 0, out.stderr
    assert "GPU available: False" in out.stdout + out.stderr


def test_suite_progress_shows_the_time_left(tmp_path, monkeypatch, fake_fit):
    monkeypatch.setenv("CI", "true")
    lines = []
    run_suite(
        tiny_suite(seeds=[0, 1, 2], floor=[]),
        tmp_path,
        ["logger=csv"],
        echo=lines.append,
        compose=compose_run,
    )
    assert re.search(r": ok \([0-9.]+ s\), time left ~\d+s$", lines[0]), lines[0]
    assert "time left" not in lines[-1]  # nothing left after the last run

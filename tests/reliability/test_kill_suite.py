"""A 12-run suite killed at seeded random moments (SIGKILL, 8 times) and resumed each time
ends with every run once in results.csv, every metrics.json whole and of its config, and the
counts of the summary right; Ctrl-C (SIGINT) says what was kept and how to resume.

The suite runs in forked children of the test process (``mmint.cli.main``, the real command
path), so that each of the ten starts costs no import time.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mmint.benchmark.grid import Suite, expand, passthrough
from mmint.benchmark.results import read_results
from mmint.cli import compose_run
from mmint.fit import config_hash

from .helpers import TINY

#: 2 fast models x 6 seeds = 12 runs; no UMAP, no controls (speed); in-process runs (the
#: suite's own kill/resume; worker processes: test_resume's killed-suite test)
SUITE = [
    "suite=quick",
    "suite.n_jobs=1",
    "suite.models=[pca,knn_transfer]",
    "suite.floor=[]",
    "suite.seeds=[0,1,2,3,4,5]",
    "suite.model_overrides={}",
    "suite.umap=false",
    "+suite.leaderboard.controls=false",
    *TINY,
]

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def _start(argv: list[str], log: Path) -> int:
    """Fork a child that runs ``mmint <argv>`` with its output in ``log``; return its PID."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:  # the child: never returns into pytest
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # not pytest's capture
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        os.environ.update({"CI": "true", "WANDB_MODE": "disabled"})
        # Python's Ctrl-C handler, as a terminal's process has: a background job of a
        # non-interactive shell (CI) starts with SIGINT ignored, and a fork inherits that
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from mmint.cli import main

        try:
            main(argv)
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        os._exit(code)


def _wait(pid: int, timeout: float) -> int | None:
    """The child's exit status once it ends within ``timeout`` s, else None (still running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    return None


def _runs() -> list:
    """The suite's runs, with the overrides the command line gives them."""
    keep, _ = passthrough(SUITE)
    return expand(Suite.from_config(compose_run(SUITE)["suite"]), keep)


def _n_done(suite_dir: Path) -> int:
    return len(list(suite_dir.glob("runs/*/metrics.json")))


def _kill_at_random_moment(pid: int, suite_dir: Path, rng, per_run: list[float], left: int) -> bool:
    """SIGKILL the suite ``pid`` at a seeded random moment: after 0 or 1 more finished runs,
    a random fraction of a run's duration later (durations measured as runs finish), or at
    once when another run finishes meanwhile. At least ``left + 1`` runs stay unfinished
    (``left``: the kills still to come, this one included). False when the suite ended."""
    n0 = _n_done(suite_dir)
    wait_runs = int(rng.integers(0, 2)) if 12 - n0 >= left + 3 else 0
    frac = float(rng.uniform(0, 1))
    start = time.monotonic()
    while _n_done(suite_dir) < n0 + wait_runs:
        if _wait(pid, 0.005) is not None:
            return False
    if wait_runs:
        per_run.append(time.monotonic() - start)
    n1 = _n_done(suite_dir)
    deadline = time.monotonic() + frac * float(np.median(per_run))
    while time.monotonic() < deadline and _n_done(suite_dir) == n1:
        if _wait(pid, 0.005) is not None:
            return False
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return True


def _check_consistent(suite_dir: Path, runs: list, hashes: dict[str, str]) -> int:
    """What a resume trusts is whole: results.csv parses, one row per finished run, each
    row's metrics.json parses and carries its run's config hash. Returns the rows."""
    csv = suite_dir / "results.csv"
    if not csv.exists():
        return 0
    table = read_results(csv)
    names = [Path(r).name for r in table["run_dir"]]
    assert len(names) == len(set(names)), names
    assert set(names) <= set(hashes)
    for name in names:
        m = json.loads((suite_dir / "runs" / name / "metrics.json").read_text())
        assert m["config_hash"] == hashes[name] and m["status"] == "ok", name
    for path in suite_dir.glob("runs/*/metrics.json"):  # no half-written file anywhere
        json.loads(path.read_text())
    return len(table)


def test_suite_killed_eight_times_then_interrupted(tmp_path):
    """8 SIGKILLs at seeded random moments, then a Ctrl-C (SIGINT) once one more run is
    finished; the command it prints resumes the suite to the end."""
    runs = _runs()
    assert len(runs) == 12
    hashes = {r.name: config_hash(compose_run(r.overrides)) for r in runs}
    suite_dir = tmp_path / "suite"
    argv = ["benchmark", *SUITE, f"hydra.run.dir={suite_dir}"]
    rng = np.random.default_rng(27)
    kept: list[int] = []
    per_run = [2.0]  # seconds a run takes, a first guess
    for kill in range(8):
        pid = _start(argv, tmp_path / f"log{kill}.txt")
        assert _kill_at_random_moment(pid, suite_dir, rng, per_run, 8 - kill), (
            tmp_path / f"log{kill}.txt"
        ).read_text()[-3000:]
        kept.append(_check_consistent(suite_dir, runs, hashes))
    assert kept == sorted(kept)  # a kill never loses a finished run

    log = tmp_path / "interrupted.txt"
    pid = _start(argv, log)
    target = _n_done(suite_dir) + 1
    deadline = time.monotonic() + 240
    while _n_done(suite_dir) < target:
        assert time.monotonic() < deadline and _wait(pid, 0.01) is None, log.read_text()
    os.kill(pid, signal.SIGINT)
    code = _wait(pid, 120)
    out = log.read_text()
    assert code == 130, f"exit {code}; the suite's output ends:\n{out[-3000:]}"
    n_kept = int(re.search(r"interrupted: kept (\d+) finished run\(s\) of 12", out).group(1))
    assert n_kept >= target and n_kept == _check_consistent(suite_dir, runs, hashes)
    (line,) = [ln for ln in out.splitlines() if ln.startswith("interrupted - ")]
    resume = line.split("rerun the same command to resume: ", 1)[1]
    assert resume.startswith("mmint benchmark suite=quick")
    assert f"hydra.run.dir={suite_dir}" in resume

    log = tmp_path / "final.txt"
    code = _wait(_start(shlex.split(resume)[1:], log), 300)  # as a shell would pass it
    out = log.read_text()
    assert code == 0, out[-3000:]
    assert _check_consistent(suite_dir, runs, hashes) == 12
    table = read_results(suite_dir / "results.csv")
    assert set(table["status"]) == {"ok"}
    summary = re.search(r"suite quick: (\d+) ok, (\d+) done earlier, (\d+) failed", out)
    assert summary, out[-3000:]
    assert tuple(map(int, summary.groups())) == (12 - n_kept, n_kept, 0)
    assert "Runs: 12 ok, 0 failed." in (suite_dir / "report.md").read_text()

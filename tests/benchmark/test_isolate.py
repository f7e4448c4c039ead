"""``suite.isolate: true``: runs in fresh processes with their own CPU seconds and peak RSS."""

from __future__ import annotations

import resource
import sys

import pytest

from mmint.benchmark.grid import expand
from mmint.benchmark.isolate import execute_isolated, run_child, thread_env
from mmint.benchmark.runner import run_dir_of, run_suite
from mmint.cli import compose_run
from mmint.io import read_json

from .conftest import tiny_suite

#: a child that burns ~0.6 CPU s and touches 300 MB, then exits
BURN = (
    "import time\n"
    "t = time.process_time()\n"
    "while time.process_time() - t < 0.6: pass\n"
    "b = bytearray(300 * 1024 * 1024)\n"
    "for i in range(0, len(b), 4096): b[i] = 1\n"
)


def test_child_usage_is_the_childs_own(tmp_path):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    status, usage, timed_out = run_child([sys.executable, "-c", BURN], {}, tmp_path / "log")
    assert status == 0 and not timed_out
    assert 0.6 <= usage.ru_utime + usage.ru_stime < 3.0
    assert usage.ru_maxrss / 1024 >= 300  # KiB on Linux
    # the parent's high-water mark did not take the child's 300 MB
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 * 1024


def test_isolated_peak_rss_is_not_the_parents(tmp_path):
    """A small child of a large parent: wait4's ru_maxrss carries the parent's high-water mark
    across the child's exec (vfork); the recorded peak must be the child's own."""
    suite = tiny_suite(seeds=[0], floor=[])
    cfg = compose_run([*expand(suite)[0].overrides, "logger=csv"])
    ballast = bytearray(1536 * 1024 * 1024)
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    _, usage, _ = run_child([sys.executable, "-c", "pass"], {}, tmp_path / "log")
    parent_peak = usage.ru_maxrss / 1024  # the effect this test guards against, as wait4 sees it
    error, _, _ = execute_isolated(cfg, tmp_path / "run", threads=1)
    del ballast
    assert error is None
    own = read_json(tmp_path / "run" / "metrics.json")["process"]["peak_rss_mb"]
    assert parent_peak > 1536 and own < parent_peak - 700


def test_child_timeout_is_killed(tmp_path):
    loop = [sys.executable, "-c", "while True: pass"]
    status, _, timed_out = run_child(loop, {}, tmp_path / "log", timeout_s=0.5)
    assert timed_out and status != 0


def test_thread_env():
    assert thread_env(None) == {}
    env = thread_env(1)
    assert env["OMP_NUM_THREADS"] == "1" and "intra_op_parallelism_threads=1" in env["XLA_FLAGS"]


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """The same tiny pca run in-process and isolated."""
    out = {}
    for isolate in (False, True):
        folder = tmp_path_factory.mktemp(f"isolate{isolate}")
        suite = tiny_suite(seeds=[0], floor=[], isolate=isolate, threads=1 if isolate else None)
        done = run_suite(suite, folder, ["logger=csv"], echo=lambda _: None, compose=compose_run)
        out[isolate] = (suite, folder, done)
    return out


def test_isolated_run_records_its_process_and_same_scores(both):
    suite, folder, done = both[True]
    assert done.counts == {"ok": 1, "failed": 0, "cached": 0}
    metrics = read_json(run_dir_of(folder, done.runs[0]) / "metrics.json")
    proc = metrics["process"]
    assert proc["isolated"] and proc["threads"] == 1
    assert 0 < proc["cpu_seconds"] and proc["peak_rss_mb"] > 50
    # the fit's own in-process reading and the parent's wait4 reading of the same process
    assert proc["peak_rss_mb"] == pytest.approx(metrics["peak_rss_mb"], rel=0.05)
    row = done.table.iloc[0]
    assert row["process.cpu_seconds"] == proc["cpu_seconds"]
    in_process = read_json(run_dir_of(both[False][1], both[False][2].runs[0]) / "metrics.json")
    assert "process" not in in_process
    for key in ("ari", "foscttm", "ari_kmeans"):
        assert metrics[key] == in_process[key]  # a fresh process changes no score


def test_isolated_run_resumes(both):
    suite, folder, _ = both[True]
    again = run_suite(suite, folder, ["logger=csv"], echo=lambda _: None, compose=compose_run)
    assert again.counts["cached"] == 1


def test_isolated_timeout_fails_the_run_alone(tmp_path):
    suite = tiny_suite(seeds=[0], floor=[])
    run = expand(suite)[0]
    cfg = compose_run([*run.overrides, "logger=csv"])
    error, tb, _ = execute_isolated(cfg, tmp_path / "run", timeout_s=0.3)
    assert error.startswith("TimeoutError") and "suite.timeout_s=0.3" in error
    assert not (tmp_path / "run" / "metrics.json").exists()

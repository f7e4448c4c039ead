"""One writer per folder: a second writer is refused at once with the holder's PID; the lock
of a killed process is taken over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mmint.runlock import LOCK_NAME, FolderBusy, folder_lock

from .helpers import TINY, env, start

HOLD = """
import sys, time
from mmint.runlock import folder_lock
with folder_lock(sys.argv[1], "test holder"):
    print("held", flush=True)
    time.sleep(120)
"""


def _holder(folder: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True, env=env()
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_live_holder_refuses_and_killed_holder_is_taken_over(tmp_path):
    holder = _holder(tmp_path)
    try:
        with pytest.raises(FolderBusy, match=f"in use by process {holder.pid} \\(test holder"):
            with folder_lock(tmp_path, "second"):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (tmp_path / LOCK_NAME).exists()  # left behind by the killed holder
    with folder_lock(tmp_path, "second") as got:
        assert got["took_over"] == holder.pid
        with folder_lock(tmp_path, "nested"):  # the same process may hold it again
            pass
    assert not (tmp_path / LOCK_NAME).exists()


def test_second_writer_exits_at_once_naming_the_holder(tmp_path):
    """`mmint benchmark` and `mmint fit` on a folder another live process holds stop at once
    with one error line naming its PID; nothing is written there."""
    holder = _holder(tmp_path / "suite")
    try:
        bench = start(
            "benchmark",
            "suite=quick",
            "suite.models=[pca]",
            *TINY,
            "hydra.run.dir=suite",
            cwd=tmp_path,
        )
        fit = start("fit", "model=pca", *TINY, "hydra.run.dir=suite", cwd=tmp_path)
        for proc in (bench, fit):
            out, _ = proc.communicate(timeout=120)
            assert proc.returncode == 2, out
            lines = out.strip().splitlines()
            assert len(lines) == 1, out
            assert lines[0].startswith(f"error: the folder is in use by process {holder.pid}")
        assert holder.poll() is None
        written = {p.name for p in (tmp_path / "suite").iterdir()}
        assert not written & {"runs", "results.csv", "config.yaml", "metrics.json"}
    finally:
        holder.kill()
        holder.wait()


def test_a_suite_holds_its_folder_and_each_run_folder(tmp_path, monkeypatch):
    """While a suite runs, its folder is locked by this process, and so is the run folder
    of the fit in progress; both locks are gone afterwards."""
    import json

    from benchmark.conftest import tiny_suite

    import mmint.fit
    from mmint.benchmark.cli import run_benchmark
    from mmint.cli import compose_run

    seen = []
    real_fit = mmint.fit.run_fit

    def checking_fit(cfg, run_dir, **kw):
        run_dir = Path(run_dir)
        seen.append(json.loads((tmp_path / LOCK_NAME).read_text()))
        return real_fit(
            cfg,
            run_dir,
            announce=lambda _: seen.append(json.loads((run_dir / LOCK_NAME).read_text())),
        )

    monkeypatch.setattr("mmint.fit.run_fit", checking_fit)
    run_benchmark(
        tiny_suite(seeds=[0]), tmp_path, ["logger=csv"], echo=lambda _: None, compose=compose_run
    )
    assert [(s["pid"], s["command"]) for s in seen] == [
        (os.getpid(), "mmint benchmark"),
        (os.getpid(), "mmint fit"),
    ]
    assert not list(tmp_path.rglob(LOCK_NAME))

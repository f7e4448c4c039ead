"""A killed fit resumes from last.ckpt to the metrics of an uninterrupted one; a run folder
never mixes two runs; a killed suite redoes only its unfinished runs."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
from pathlib import Path

import lightning as L
import pandas as pd
import pytest
import torch
from benchmark.conftest import tiny_suite

from mmint.benchmark.grid import expand
from mmint.benchmark.results import read_results
from mmint.benchmark.runner import prepare_run_dir, run_suite
from mmint.cli import compose, compose_run
from mmint.errors import InputError
from mmint.fit import _setup, plain, run_fit, train_model

from .helpers import (
    TINY,
    kill_after_checkpoint,
    metrics,
    mmint,
    start,
    wait_group_gone,
    without_timing,
)


def test_killed_fit_resumes_to_the_same_metrics(tmp_path):
    """SIGKILL a real `mmint fit` right after the checkpoint of epoch 2 (or soon after) of 12;
    the rerun into the same folder resumes there and ends with the uninterrupted run's metrics
    and curves."""
    # every epoch: the default policy (writing under 5% of the time) depends on the load;
    # 12 epochs: a tiny epoch on a fast machine is shorter than one poll of the checkpoint
    args = ["fit", "model=multivi", *TINY, "model.max_epochs=12"]
    args.append("trainer.last_checkpoint.every_n_epochs=1")
    ref = mmint(*args, "hydra.run.dir=ref", cwd=tmp_path)
    assert ref.returncode == 0, ref.stderr[-2000:]
    proc = start(*args, "hydra.run.dir=killed", cwd=tmp_path)
    killed_at = kill_after_checkpoint(proc, tmp_path / "killed/checkpoints/last.ckpt", 2)
    assert killed_at < 11 and not (tmp_path / "killed/metrics.json").exists()
    rerun = mmint(*args, "hydra.run.dir=killed", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    log = (tmp_path / "killed/cli.log").read_text()
    assert "Restored all states from the checkpoint" in log  # resumed, not restarted
    a, b = metrics(tmp_path / "ref"), metrics(tmp_path / "killed")
    assert b["epochs"] == 12 and b["status"] == "ok"
    assert without_timing(a) == without_timing(b)
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "ref/curves.csv"), pd.read_csv(tmp_path / "killed/curves.csv")
    )


class _Trace(L.Callback):
    """Parameter checksum and torch RNG state at the end of every training epoch."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, float, str]] = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        total = sum(float(p.detach().double().sum()) for p in pl_module.parameters())
        rng = hashlib.md5(torch.get_rng_state().numpy().tobytes()).hexdigest()
        self.rows.append((trainer.current_epoch, total, rng))


def _train(cfg, run_dir: Path, epochs: int, ckpt=None, monkeypatch=None) -> list:
    trace = _Trace()
    monkeypatch.setattr("mmint.fit.DivergenceCheck", lambda name: trace)
    _, _, _, dm, model = _setup(cfg)
    train_model(model, dm, cfg, run_dir, epochs, [], ckpt)
    return trace.rows


@pytest.mark.parametrize("model", ["cvqvae", "unitednet"])
def test_resume_restores_weights_optimizers_and_random_state(model, tmp_path, monkeypatch):
    """2 epochs + a resume to 4 follow the 4-epoch fit exactly, epoch by epoch (optimizer
    moments, schedules, random streams and the model's own generators included)."""
    cfg = plain(compose("fit", [f"model={model}", *TINY]))
    whole = _train(cfg, tmp_path / "whole", 4, monkeypatch=monkeypatch)
    part = _train(cfg, tmp_path / "part", 2, monkeypatch=monkeypatch)
    rest = _train(cfg, tmp_path / "part", 4, tmp_path / "part/checkpoints/last.ckpt", monkeypatch)
    assert [r[0] for r in part + rest] == [0, 1, 2, 3]
    assert part + rest == whole


def test_rerun_with_another_config_is_refused(tmp_path):
    cfg = compose("fit", ["model=pca", *TINY])
    run_fit(cfg, tmp_path)
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    other = compose("fit", ["model=pca", *TINY, "seed=1"])
    with pytest.raises(InputError, match="holds another run"):
        run_fit(other, tmp_path)
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before
    # the same config reruns into it
    assert run_fit(cfg, tmp_path)["status"] == "ok"


def test_suite_cleans_a_run_folder_of_another_config(tmp_path, fake_fit):
    suite = tiny_suite(seeds=[0], floor=[])
    (run,) = expand(suite, ["logger=csv"])
    run_dir = tmp_path / "runs" / run.name
    old = compose_run([*run.overrides, "model.n_components=3"])
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(json.dumps(plain(old)))
    (run_dir / "outputs.h5mu").write_text("old run")
    same = compose_run(run.overrides)
    prepare_run_dir(run_dir, same)
    assert sorted(p.name for p in run_dir.iterdir()) == []
    run_suite(suite, tmp_path, ["logger=csv"], echo=lambda _: None, compose=compose_run)
    assert fake_fit == [run.name]


def test_killed_suite_redoes_only_unfinished_runs(tmp_path):
    """SIGKILL a real `mmint benchmark` once its first run is written: results.csv then holds
    finished runs only, once each; the rerun keeps them and adds the rest, one row per run."""
    import time

    args = [
        "benchmark",
        "suite=quick",
        "suite.models=[pca]",
        "suite.floor=[]",
        "suite.seeds=[0,1,2]",
        "suite.umap=false",
        *TINY,
        "hydra.run.dir=suite",
    ]
    # the quick suite runs two worker processes: kill the whole group, and read `finished`
    # only once none of them is left (a worker inside its last system call, e.g. the rename
    # that publishes metrics.json, completes that call before it dies)
    proc = start(*args, cwd=tmp_path, new_session=True)
    runs = tmp_path / "suite/runs"
    deadline = time.monotonic() + 240
    while not list(runs.glob("*/metrics.json")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    wait_group_gone(proc.pid)
    finished = {p.parent.name: p.stat().st_mtime_ns for p in runs.glob("*/metrics.json")}
    table = read_results(tmp_path / "suite/results.csv")
    rows = [Path(r).name for r in table["run_dir"]]
    assert len(rows) == len(set(rows)) and set(rows) <= set(finished)
    assert set(table["status"]) <= {"ok"}
    out = mmint(*args, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    cached = [ln for ln in out.stdout.splitlines() if ln.startswith("[") and "done earlier" in ln]
    assert len(cached) == len(finished)
    after = {p.parent.name: p.stat().st_mtime_ns for p in runs.glob("*/metrics.json")}
    assert {k: after[k] for k in finished} == finished  # finished runs untouched
    table = read_results(tmp_path / "suite/results.csv")
    assert sorted(table["seed"]) == [0, 1, 2] and set(table["status"]) == {"ok"}
    shutil.rmtree(tmp_path / "suite")

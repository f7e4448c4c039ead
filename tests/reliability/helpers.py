"""Helpers of the reliability tests: the ``mmint`` command in a subprocess on tiny data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

MMINT = str(Path(sys.executable).with_name("mmint"))

#: 300 cells, 4 types, small modalities; no Leiden / scIB (their JIT dominates a tiny fit)
TINY = [
    "logger=csv",
    "data.simulate.n_cells=300",
    "data.simulate.n_types=4",
    "data.simulate.n_major=2",
    "+data.simulate.n_features={rna: 100, atac: 200, ephys: 20}",
    "trainer.num_threads=1",
    "eval.scib=false",
    "eval.leiden=false",
    "eval.every_n_epochs=2",
]

#: metrics.json keys that measure the machine, not the result
TIMING_KEYS = {
    "fit_seconds",
    "eval_seconds",
    "eval_cpu_seconds",
    "peak_rss_mb",
    "seconds_per_epoch",
    "cells_per_second",
    "cpu_seconds_per_epoch",
}


def env() -> dict[str, str]:
    """The environment of a ``mmint`` subprocess: plain output, no W&B."""
    return {**os.environ, "CI": "true", "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}


def mmint(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``mmint <args>`` to completion."""
    return subprocess.run(
        [MMINT, *args], cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout
    )


def start(*args: str, cwd: Path, new_session: bool = False) -> subprocess.Popen:
    """Start ``mmint <args>`` in the background (``new_session``: in its own process group,
    so that ``os.killpg(proc.pid, ...)`` reaches its worker processes too)."""
    return subprocess.Popen(
        [MMINT, *args],
        cwd=cwd,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=new_session,
    )


def wait_group_gone(pgid: int, timeout: float = 10.0) -> None:
    """Wait until process group ``pgid`` has no process left (at most ``timeout`` s: an
    unreaped zombie keeps the group alive but can no longer write anything)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def checkpoint_epoch(path: Path) -> int | None:
    """Epoch of a Lightning checkpoint (None while it does not exist or is being replaced)."""
    try:
        return int(torch.load(path, map_location="cpu", weights_only=False)["epoch"])
    except (OSError, RuntimeError, EOFError, KeyError):
        return None


def kill_after_checkpoint(proc: subprocess.Popen, ckpt: Path, epoch: int, timeout: float = 240):
    """SIGKILL ``proc`` as soon as ``ckpt`` holds ``epoch`` (or a later one); return that epoch."""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the fit ended before epoch {epoch}: {proc.stdout.read()}")
        try:
            stamp = ckpt.stat().st_mtime_ns
        except FileNotFoundError:
            stamp = None
        if stamp is not None and stamp != seen:
            seen = stamp
            proc.send_signal(signal.SIGSTOP)  # no further epochs while the checkpoint is read
            got = checkpoint_epoch(ckpt)
            if got is not None and got >= epoch:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return got
            proc.send_signal(signal.SIGCONT)
        time.sleep(0.01)
    proc.kill()
    raise AssertionError(f"no checkpoint of epoch {epoch} within {timeout} s")


def metrics(run_dir: Path) -> dict:
    """The run's metrics.json."""
    return json.loads((run_dir / "metrics.json").read_text())


def without_timing(m: dict) -> dict:
    """metrics.json without the keys that measure the machine."""
    return {k: v for k, v in m.items() if k not in TIMING_KEYS}

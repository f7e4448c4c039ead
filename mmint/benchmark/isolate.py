"""``suite.isolate: true``: each run in a fresh process, with its own peak RSS and CPU seconds.

The parent writes the run's composed config to a scratch folder and starts
``python -m mmint.benchmark.isolate_child <job.json>``; the child fits exactly as an in-process run
does (:func:`mmint.benchmark.runner.execute`) and writes its outcome (with its own peak RSS)
beside the job. The parent reaps the child with ``os.wait4``, whose CPU seconds are the
child's alone, and adds to the run's ``metrics.json``::

    "process": {"isolated": true, "cpu_seconds": user + sys, "peak_rss_mb": the child's,
                "wall_seconds": ..., "threads": n or null}

(The peak RSS is the child's own reading, not ``wait4``'s ``ru_maxrss``: after ``exec`` that
keeps the parent's high-water mark, see :func:`mmint.callbacks.timing.peak_rss_mb`.)

so growth curves and speed ratios compare processes that shared nothing (no warm JIT, no
allocator state, no memory high-water mark of an earlier run). ``suite.threads`` pins the
child to that many threads (torch, BLAS/OpenMP, XLA); ``suite.timeout_s`` kills a child that
runs longer (the run fails with the time in its error).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from mmint.callbacks.timing import maxrss_mb
from mmint.io import read_json, write_json

#: characters of a dead child's output kept as the run's traceback
LOG_TAIL = 4000


def thread_env(threads: int | None) -> dict[str, str]:
    """Environment that caps a process at ``threads`` threads (empty for no cap)."""
    if not threads:
        return {}
    n = str(int(threads))
    return {
        "OMP_NUM_THREADS": n,
        "OPENBLAS_NUM_THREADS": n,
        "MKL_NUM_THREADS": n,
        "NUMBA_NUM_THREADS": n,
        "MMINT_TORCH_THREADS": n,
        "XLA_FLAGS": f"--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads={n}",
    }


def isolated(suite: Any) -> Callable[[dict[str, Any], str | Path], Any] | None:
    """The run function of a suite with ``isolate: true`` (picklable, for worker pools), or
    None for in-process runs."""
    if not getattr(suite, "isolate", False):
        return None
    return partial(execute_isolated, threads=suite.threads, timeout_s=suite.timeout_s)


def execute_isolated(
    cfg: dict[str, Any],
    run_dir: str | Path,
    threads: int | None = None,
    timeout_s: float | None = None,
) -> tuple[str | None, str | None, float]:
    """Fit one run in a fresh process; ``(error, traceback, seconds)`` like
    :func:`mmint.benchmark.runner.execute`.

    On success the run's ``metrics.json`` gains ``process`` (see the module docstring).
    """
    run_dir = Path(run_dir)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mmint-isolate-") as tmp:
        job, outcome, log = Path(tmp, "job.json"), Path(tmp, "outcome.json"), Path(tmp, "log")
        write_json(job, {"cfg": cfg, "run_dir": str(run_dir), "outcome": str(outcome)})
        argv = [sys.executable, "-m", "mmint.benchmark.isolate_child", str(job)]
        status, usage, timed_out = run_child(argv, thread_env(threads), log, timeout_s)
        wall = time.perf_counter() - t0
        peak = None
        if outcome.exists():
            result = read_json(outcome)
            error, tb = result.get("error"), result.get("traceback")
            peak = result.get("peak_rss_mb")
        else:
            tail = log.read_text(errors="replace")[-LOG_TAIL:]
            error, tb = _death(status, timed_out, timeout_s), tail
    if error is None:
        process = {
            "isolated": True,
            "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "peak_rss_mb": maxrss_mb(usage) if peak is None else float(peak),
            "wall_seconds": wall,
            "threads": threads,
        }
        metrics_path = run_dir / "metrics.json"
        metrics = read_json(metrics_path)
        metrics["process"] = process
        write_json(metrics_path, metrics)
    return error, tb, wall


def run_child(
    argv: list[str], env: dict[str, str], log: Path, timeout_s: float | None = None
) -> tuple[int, Any, bool]:
    """Run ``argv`` (output to ``log``, ``env`` added to this process's environment), killing
    it after ``timeout_s``; ``(wait status, the child's rusage, timed_out)``."""
    with open(log, "wb") as out:
        child = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env}
        )
        return _reap(child, timeout_s)


def _reap(child: subprocess.Popen, timeout_s: float | None) -> tuple[int, Any, bool]:
    deadline = None if timeout_s is None else time.monotonic() + float(timeout_s)
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            child.returncode = os.waitstatus_to_exitcode(status)
            return status, usage, False
        if deadline is not None and time.monotonic() > deadline:
            child.kill()
            _, status, usage = os.wait4(child.pid, 0)
            child.returncode = os.waitstatus_to_exitcode(status)
            return status, usage, True
        time.sleep(0.1)


def _death(status: int, timed_out: bool, timeout_s: float | None) -> str:
    """The one-line error of a child that wrote no outcome."""
    if timed_out:
        return f"TimeoutError: the run's process ran past suite.timeout_s={timeout_s:g} s"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        why = " (out of memory?)" if sig == signal.SIGKILL else ""
        return f"ProcessError: the run's process was killed by {signal.Signals(sig).name}{why}"
    return f"ProcessError: the run's process exited with code {os.waitstatus_to_exitcode(status)}"

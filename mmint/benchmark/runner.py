"""Run a suite's grid: resumable, one failed run never stops the suite.

Each run goes through :func:`mmint.fit.run_fit` into ``<suite dir>/runs/<run name>/``:
in-process with ``n_jobs=1`` (scib-metrics' JIT compiles once), else in ``n_jobs`` worker
processes (spawn). A run whose ``metrics.json`` holds a successful fit of the run's config is
reused when its reuse key (:mod:`mmint.reuse`: the model's built hyper-parameters and the input
data) still matches (``key: match``), or when it has no key (older runs, matched by config
hash: ``key: legacy``); a stale run is rerun, or with ``suite.reuse=stale_ok`` reused and
marked ``key: stale``. A failed run gets ``failed.json`` (``status``, one-line ``error``,
``traceback``) and a ``failed`` row. ``results.csv`` is rewritten atomically after every run,
so a kill mid-suite loses no finished run.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mmint.benchmark.grid import RunSpec, Suite, expand, missing_dataset
from mmint.benchmark.isolate import isolated
from mmint.benchmark.long_fits import long_fit_note
from mmint.benchmark.results import results_table, rows_outside, run_row, write_results
from mmint.benchmark.reuse_check import ReuseCheck
from mmint.callbacks.progress import format_seconds, in_ci
from mmint.io import WriteFailed, read_json, remove_temporaries, write_json
from mmint.runlock import folder_lock

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

#: overrides -> the run's composed config as a plain dict (the entry point's Hydra compose,
#: :func:`mmint.cli.compose_run`)
Compose = Callable[[list[str]], dict[str, Any]]


@dataclass
class SuiteRun:
    """What :func:`run_suite` did."""

    table: pd.DataFrame
    runs: list[RunSpec]
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def one_line(err: BaseException) -> str:
    """``Type: message`` on one line (whitespace and terminal colour codes removed, at most 500
    characters)."""
    text = " ".join(_ANSI.sub("", str(err)).split())
    line = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return line if len(line) <= 500 else line[:497] + "..."


def run_dir_of(suite_dir: Path, run: RunSpec) -> Path:
    """``<suite dir>/runs/<run name>``."""
    return suite_dir / "runs" / run.name


def is_done(run_dir: Path, cfg: dict[str, Any]) -> bool:
    """Whether the run has a ``metrics.json`` of a successful fit of this very config."""
    from mmint.fit import config_hash

    path = run_dir / "metrics.json"
    if not path.exists():
        return False
    try:
        info = read_json(path)
    except (OSError, ValueError):
        return False
    return info.get("config_hash") == config_hash(cfg) and info.get("status", "ok") == "ok"


#: the progress line of a reused run, by its key's state (:meth:`ReuseCheck.state`)
_REUSED = {
    "match": "done earlier (metrics.json matches its config, model and data), skipped",
    "legacy": "done earlier (metrics.json matches its config; older mmint, key: legacy), skipped",
    "stale": "done earlier, reused although STALE (suite.reuse=stale_ok)",
}


def prepare_run_dir(run_dir: Path, cfg: dict[str, Any]) -> None:
    """Empty a run folder that holds another config's run (the suite owns its folders), so
    that the new run never mixes with the old one's files; a run of this config stays (it
    resumes from its ``last.ckpt``)."""
    from mmint.fit import run_dir_state

    if run_dir.exists() and run_dir_state(run_dir, cfg) == "other":
        clean_run_dir(run_dir)


def execute(cfg: dict[str, Any], run_dir: str | Path) -> tuple[str | None, str | None, float]:
    """Fit one run; ``(error, traceback, seconds)`` with ``error`` the one-line error or None."""
    from mmint import fit

    t0 = time.perf_counter()
    cfg = dict(cfg)
    trainer = dict(cfg.get("trainer") or {})
    if trainer.get("enable_progress_bar") is None:  # the suite shows its own progress
        cfg["trainer"] = {**trainer, "enable_progress_bar": False}
    try:
        prepare_run_dir(Path(run_dir), cfg)
        fit.run_fit(cfg, run_dir)
    except WriteFailed:  # the suite's storage failed: stop the suite (finished runs kept)
        raise
    except Exception as err:  # noqa: BLE001 - a failed run is a result, not a crash
        return one_line(err), traceback.format_exc(), time.perf_counter() - t0
    return None, None, time.perf_counter() - t0


def clean_run_dir(run_dir: Path) -> None:
    """Empty a run folder (:func:`mmint.fit.clean_run_dir`)."""
    from mmint.fit import clean_run_dir as clean

    if run_dir.exists():
        clean(run_dir)


#: the suite's log file in its folder (Hydra's job log of ``mmint benchmark``)
LOG_FILE = "cli.log"
_LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"


def _die_with_parent() -> None:
    """Linux: this worker is killed when the suite process dies (even by SIGKILL), so that no
    orphan finishes a run behind a resumed suite's back."""
    if sys.platform != "linux":
        return
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1


def _init_worker(threads: int, log_file: str | None = None) -> None:
    """A worker process: ``threads`` torch threads, and a console as quiet as the parent's
    (:func:`mmint.console.setup_console`): library banners and warnings go to the suite's log
    file, mmint's own lines and errors to the terminal."""
    import logging

    import torch

    from mmint.console import setup_console

    _die_with_parent()
    torch.set_num_threads(max(1, threads))
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    if log_file:
        handler = logging.FileHandler(log_file)
        handler.setFormatter(logging.Formatter(_LOG_FORMAT))
        root.addHandler(handler)
    root.addHandler(logging.StreamHandler())
    setup_console(verbose=False)


def run_suite(
    suite: Suite,
    suite_dir: str | Path,
    base_overrides: Iterable[str] = (),
    echo: Callable[[str], None] = print,
    *,
    compose: Compose,
) -> SuiteRun:
    """Run every run of ``suite`` not already done; return the results table.

    Parameters
    ----------
    suite
        The suite.
    suite_dir
        Its folder (``results.csv``, ``runs/``).
    base_overrides
        Overrides every run gets first (the command line's, e.g. ``logger=csv``).
    echo
        Where progress lines go.
    compose
        Composes a run's overrides into its config (:func:`mmint.cli.compose_run`); a run
        whose overrides do not compose fails alone.

    Raises
    ------
    mmint.runlock.FolderBusy
        When another live process runs a suite in ``suite_dir``.
    """
    suite_dir = Path(suite_dir)
    with folder_lock(suite_dir, "mmint benchmark"):
        try:
            return _run_suite(suite, suite_dir, base_overrides, echo, compose)
        except KeyboardInterrupt:
            echo(kept_line(expand(suite, base_overrides), suite_dir))
            raise


def kept_line(runs: list[RunSpec], suite_dir: Path) -> str:
    """Write ``results.csv`` of an interrupted suite (a run may have finished after the last
    write) and say what it keeps."""
    rows = [run_row(r, run_dir_of(suite_dir, r), suite_dir) for r in runs]
    other = rows_outside(suite_dir, _shown_dirs(runs, suite_dir))
    kept = [r for r in rows if r is not None] + other
    write_results(results_table(kept), suite_dir / "results.csv")
    ok = sum(1 for r in rows if r is not None and r["status"] == "ok")
    failed = sum(1 for r in rows if r is not None and r["status"] != "ok")
    return (
        f"interrupted: kept {ok} finished run(s)"
        + (f" and {failed} failed one(s)" if failed else "")
        + f" of {len(runs)} in {suite_dir / 'results.csv'}; the other {len(runs) - ok - failed} "
        "run when the suite is rerun (a model that trains in epochs resumes from its "
        "last.ckpt)"
    )


def _shown_dirs(runs: Iterable[RunSpec], suite_dir: Path) -> list[str]:
    """The ``run_dir`` values of ``runs`` as ``results.csv`` shows them."""
    return [str(run_dir_of(suite_dir, r).relative_to(suite_dir)) for r in runs]


def _run_suite(
    suite: Suite,
    suite_dir: Path,
    base_overrides: Iterable[str],
    echo: Callable[[str], None],
    compose: Compose,
) -> SuiteRun:
    (suite_dir / "runs").mkdir(parents=True, exist_ok=True)
    remove_temporaries(suite_dir)  # of a killed earlier suite (this process holds the folder)
    notes = []
    skipped_data = set()
    if suite.skip_missing_data:
        for name in suite.datasets:
            why = missing_dataset(name)
            if why:
                skipped_data.add(name)
                notes.append(f"skipped dataset {name}: {why}")
                echo(f"note: skipped dataset {name}: {why}")
    runs = [r for r in expand(suite, base_overrides) if r.data not in skipped_data]
    counts = {"ok": 0, "failed": 0, "cached": 0}
    keys: dict[str, str] = {}  # run name -> how its reuse key stands (results.csv `key`)
    check = ReuseCheck()
    # the folder's other finished runs (a suite narrowed by suite.models / suite.datasets)
    other = rows_outside(suite_dir, _shown_dirs(runs, suite_dir))
    if other:
        echo(f"note: results.csv keeps {len(other)} finished run(s) outside this grid")

    def save() -> pd.DataFrame:
        rows = [run_row(r, run_dir_of(suite_dir, r), suite_dir) for r in runs]
        for run, row in zip(runs, rows, strict=True):
            if row is not None:
                row["key"] = keys.get(run.name, "match") if row["status"] == "ok" else ""
        table = results_table([*(r for r in rows if r is not None), *other])
        write_results(table, suite_dir / "results.csv")
        return table

    def record(run: RunSpec, cfg: dict | None, error: str | None, tb: str | None) -> None:
        run_dir = run_dir_of(suite_dir, run)
        failed = run_dir / "failed.json"
        if error is None:
            failed.unlink(missing_ok=True)
        else:
            from mmint.fit import config_hash

            write_json(
                failed,
                {
                    "model": run.model,
                    "data": run.data,
                    "seed": run.seed,
                    "variant": run.variant,
                    "config_hash": config_hash(cfg) if cfg else None,
                    "status": "failed",
                    "error": error,
                    "traceback": tb,
                    "overrides": run.overrides,
                },
            )

    pending: list[tuple[RunSpec, dict]] = []
    with _Progress(len(runs), echo) as bar:
        for run in runs:
            run_dir = run_dir_of(suite_dir, run)
            try:
                cfg = compose(run.overrides)
            except Exception as err:  # noqa: BLE001 - a bad override fails this run only
                record(run, None, one_line(err), traceback.format_exc())
                counts["failed"] += 1
                bar.done(run, f"failed: {one_line(err)}")
                save()
                continue
            state, why = check.state(run_dir, cfg)
            if state in ("match", "legacy") or (state == "stale" and suite.reuse == "stale_ok"):
                (run_dir / "failed.json").unlink(missing_ok=True)
                counts["cached"] += 1
                keys[run.name] = state
                bar.done(run, _REUSED[state] + (f": {why}" if state == "stale" else ""))
                continue
            if state == "stale":  # the same YAML, but the model or the data changed
                echo(f"note: {run.name}: rerun, {why} (suite.reuse=stale_ok reuses it)")
                clean_run_dir(run_dir)  # no resume from the former model's last.ckpt
            pending.append((run, cfg))
        save()
        bar.to_fit = len(pending)

        def finished(
            run: RunSpec, cfg: dict, error: str | None, tb: str | None, secs: float
        ) -> None:
            record(run, cfg, error, tb)
            counts["failed" if error else "ok"] += 1
            bar.done(run, f"failed: {error}" if error else f"ok ({secs:.1f} s)", secs)
            save()

        def left_out(run: RunSpec) -> bool:
            """The one-seed rule (``suite.one_seed_above_s``): say so and count it."""
            same = (run.model, run.data, run.variant)
            others = {
                r.seed: run_dir_of(suite_dir, r)
                for r in runs
                if (r.model, r.data, r.variant) == same
            }
            what = f"`{run.model}` on `{run.data}`" + (
                f" ({run.variant})" if run.variant != "default" else ""
            )
            why = long_fit_note(run.seed, others, suite.one_seed_above_s, what)
            if why:
                counts["not_run"] = counts.get("not_run", 0) + 1
                notes.append(why)
                bar.to_fit -= 1
                bar.done(run, f"not run: {why}")
            return bool(why)

        fit_one = isolated(suite) or execute
        if suite.n_jobs <= 1 or len(pending) <= 1:
            for run, cfg in pending:
                if left_out(run):  # decided when its turn comes: an earlier seed may be long
                    continue
                bar.start(run)
                finished(run, cfg, *fit_one(cfg, run_dir_of(suite_dir, run)))
        else:
            pending = [(run, cfg) for run, cfg in pending if not left_out(run)]
            threads = max(1, (os.cpu_count() or 1) // suite.n_jobs)
            ctx = multiprocessing.get_context("spawn")
            log = Path(suite_dir) / LOG_FILE
            init = (threads, str(log) if log.exists() else None)
            with ProcessPoolExecutor(
                suite.n_jobs, mp_context=ctx, initializer=_init_worker, initargs=init
            ) as pool:
                futures = {
                    pool.submit(fit_one, cfg, str(run_dir_of(suite_dir, run))): (run, cfg)
                    for run, cfg in pending
                }
                for fut in as_completed(futures):
                    run, cfg = futures[fut]
                    try:
                        error, tb, secs = fut.result()
                    except WriteFailed:
                        pool.shutdown(wait=False, cancel_futures=True)
                        raise
                    except Exception as err:  # noqa: BLE001 - e.g. a worker killed for memory
                        error, tb, secs = (
                            f"worker process failed: {one_line(err)}",
                            traceback.format_exc(),
                            0.0,
                        )
                    finished(run, cfg, error, tb, secs)
    return SuiteRun(save(), runs, counts, notes)


class _Progress:
    """A rich progress bar over the suite's runs; one plain line per run when ``CI=true``."""

    def __init__(self, total: int, echo: Callable[[str], None]) -> None:
        self.total = total
        self.n = 0
        self.echo = echo
        self.bar: Any = None
        self.task: Any = None
        self.fitted: list[float] = []  # seconds of the runs fitted here (not the cached ones)
        self.to_fit = 0

    def __enter__(self) -> _Progress:
        if not in_ci() and self.total:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self.bar = Progress(
                TextColumn("[bold]suite[/bold] {task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[left]}"),
            )
            self.bar.start()
            self.task = self.bar.add_task("", total=self.total, left="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def start(self, run: RunSpec) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description=run.name)

    def time_left(self) -> str:
        """Estimated time for the runs still to fit: their count x the mean fit so far."""
        if not self.fitted:
            return ""
        left = (self.to_fit - len(self.fitted)) * sum(self.fitted) / len(self.fitted)
        return f"time left ~{format_seconds(left)}" if left > 0 else ""

    def done(self, run: RunSpec, what: str, seconds: float | None = None) -> None:
        self.n += 1
        if seconds is not None:
            self.fitted.append(seconds)
        left = self.time_left()
        line = f"[{self.n}/{self.total}] {run.name}: {what}" + (f", {left}" if left else "")
        if self.bar is not None:
            self.bar.console.print(line, markup=False, highlight=False)
            self.bar.update(self.task, advance=1, left=left)
        else:
            self.echo(line)

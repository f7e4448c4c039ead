"""Run a suite's grid: resumable, one failed run never stops the suite.

Each run goes through :func:`mmint.fit.run_fit` into ``<suite dir>/runs/<run name>/``:
in-process with ``n_jobs=1`` (scib-metrics' JIT compiles once), else in ``n_jobs`` worker
processes (spawn). A run whose ``metrics.json`` exists with the ``config_hash`` of the run's
config is skipped. A failed run gets ``failed.json`` (``status``, one-line ``error``,
``traceback``) and a ``failed`` row. ``results.csv`` is rewritten atomically after every run,
so a kill mid-suite loses no finished run.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import time
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mmint.benchmark.grid import RunSpec, Suite, compose_run, expand, missing_dataset
from mmint.benchmark.results import results_table, run_row, write_results
from mmint.io import read_json, write_json

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


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


def in_ci() -> bool:
    """Whether ``CI`` is set to true (plain output, no progress bars)."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def run_dir_of(suite_dir: Path, run: RunSpec) -> Path:
    """``<suite dir>/runs/<run name>``."""
    return suite_dir / "runs" / run.name


def is_done(run_dir: Path, cfg: dict[str, Any]) -> bool:
    """Whether the run has a ``metrics.json`` made from this very config."""
    from mmint.fit import config_hash

    path = run_dir / "metrics.json"
    if not path.exists():
        return False
    try:
        return read_json(path).get("config_hash") == config_hash(cfg)
    except (OSError, ValueError):
        return False


def execute(cfg: dict[str, Any], run_dir: str | Path) -> tuple[str | None, str | None, float]:
    """Fit one run; ``(error, traceback, seconds)`` with ``error`` the one-line error or None."""
    from mmint import fit

    t0 = time.perf_counter()
    try:
        fit.run_fit(cfg, run_dir)
    except Exception as err:  # noqa: BLE001 - a failed run is a result, not a crash
        return one_line(err), traceback.format_exc(), time.perf_counter() - t0
    return None, None, time.perf_counter() - t0


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(max(1, threads))


def run_suite(
    suite: Suite,
    suite_dir: str | Path,
    base_overrides: Iterable[str] = (),
    echo: Callable[[str], None] = print,
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
    """
    suite_dir = Path(suite_dir)
    (suite_dir / "runs").mkdir(parents=True, exist_ok=True)
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

    def save() -> pd.DataFrame:
        rows = [run_row(r, run_dir_of(suite_dir, r), suite_dir) for r in runs]
        table = results_table(r for r in rows if r is not None)
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
                cfg = compose_run(run.overrides)
            except Exception as err:  # noqa: BLE001 - a bad override fails this run only
                record(run, None, one_line(err), traceback.format_exc())
                counts["failed"] += 1
                bar.done(run, f"failed: {one_line(err)}")
                save()
                continue
            if is_done(run_dir, cfg):
                (run_dir / "failed.json").unlink(missing_ok=True)
                counts["cached"] += 1
                bar.done(run, "done earlier (metrics.json matches its config), skipped")
                continue
            pending.append((run, cfg))
        save()

        def finished(
            run: RunSpec, cfg: dict, error: str | None, tb: str | None, secs: float
        ) -> None:
            record(run, cfg, error, tb)
            counts["failed" if error else "ok"] += 1
            bar.done(run, f"failed: {error}" if error else f"ok ({secs:.1f} s)")
            save()

        if suite.n_jobs <= 1 or len(pending) <= 1:
            for run, cfg in pending:
                bar.start(run)
                finished(run, cfg, *execute(cfg, run_dir_of(suite_dir, run)))
        else:
            threads = max(1, (os.cpu_count() or 1) // suite.n_jobs)
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(
                suite.n_jobs, mp_context=ctx, initializer=_init_worker, initargs=(threads,)
            ) as pool:
                futures = {
                    pool.submit(execute, cfg, str(run_dir_of(suite_dir, run))): (run, cfg)
                    for run, cfg in pending
                }
                for fut in as_completed(futures):
                    run, cfg = futures[fut]
                    try:
                        error, tb, secs = fut.result()
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
            )
            self.bar.start()
            self.task = self.bar.add_task("", total=self.total)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def start(self, run: RunSpec) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description=run.name)

    def done(self, run: RunSpec, what: str) -> None:
        self.n += 1
        line = f"[{self.n}/{self.total}] {run.name}: {what}"
        if self.bar is not None:
            self.bar.console.print(line, markup=False, highlight=False)
            self.bar.update(self.task, advance=1)
        else:
            self.echo(line)

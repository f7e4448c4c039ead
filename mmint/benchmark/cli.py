"""``mmint benchmark suite=<name> [overrides]``: run a suite, write ``results.csv``,
``report.md`` (leaderboard first), ``plots/``, ``controls/``, ``scaled.csv`` and
``leaderboard.csv`` in the suite folder (Hydra's run dir, by default
``runs/benchmark/<suite>``), print the summary table.

Overrides other than ``suite.*`` and ``hydra.*`` reach every run (``logger=csv``,
``trainer=cpu``, ``eval.scib=false``, ...); ``model=``, ``data=``, ``seed=`` and ``variant=``
are the grid's and are ignored (use ``suite.models=[...]`` etc.).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from mmint.benchmark.board import BoardOptions
from mmint.benchmark.grid import Suite, expand, passthrough
from mmint.benchmark.publish import Source, source_controls, write_suite_outputs
from mmint.benchmark.report import ReportOptions, summary_table
from mmint.benchmark.results import provenance_notes
from mmint.benchmark.runner import Compose, SuiteRun, run_suite
from mmint.benchmark.studies import write_sections
from mmint.runlock import folder_lock


def run_benchmark(
    suite: Suite,
    suite_dir: str | Path,
    base_overrides: Iterable[str] = (),
    logger_kind: str = "csv",
    project: str = "mmint",
    echo: Callable[[str], None] = print,
    *,
    compose: Compose,
) -> SuiteRun:
    """Run ``suite`` into ``suite_dir`` and write its results, plots, report and (with
    ``logger_kind='wandb'``) the ``suite-summary`` W&B run. The folder is held by this process
    meanwhile (:mod:`mmint.runlock`): a second suite on it is refused. ``compose`` turns a
    run's overrides into its config (:func:`mmint.cli.compose_run`)."""
    suite_dir = Path(suite_dir)
    with folder_lock(suite_dir, "mmint benchmark"):
        return _run_benchmark(suite, suite_dir, base_overrides, logger_kind, project, echo, compose)


def _run_benchmark(
    suite: Suite,
    suite_dir: Path,
    base_overrides: Iterable[str],
    logger_kind: str,
    project: str,
    echo: Callable[[str], None],
    compose: Compose,
) -> SuiteRun:
    echo(f"suite {suite.name}: {len(expand(suite, base_overrides))} runs -> {suite_dir}")
    done = run_suite(suite, suite_dir, base_overrides, echo=echo, compose=compose)
    table = done.table
    opts = ReportOptions(
        name=suite.name,
        reference=suite.reference or "default",
        floor=suite.floor,
        single_task_variants=suite.single_task_variants,
        notes=[*done.notes, *suite.skip_notes(), *provenance_notes(table)],
        description=suite.description,
    )
    board_opts = BoardOptions.from_dict(suite.leaderboard)
    source = Source(table, suite_dir, suite, list(base_overrides))
    controls = source_controls(source, compose, echo) if board_opts.controls else {}
    board = write_suite_outputs(
        table, suite_dir, opts, board_opts, controls, umap=suite.umap, echo=echo
    )
    if suite.sections:
        write_sections(table, suite_dir, suite.sections)
    if logger_kind == "wandb":
        from mmint.benchmark.wandb_sync import log_suite_summary

        try:
            log_suite_summary(
                table,
                suite_dir,
                suite.name,
                sorted((suite_dir / "plots").glob("*.png")),
                project=project,
                summary={f"runs_{k}": v for k, v in done.counts.items()},
                leaderboard=board.table,
            )
        except Exception as err:  # noqa: BLE001 - the report is written; W&B is extra
            echo(f"note: the W&B suite-summary run failed: {type(err).__name__}: {err}")
    return done


def main(cfg: Any, compose: Compose) -> None:
    """The ``benchmark`` command (called by :mod:`mmint.cli` under ``hydra.main``, which
    passes its ``compose`` for the runs' configs)."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    suite = Suite.from_config(cfg.get("suite"))
    suite_dir = Path(hc.runtime.output_dir)
    keep, dropped = passthrough(list(hc.overrides.task))
    if dropped_grid := [
        o for o in dropped if o.split("=")[0].lstrip("+~") in ("model", "data", "seed", "variant")
    ]:
        print(
            f"note: ignored {' '.join(dropped_grid)}: the suite sets them "
            "(use suite.models=[...], suite.datasets=[...], suite.seeds=[...])"
        )
    logger = cfg.get("logger") or {}
    done = run_benchmark(
        suite,
        suite_dir,
        keep,
        logger_kind=logger.get("kind", "csv"),
        project=logger.get("project", "mmint"),
        compose=compose,
    )
    table = done.table
    print(
        f"\nsuite {suite.name}: {done.counts.get('ok', 0)} ok, {done.counts.get('cached', 0)} "
        f"done earlier, {done.counts.get('failed', 0)} failed"
        + (f", {done.counts['not_run']} not run (one seed)" if done.counts.get("not_run") else "")
    )
    print(summary_table(table, suite.floor))
    print(f"\nresults: {suite_dir / 'results.csv'}\nreport:  {suite_dir / 'report.md'}")
    if len(table) and "status" in table and not (table["status"] == "ok").any():
        raise SystemExit(1)

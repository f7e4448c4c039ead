"""``mmint report <results.csv | suite folder> [...] out=<dir> [key=value ...]``: one report
(leaderboard, critical-difference diagrams, per-dataset tables) from the results of one or
several suites, without fitting anything. A suite folder stands for every finished run in its
``runs/`` (each run's ``metrics.json``), whichever suite invocation fitted it.

Options (``key=value``):

- ``out=<dir>`` (required): where ``report.md``, ``plots/``, ``scaled.csv`` and
  ``leaderboard.csv`` go, and the suites' study sections (``suite.sections``: ``scale.csv``,
  ``speed.csv``, ``parity.csv``), so a long study can be reported while it runs;
- ``suites=[a,b]`` (one per results file, in order) or ``suite=<name>`` (all): the suite
  configs (``mmint/conf/suite``) whose overrides give the runs' data and splits; by default
  the name of each results file's folder when it is a suite's name;
- ``name=<title>``;
- ``leaderboard.<key>=<value>``: ``clip``, ``weights``, ``bio_weight``, ``batch_weight``,
  ``min_gap``, ``posthoc`` (``wilcoxon_holm`` | ``nemenyi``), ``alpha``, ``power``,
  ``n_boot``, ``controls`` (override the suites' ``leaderboard`` settings);
- ``logger=wandb``: also log the leaderboard and results as a W&B ``suite-summary`` run;
- anything else (``eval.scib=false``, ``data.simulate.n_cells=300``) is a config override
  for composing the runs' data and splits, as the suite's runs got it.

Each suite's controls are computed once into ``<its folder>/controls/`` (the data must be
readable: ``MMINT_DATA_DIR``) and reused afterwards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmint.benchmark.runner import Compose
from mmint.errors import InputError

KNOWN = ("out", "suite", "suites", "name", "logger")


def parse(args: list[str]) -> tuple[list[Path], dict[str, Any], dict[str, Any], list[str]]:
    """``(results files, options, leaderboard options, overrides)`` from the command line."""
    from omegaconf import OmegaConf

    paths = [Path(a) for a in args if "=" not in a]
    pairs = [a for a in args if "=" in a]
    opts: dict[str, Any] = {}
    board: dict[str, Any] = {}
    overrides = []
    for item in pairs:
        key = item.split("=", 1)[0]
        if key in KNOWN or key.startswith("leaderboard."):
            value = OmegaConf.to_container(OmegaConf.from_dotlist([item]))
            if key.startswith("leaderboard."):
                board.update(value["leaderboard"])
            else:
                opts.update(value)
        else:
            overrides.append(item)
    if not paths:
        raise InputError(
            "no results file given", "mmint report", "mmint report <results.csv> ... out=<dir>"
        )
    for p in paths:
        if not (p.is_file() or (p / "runs").is_dir()):
            raise InputError(
                f"no such results file or suite folder: {p}",
                "mmint report",
                "give results.csv paths or suite folders (holding runs/)",
            )
    if not opts.get("out"):
        raise InputError("no output folder given", "mmint report", "add out=<dir>")
    return paths, opts, board, overrides


def _suite_names(paths: list[Path], opts: dict[str, Any]) -> list[str | None]:
    from mmint.benchmark.grid import check_suite_name, suite_names

    if opts.get("suites") is not None:
        names = [str(s) for s in opts["suites"]]
        if len(names) != len(paths):
            raise InputError(
                f"{len(names)} suites for {len(paths)} results files",
                "suites=",
                "give one suite per results file, in order",
            )
    elif opts.get("suite"):
        names = [str(opts["suite"])] * len(paths)
    else:
        known = set(suite_names())
        folders = [_folder(p).name for p in paths]
        return [name if name in known else None for name in folders]
    for n in names:
        check_suite_name(n)
    return list(names)


def _folder(path: Path) -> Path:
    """The suite folder of a results file or folder argument."""
    return path.resolve() if path.is_dir() else path.resolve().parent


def load_suite(name: str, compose: Compose):
    """The suite config ``mmint/conf/suite/<name>.yaml`` as a :class:`Suite`."""
    from mmint.benchmark.grid import Suite

    return Suite.from_config(compose([f"suite={name}"])["suite"])


def main(args: list[str], compose: Compose) -> None:
    """Run the ``report`` command; ``compose`` composes a run's overrides into its config
    (:func:`mmint.cli.compose_run`)."""
    from mmint.benchmark.board import BoardOptions
    from mmint.benchmark.publish import Source, merge, source_controls, write_suite_outputs
    from mmint.benchmark.report import ReportOptions
    from mmint.benchmark.results import folder_results, read_results
    from mmint.benchmark.studies import write_sections

    paths, opts, board_cfg, overrides = parse(args)
    names = _suite_names(paths, opts)
    sources, notes = [], []
    for path, name in zip(paths, names, strict=True):
        suite = load_suite(name, compose) if name else None
        if suite is None:
            notes.append(
                f"{path}: no suite config found (suite=<name>); controls composed from "
                "model, data and seed alone"
            )
        table = folder_results(path) if path.is_dir() else read_results(path)
        sources.append(Source(table, _folder(path), suite, overrides))
    suites = [s.suite for s in sources if s.suite is not None]
    cfg = {**(suites[0].leaderboard if suites else {}), **board_cfg}
    board_opts = BoardOptions.from_dict(cfg)
    controls: dict = {}
    if board_opts.controls:
        for s in sources:
            controls.update(source_controls(s, compose))
    table, merge_notes = merge(sources)
    title = opts.get("name") or " + ".join(
        dict.fromkeys(s.suite.name if s.suite else s.folder.name for s in sources)
    )
    report_opts = ReportOptions(
        name=str(title),
        reference=suites[0].reference if suites else "default",
        floor=list(dict.fromkeys(f for s in suites for f in s.floor)) or ["pca"],
        single_task_variants=list(dict.fromkeys(v for s in suites for v in s.single_task_variants)),
        notes=[*notes, *merge_notes, *[n for s in suites for n in s.skip_notes()]],
        description="\n\n".join(s.description for s in suites if s.description),
    )
    out = Path(str(opts["out"]))
    board = write_suite_outputs(table, out, report_opts, board_opts, controls)
    sections = {k: v for s in suites for k, v in s.sections.items()}
    if sections:  # a study's scale / speed / parity tables, also of a suite still running
        write_sections(table, out, sections)
    print(f"report: {out / 'report.md'}")
    if board.friedman is not None:
        print(f"Friedman p = {board.friedman.pvalue:.3g} over {board.friedman.n_blocks} blocks")
    if str(opts.get("logger", "")) == "wandb":
        from mmint.benchmark.wandb_sync import log_suite_summary

        log_suite_summary(table, out, str(title), board.plots, leaderboard=board.table)

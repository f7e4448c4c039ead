"""A suite folder's outputs from its results: controls, leaderboard, ``report.md``, plots,
``scaled.csv`` and ``leaderboard.csv``; used by ``mmint benchmark`` at its end and by
``mmint report`` (one or several suites merged)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mmint.benchmark.board import Board, BoardOptions, build_board
from mmint.benchmark.controls import controls_for_runs
from mmint.benchmark.grid import Suite, expand
from mmint.benchmark.leaderboard import Key
from mmint.benchmark.plots import make_plots
from mmint.benchmark.report import ReportOptions, build_report
from mmint.benchmark.runner import Compose
from mmint.io import atomic_write

#: plots the leaderboard section embeds itself (not repeated under "Plots")
BOARD_PLOTS = ("leaderboard", "cd_")


@dataclass
class Source:
    """One suite's results: its table (``run_dir`` relative to ``folder``), its folder (where
    its controls are stored) and its suite config when known."""

    table: pd.DataFrame
    folder: Path
    suite: Suite | None = None
    overrides: list[str] = field(default_factory=list)


def control_overrides(
    suite: Suite | None, model: str, data: str, variant: str, seed: int, base: Sequence[str] = ()
) -> list[str]:
    """The overrides of the run whose data and split the controls need: the suite's own
    composition (:func:`mmint.benchmark.grid.expand`) when the suite is known."""
    if suite is None:
        return ["command=fit", f"model={model}", f"data={data}", f"seed={seed}", *base]
    floor = model in suite.floor
    one = Suite(
        name=suite.name,
        models=[] if floor else [model],
        datasets=[data],
        seeds=[seed],
        variants={"default": []} if floor else {variant: suite.variants.get(variant, [])},
        floor=[model] if floor else [],
        overrides=suite.overrides,
        model_overrides=suite.model_overrides,
        data_overrides=suite.data_overrides,
    )
    return expand(one, base)[0].overrides


def source_controls(
    source: Source, compose: Compose, echo: Callable[[str], None] = print
) -> dict[Key, dict]:
    """The controls of every (data, variant, seed) of a source's runs, from (or into)
    ``<folder>/controls/``."""
    table = source.table
    first_model = {
        (str(r["data"]), str(r["variant"]), int(r["seed"])): str(r["model"])
        for _, r in table.iloc[::-1].iterrows()
    }

    def config_of(data: str, variant: str, seed: int) -> dict[str, Any] | None:
        model = first_model[(data, variant, seed)]
        for m in dict.fromkeys([model, "pca"]):
            try:
                ov = control_overrides(source.suite, m, data, variant, seed, source.overrides)
                return compose(ov)
            except Exception as err:  # noqa: BLE001 - tried with the pca config next
                why = f"{type(err).__name__}: {err}"
        echo(f"note: no controls for {data} seed {seed}: its config does not compose ({why})")
        return None

    return controls_for_runs(first_model, config_of, source.folder / "controls", echo)


def merge(sources: Sequence[Source]) -> tuple[pd.DataFrame, list[str]]:
    """One table of every source (``run_dir`` made absolute); a run present twice keeps the
    later source's row, with a note."""
    frames = []
    for s in sources:
        t = s.table.copy()
        if "run_dir" in t:
            t["run_dir"] = [str(s.folder.resolve() / str(d)) for d in t["run_dir"]]
        frames.append(t)
    table = pd.concat(frames, ignore_index=True, sort=False) if frames else pd.DataFrame()
    ids = ["model", "data", "variant", "seed"]
    dup = table.duplicated(ids, keep="last") if len(table) else pd.Series(dtype=bool)
    notes = []
    if dup.any():
        notes.append(
            f"{int(dup.sum())} runs appear in several results files; the last file's row is kept"
        )
        table = table[~dup].reset_index(drop=True)
    return table, notes


def write_suite_outputs(
    table: pd.DataFrame,
    out_dir: str | Path,
    opts: ReportOptions,
    board_opts: BoardOptions,
    controls: dict[Key, dict],
    *,
    umap: bool = False,
    echo: Callable[[str], None] = print,
) -> Board:
    """Write ``report.md`` (leaderboard first), ``plots/``, ``scaled.csv`` and
    ``leaderboard.csv`` into ``out_dir`` (the table's ``run_dir`` is relative to it, or
    absolute)."""
    out_dir = Path(out_dir)

    def run_dir_of(r: pd.Series) -> Path | None:
        d = r.get("run_dir")
        return out_dir / str(d) if isinstance(d, str) and d else None

    plots = make_plots(table, out_dir, umap=umap, echo=echo)
    board = build_board(
        table, controls if board_opts.controls else {}, board_opts, out_dir / "plots", run_dir_of
    )
    text = build_report(table, ReportOptions(**{**opts.__dict__, "leaderboard": board.markdown}))
    shown = {p.name for p in board.plots}
    others = sorted(
        p
        for p in (out_dir / "plots").glob("*.png")
        if p.name not in shown and not p.name.startswith(BOARD_PLOTS)
    )
    others = list(dict.fromkeys([*[p for p in plots if p.name not in shown], *others]))
    if others:
        text += (
            "\n## Plots\n\n"
            + "\n".join(
                f"![{p.stem}](plots/{p.name})" for p in sorted(others, key=lambda p: p.name)
            )
            + "\n"
        )
    atomic_write(out_dir / "report.md", text)
    if board.scored is not None:
        atomic_write(out_dir / "scaled.csv", scaled_table(board.scored).to_csv(index=False))
    if not board.table.empty:
        atomic_write(out_dir / "leaderboard.csv", board.table.to_csv(index_label="model"))
    return board


def scaled_table(runs: pd.DataFrame) -> pd.DataFrame:
    """``scaled.csv``: per run its identity, entry and task, then each scaled metric's raw
    value beside its scaled one, the category scores and the overall score."""
    ids = ["model", "data", "variant", "seed", "entry", "task"]
    cols = []
    for c in runs.columns:
        if c.startswith("scaled."):
            raw = c.removeprefix("scaled.")
            cols += [raw, c] if raw in runs else [c]
    cats = [c for c in runs.columns if c.startswith("category.")]
    return runs[[*ids, *cols, *cats, "overall", "n_categories"]]

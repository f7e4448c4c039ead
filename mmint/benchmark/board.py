"""The verdict section of ``report.md``: leaderboard, critical-difference diagrams, whether
each dataset's test set can separate the models, category scores and the controls.

:func:`build_board` takes the results table and the controls
(:mod:`mmint.benchmark.controls`) and returns the markdown, the figures it wrote and the
leaderboard table (for W&B). Every number is explained in ``docs/benchmark.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmint.benchmark import detectable as det
from mmint.benchmark import significance as sig
from mmint.benchmark.board_plots import cd_diagram, heatmap
from mmint.benchmark.leaderboard import FAILED, NOT_RUN, Key, Scored, leaderboard, score_runs
from mmint.benchmark.scaled import CATEGORY_LABELS, Scoring
from mmint.benchmark.separability import detectable_section
from mmint.benchmark.tables import fmt, fmt_pm, markdown_table

#: category columns shown (integration's parts too) and drawn as CD diagrams
SHOWN = (
    "grouping",
    "bio_conservation",
    "batch_correction",
    "integration",
    "prediction",
    "alignment",
)
SUPERVISED_MARK = "†"


@dataclass
class BoardOptions:
    """``suite.leaderboard`` (or ``mmint report`` key=value options)."""

    scoring: Scoring = field(default_factory=Scoring)
    posthoc: str = "wilcoxon_holm"
    alpha: float = 0.05
    power: float = 0.8
    n_boot: int = 500
    controls: bool = True

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any] | None) -> BoardOptions:
        """From a plain dict: ``clip``, ``weights``, ``bio_weight``, ``batch_weight``,
        ``min_gap``, ``missing`` (the :class:`Scoring`), ``posthoc``, ``alpha``, ``power``,
        ``n_boot``, ``controls``."""
        from mmint.errors import InputError

        cfg = dict(cfg or {})
        posthoc = str(cfg.get("posthoc") or "wilcoxon_holm")
        if posthoc not in sig.POSTHOC:
            raise InputError(
                f"unknown post-hoc test '{posthoc}'", "leaderboard.posthoc", f"use {sig.POSTHOC}"
            )
        return cls(
            scoring=Scoring.from_dict(cfg),
            posthoc=posthoc,
            alpha=float(cfg.get("alpha") or 0.05),
            power=float(cfg.get("power") or 0.8),
            n_boot=int(cfg.get("n_boot") or 500),
            controls=bool(cfg.get("controls", True)),
        )


@dataclass
class Board:
    """What :func:`build_board` made."""

    markdown: str
    plots: list[Path] = field(default_factory=list)
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    friedman: sig.Friedman | None = None
    detectable: dict[str, det.Detectable] = field(default_factory=dict)
    #: the ok runs with entry, task, scaled metrics, category and overall scores
    scored: pd.DataFrame | None = None


def supervised(model: str) -> bool:
    """Whether a model's groups are predicted labels (its class says ``groups_are_labels``)."""
    from mmint.models import MODELS, model_class

    if model not in MODELS:
        return False
    try:
        flag = getattr(model_class(model), "groups_are_labels", False)
    except Exception:  # noqa: BLE001 - an optional extra not installed: unknown, unmarked
        return False
    return flag is True


def supervised_models(runs: pd.DataFrame) -> set[str]:
    """Models whose groups are predicted labels: by class (``groups_are_labels``) or, on a
    held-out batch, by the runs' own record (``transfer_protocol`` = ``model classifier``)."""
    out = {m for m in runs["model"].astype(str).unique() if supervised(m)}
    if "transfer_protocol" in runs:
        own = runs[runs["transfer_protocol"].astype(str) == "model classifier"]
        out |= set(own["model"].astype(str))
    return out


def _entry_label(entry: str, marks: set[str]) -> str:
    return f"{entry} {SUPERVISED_MARK}" if entry.split("/")[0] in marks else entry


def _task_cell(board: pd.DataFrame, entry: str, task: str) -> str:
    v = board.loc[entry, f"score.{task}"]
    if np.isfinite(v):
        return f"{v:.3f} ({board.loc[entry, f'rank.{task}']:g})"
    status = board.loc[entry, f"status.{task}"]
    return status if status in (NOT_RUN, FAILED) else "-"


def leaderboard_table(board: pd.DataFrame, marks: set[str]) -> str:
    """The leaderboard as markdown."""
    tasks = board.attrs["tasks"]
    n = len(tasks)
    rows = []
    for i, (entry, r) in enumerate(board.iterrows(), start=1):
        rows.append(
            [
                str(i) if np.isfinite(r["mean"]) else "-",
                _entry_label(str(entry), marks),
                fmt_pm(r["mean"], r["sd"]),
                f"{int(r['n_tasks'])}/{n}",
                fmt_pm(r["mean_rank"], r["mean_rank_sd"], 2),
                *[_task_cell(board, str(entry), t) for t in tasks],
            ]
        )
    header = [
        "#",
        "model",
        "overall (mean ± sd over datasets)",
        "datasets",
        "mean rank ± sd",
        *[f"{t}: score (rank)" for t in tasks],
    ]
    return markdown_table(header, rows)


def _blocks(runs: pd.DataFrame, column: str, per_seed: bool = True) -> pd.DataFrame:
    """Long table (block, entry, value): blocks are (dataset, seed) pairs, or datasets with the
    mean over seeds (``per_seed=False``)."""
    long = runs[["task", "seed", "entry", column]].dropna(subset=[column])
    if not per_seed:
        long = long.groupby(["task", "entry"], as_index=False)[column].mean()
        return long.assign(block=long["task"].astype(str))
    return long.assign(block=long["task"].astype(str) + " seed " + long["seed"].astype(str))


@dataclass
class Test:
    """Friedman + post-hoc on one score column."""

    blocks: sig.BlockMatrix
    friedman: sig.Friedman | None
    pvalues: pd.DataFrame | None
    cliques: list[list[str]]
    why_not: str = ""


def significance(
    runs: pd.DataFrame, column: str, opts: BoardOptions, per_seed: bool = True
) -> Test:
    """Friedman's test and the post-hoc test of ``column`` over (dataset, seed) blocks (or
    over datasets, seed means, with ``per_seed=False``)."""
    blocks = sig.complete_blocks(_blocks(runs, column, per_seed), column)
    n, k = blocks.matrix.shape
    if k < 3 or n < 2:
        what = "(dataset, seed)" if per_seed else "dataset"
        why = f"{k} models with {n} complete {what} blocks: Friedman's test needs 3 and 2"
        return Test(blocks, None, None, [], why)
    fr = sig.friedman(blocks.matrix)
    if not np.isfinite(fr.statistic):
        return Test(blocks, None, None, [], "the models tie on every (dataset, seed) block")
    p = sig.posthoc(blocks.matrix, opts.posthoc)
    return Test(blocks, fr, p, sig.cliques(fr.mean_ranks, p, opts.alpha))


def _significance_text(test: Test, opts: BoardOptions, what: str) -> str:
    if test.friedman is None:
        return f"Significance of the {what}: not tested ({test.why_not})."
    fr = test.friedman
    how = "Wilcoxon signed-rank, Holm-adjusted" if opts.posthoc == "wilcoxon_holm" else "Nemenyi"
    n_sig = int(((test.pvalues < opts.alpha).sum().sum()) // 2)
    n_pairs = fr.n_models * (fr.n_models - 1) // 2
    text = (
        f"Friedman's test of the {what} over {fr.n_blocks} (dataset, seed) blocks and "
        f"{fr.n_models} models: chi2({fr.n_models - 1}) = {fr.statistic:.2f}, "
        f"p = {fr.pvalue:.3g}. Post-hoc ({how}, alpha {opts.alpha:g}): {n_sig} of {n_pairs} "
        "pairs differ"
    )
    groups = [", ".join(c) for c in test.cliques]
    text += (
        "; groups not separated: " + "; ".join(f"[{g}]" for g in groups) + "." if groups else "."
    )
    left = []
    if test.blocks.dropped_models:
        left.append(
            f"models left out (not on every block): {', '.join(test.blocks.dropped_models)}"
        )
    if test.blocks.dropped_blocks:
        left.append(f"{len(test.blocks.dropped_blocks)} incomplete blocks left out")
    return text + (f" ({'; '.join(left)}.)" if left else "")


def category_section(scored: Scored, opts: BoardOptions, plots_dir: Path, marks: set[str]):
    """Mean scaled category scores per entry and a CD diagram per category."""
    runs = scored.runs
    cats = [c for c in SHOWN if runs[f"category.{c}"].notna().any()]
    if not cats:
        return "", []
    means = {c: leaderboard(runs, column=f"category.{c}") for c in cats}
    order = list(leaderboard(runs).index)
    rows = []
    for e in order:
        cells = []
        for c in cats:
            b = means[c]
            has = e in b.index and np.isfinite(b.loc[e, "mean"])
            cells.append(fmt_pm(b.loc[e, "mean"], b.loc[e, "sd"]) if has else "n/a")
        rows.append([_entry_label(str(e), marks), *cells])
    plots, tests = [], []
    for c in cats:
        test = significance(runs, f"category.{c}", opts)
        tests.append(
            f"- {CATEGORY_LABELS[c]}: "
            + _significance_text(test, opts, f"{CATEGORY_LABELS[c]} score")
        )
        if test.friedman is not None:
            plots.append(_cd_plot(test, opts, plots_dir / f"cd_{c}.png", CATEGORY_LABELS[c]))
    text = [
        "### Category scores",
        "",
        markdown_table(["model", *[CATEGORY_LABELS[c] for c in cats]], rows),
        "",
        "Mean ± sd over datasets of each run's category score (the mean of its scaled metrics, "
        "averaged over seeds first). " + opts.scoring.describe(),
        "",
        *tests,
        "",
        *[f"![{p.stem}](plots/{p.name})" for p in plots],
    ]
    return "\n".join(text), plots


def _cd_plot(test: Test, opts: BoardOptions, path: Path, what: str) -> Path:
    fr = test.friedman
    cd = sig.nemenyi_cd(fr.n_models, fr.n_blocks, opts.alpha) if opts.posthoc == "nemenyi" else None
    how = "Wilcoxon-Holm" if opts.posthoc == "wilcoxon_holm" else "Nemenyi"
    title = (
        f"{what}: mean rank over {fr.n_blocks} (dataset, seed) blocks; Friedman "
        f"p = {fr.pvalue:.2g}; bars: not separated ({how}, alpha {opts.alpha:g})"
    )
    return cd_diagram(fr.mean_ranks, test.cliques, path, title, cd)


#: control values shown per dataset (flattened metrics.json keys; r2/pearson cross = means)
CONTROL_SHOWN = {
    "ari": "ARI",
    "nmi": "NMI",
    "r2_cross": "cross-modal R2",
    "pearson_cross": "cross-modal Pearson",
    "foscttm": "FOSCTTM",
    "scib.bio_conservation": "scIB bio",
    "scib.batch_correction": "scIB batch",
}


def _control_value(values: Mapping[str, float], key: str) -> float:
    if key in ("r2_cross", "pearson_cross"):
        prefix = key.split("_")[0]
        vals = [
            v
            for k, v in values.items()
            if k.startswith(f"{prefix}.") and len(p := k.split(".")) == 3 and p[1] != p[2]
        ]
        return float(np.mean(vals)) if vals else float("nan")
    return float(values.get(key, np.nan))


def controls_section(scored: Scored, controls: Mapping[Key, dict]) -> str:
    """Per dataset, the random and control values (mean over seeds) of a few metrics."""
    rows = []
    for task, sub in scored.runs.groupby("task", sort=False):
        keys = {
            (str(d), str(v), int(s))
            for d, v, s in zip(sub["data"], sub["variant"], sub["seed"], strict=True)
        }
        recs = [controls[k] for k in keys if k in controls]
        if not recs:
            continue
        for kind in ("random", "control"):
            cells = []
            for key in CONTROL_SHOWN:
                vals = [_control_value(r[kind], key) for r in recs]
                vals = [v for v in vals if np.isfinite(v)]
                cells.append(fmt(float(np.mean(vals))) if vals else "-")
            rows.append([str(task), kind, *cells])
    if not rows:
        return ""
    return "\n".join(
        [
            "### Controls",
            "",
            markdown_table(["dataset", "control", *CONTROL_SHOWN.values()], rows),
            "",
            "Raw scores of the controls on each dataset's test cells (mean over seeds), computed by "
            "the same metric code as the models: `random` = random Gaussian embedding and random "
            "predictions with each feature's training mean and variance (mean of 3 draws); "
            "`control` = the labels as groups, one-hot labels as the embedding (all modalities), the "
            "training mean of each feature as the prediction. Stored in `controls/`.",
        ]
    )


def _datasets_only(runs: pd.DataFrame, opts: BoardOptions) -> str:
    """Friedman's test with one block per dataset (the seeds of a dataset share its cells, so
    (dataset, seed) blocks are not independent): the conservative reading."""
    test = significance(runs, "overall", opts, per_seed=False)
    if test.friedman is None:
        return f"With one block per dataset (seed means): not tested ({test.why_not})."
    fr = test.friedman
    return (
        f"With one block per dataset (seed means; the seeds of a dataset share its cells, so the "
        f"(dataset, seed) blocks are not independent): Friedman chi2({fr.n_models - 1}) = "
        f"{fr.statistic:.2f}, p = {fr.pvalue:.3g} over {fr.n_blocks} datasets and "
        f"{fr.n_models} models."
    )


def _zeroed_note(runs: pd.DataFrame, marks: set[str], opts: BoardOptions) -> str:
    """Which categories each model lacks where others have them (counted as 0 or left out)."""
    lacking: dict[str, set[str]] = {}
    for e, text in zip(runs["entry"], runs["missing_categories"], strict=True):
        if isinstance(text, str) and text:
            lacking.setdefault(str(e), set()).update(text.split(","))
    if not lacking:
        return ""
    how = "counted as 0" if opts.scoring.missing == "zero" else "left out of the mean"
    parts = [f"{_entry_label(e, marks)}: {', '.join(sorted(c))}" for e, c in lacking.items()]
    return (
        f"Categories a model does not give (n/a) while others do, {how} in its overall score: "
        + "; ".join(parts)
        + "."
    )


def build_board(
    table: pd.DataFrame,
    controls: Mapping[Key, dict],
    opts: BoardOptions,
    plots_dir: str | Path,
    run_dir_of: Callable[[pd.Series], Path | None] = lambda r: None,
    notes: list[str] | None = None,
) -> Board:
    """The leaderboard section of a report (see the module docstring)."""
    plots_dir = Path(plots_dir)
    if table.empty or not controls:
        why = "no controls" if not controls else "no runs"
        return Board(f"## Leaderboard\n\nNo leaderboard: {why}.\n")
    scored = score_runs(table, controls, opts.scoring)
    if not scored.runs["overall"].notna().any():
        return Board("## Leaderboard\n\nNo leaderboard: no run could be scaled.\n")
    board = leaderboard(scored.runs, scored.all_runs)
    marks = supervised_models(scored.all_runs)
    plots = [p for p in [heatmap(board, plots_dir / "leaderboard.png")] if p is not None]
    test = significance(scored.runs, "overall", opts)
    if test.friedman is not None:
        plots.append(_cd_plot(test, opts, plots_dir / "cd_overall.png", "overall score"))
    sep, found = detectable_section(
        scored.runs,
        controls,
        run_dir_of,
        opts.n_boot,
        opts.alpha,
        opts.power,
        opts.scoring.min_gap,
    )
    cats, cat_plots = category_section(scored, opts, plots_dir, marks)
    text = [
        "## Leaderboard",
        "",
        leaderboard_table(board, marks),
        "",
        "Overall scaled score (0 = the worse control, 1 = the better one, per metric; see "
        "docs/benchmark.md) averaged over seeds per dataset, then mean ± sd over datasets; "
        "score (rank) per dataset; mean rank over the datasets a model ran on. "
        + (
            f"{SUPERVISED_MARK}: reads the training cells' labels (its groups are predicted "
            "labels). "
            if marks
            else ""
        )
        + "`not run`: no run of the model on that dataset (left out by the suite); `failed`: "
        "its runs failed. " + _zeroed_note(scored.runs, marks, opts),
        "",
        *[f"![{p.stem}](plots/{p.name})" for p in plots],
        "",
        _significance_text(test, opts, "overall score"),
        "",
        _datasets_only(scored.runs, opts),
        "",
    ]
    text += [sep, ""] if sep else []
    text += [cats, ""] if cats else []
    ctrl = controls_section(scored, controls)
    text += [ctrl, ""] if ctrl else []
    left = [*scored.notes, *(notes or [])]
    if left:
        text += ["Not scaled: " + "; ".join(left) + ".", ""]
    return Board("\n".join(text), [*plots, *cat_plots], board, test.friedman, found, scored.runs)

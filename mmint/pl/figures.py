"""The figures of :mod:`mmint.pl` (matplotlib; shown inline in a notebook)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pandas as pd

from mmint.errors import InputError


def _runs(runs: Any) -> dict[str, Any]:
    """``{panel title: Run}`` from a Run, a run directory, a list or a dict of them."""
    from mmint.api.run import Outputs, Run

    def one(r: Any) -> Any:
        return r if isinstance(r, Outputs) else Run(r)

    if isinstance(runs, Mapping):
        return {str(k): one(v) for k, v in runs.items()}
    if isinstance(runs, Outputs | str | Path):
        runs = [runs]
    out: dict[str, Any] = {}
    for r in map(one, runs):
        title = r.model
        n = 2
        while title in out:  # the same model twice: number the panels
            title, n = f"{r.model} ({n})", n + 1
        out[title] = r
    return out


def umap(
    runs: Any,
    color: str | Sequence[str] | None = None,
    max_cells: int = 3000,
    seed: int = 0,
    size: float = 4.0,
) -> Any:
    """UMAP of the joint latent of each run, one panel per run (columns) and colour (rows).

    Parameters
    ----------
    runs
        A :class:`~mmint.Run` (or prediction), a run directory, or a list / ``{title: run}``
        dict of them.
    color
        ``obs`` column(s) of the runs' outputs (``cell_type``, ``batch``, ``split``,
        ``<model>_group``); default: the first run's label key, else ``split``.
    max_cells
        At most this many cells per panel (the same seeded subset in every run).
    seed
        Seed of the subset, the neighbour graph and the UMAP.
    size
        Point size.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import anndata as ad
    import matplotlib.pyplot as plt
    import scanpy as sc

    panels = _runs(runs)
    if not panels:
        raise InputError("no runs given", "mmint.pl.umap", "pass a Run or a list of runs")
    first = next(iter(panels.values()))
    if color is None:
        key = getattr(first, "config", {}).get("data", {}).get("label_key")
        color = key if key and key in first.obs else "split"
    colors = [color] if isinstance(color, str) else list(color)
    fig, axes = plt.subplots(
        len(colors), len(panels), figsize=(4.2 * len(panels), 3.6 * len(colors)), squeeze=False
    )
    for j, (title, run) in enumerate(panels.items()):
        latent = run.latent
        cells = np.arange(len(latent))
        if len(cells) > max_cells:
            cells = np.sort(np.random.default_rng(seed).choice(len(cells), max_cells, False))
        obs = run.obs.iloc[cells].copy()
        for col in colors:
            if col not in obs:
                raise InputError(
                    f"no column '{col}' in the outputs of {title}",
                    str(run.dir),
                    f"colour by one of: {', '.join(map(str, obs.columns))}",
                )
            obs[col] = obs[col].astype(str).astype("category")
        a = ad.AnnData(obs=obs)
        a.obsm["X_latent"] = latent.to_numpy(dtype=np.float32)[cells]
        n_neighbors = min(15, max(2, a.n_obs - 1))
        sc.pp.neighbors(a, use_rep="X_latent", n_neighbors=n_neighbors, random_state=seed)
        sc.tl.umap(a, random_state=seed)
        for i, col in enumerate(colors):
            sc.pl.umap(a, color=col, ax=axes[i, j], show=False, size=size, title=f"{title}: {col}")
    fig.tight_layout()
    return fig


def curves(runs: Any, columns: Sequence[str] | None = None) -> Any:
    """A run's per-epoch validation metrics (``curves.csv``), one panel per metric; several
    runs are one line each.

    Parameters
    ----------
    runs
        A :class:`~mmint.Run`, a run directory, or a list / dict of them.
    columns
        The metrics; default every column of ``curves.csv`` but ``epoch``.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    mmint.errors.InputError
        When no run has curves (models without epochs, such as ``pca``, write none).
    """
    import matplotlib.pyplot as plt

    tables = {t: r.curves for t, r in _runs(runs).items()}
    tables = {t: c for t, c in tables.items() if c is not None and len(c)}
    if not tables:
        raise InputError(
            "no curves.csv in the runs given",
            "mmint.pl.curves",
            "pass runs of models that train in epochs (pca and whole-set comparators have none)",
        )
    if columns is None:
        columns = list(dict.fromkeys(c for t in tables.values() for c in t.columns if c != "epoch"))
    fig, axes = plt.subplots(1, len(columns), figsize=(3.4 * len(columns), 3.0), squeeze=False)
    for ax, col in zip(axes[0], columns, strict=True):
        for title, table in tables.items():
            if col in table and table[col].notna().any():
                ax.plot(table["epoch"], table[col], marker="o", ms=3, label=title)
        ax.set_xlabel("epoch")
        ax.set_title(col.replace("_", " "), fontsize=9)
    axes[0, -1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def _suite_dir(results: Any) -> Path:
    if isinstance(results, pd.DataFrame):
        folder = results.attrs.get("suite_dir")
        if not folder:
            raise InputError(
                "the results table does not say its suite folder",
                "mmint.pl.leaderboard",
                "pass the table mmint.benchmark returned, or the suite folder",
            )
        return Path(folder)
    path = Path(results)
    return path.parent if path.suffix == ".csv" else path


def leaderboard(results: Any, data: str | None = None) -> Any:
    """The benchmark's leaderboard: the models x datasets heat map of the scaled overall
    score with the mean column (the figure of the suite's ``report.md``), from its
    ``leaderboard.csv``; when the suite has none (no controls), the results table plot of
    ``data`` (default: the first dataset).

    Parameters
    ----------
    results
        The table :func:`mmint.benchmark` returned, a suite folder or its ``results.csv``.
    data
        The dataset of the table plot (used only without a leaderboard).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from mmint.benchmark import board_plots, plots
    from mmint.benchmark.results import read_results

    folder = _suite_dir(results)
    keep = mock.patch.object  # the plot functions save and close: keep the figure instead
    board_csv = folder / "leaderboard.csv"
    if board_csv.exists():
        board = pd.read_csv(board_csv, index_col=0)
        board.attrs["tasks"] = [c.removeprefix("score.") for c in board if c.startswith("score.")]
        with keep(board_plots, "save_figure", lambda fig, path: fig):
            fig = board_plots.heatmap(board, folder / "plots" / "leaderboard.png")
        if fig is not None:
            return fig
    table = read_results(folder / "results.csv")
    data = data or str(table["data"].iloc[0])
    with keep(plots, "save_figure", lambda fig, path: fig):
        fig = plots.results_table_plot(table, data, folder / "plots" / "table.png")
    if fig is None:
        raise InputError(
            f"no finished run on '{data}'", str(folder), "run the benchmark to the end first"
        )
    return fig

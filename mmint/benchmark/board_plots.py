"""The leaderboard's figures (PNG, matplotlib Agg): the models x datasets heat map of the
scaled overall score with the mean column, and critical-difference diagrams."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mmint.io import save_figure


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def heatmap(board: pd.DataFrame, path: Path, title: str = "scaled overall score") -> Path | None:
    """Entries x tasks heat map of ``score.<task>`` (from :func:`leaderboard.leaderboard`),
    the mean over tasks as the last column (with ``(k/N)`` when over k of the N tasks); cells
    without a score say why (``not run`` / ``failed``), hatched."""
    plt = _plt()
    tasks = list(board.attrs.get("tasks", []))
    if board.empty or not tasks:
        return None
    values = np.column_stack(
        [board[f"score.{t}"].to_numpy(dtype=float) for t in tasks]
        + [board["mean"].to_numpy(dtype=float)]
    )
    n_rows, n_cols = values.shape
    fig, ax = plt.subplots(figsize=(1.25 * n_cols + 2.6, 0.42 * n_rows + 1.8))
    finite = values[np.isfinite(values)]
    vmax = max(1.0, float(finite.max())) if finite.size else 1.0
    ax.imshow(np.ma.masked_invalid(values), cmap="viridis", vmin=0.0, vmax=vmax, aspect="auto")
    for i in range(n_rows):
        for j in range(n_cols):
            v = values[i, j]
            if np.isfinite(v):
                dark = v < 0.6 * vmax
                partial = j == n_cols - 1 and board.iloc[i]["n_tasks"] < len(tasks)
                label = (
                    f"{v:.2f}\n({int(board.iloc[i]['n_tasks'])}/{len(tasks)})"
                    if partial
                    else f"{v:.2f}"
                )
                ax.text(
                    j,
                    i,
                    label,
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if dark else "black",
                )
            else:
                status = board.iloc[i].get(f"status.{tasks[j]}", "") if j < len(tasks) else ""
                ax.add_patch(
                    plt.Rectangle(
                        (j - 0.5, i - 0.5),
                        1,
                        1,
                        fill=False,
                        hatch="///",
                        edgecolor="0.6",
                        linewidth=0,
                    )
                )
                ax.text(
                    j,
                    i,
                    status if status in ("not run", "failed") else "-",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="0.3",
                )
    ax.axvline(n_cols - 1.5, color="white", linewidth=3)
    ax.set_xticks(range(n_cols))
    ax.set_xticklabels([*tasks, "mean"], rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(n_rows))
    ax.set_yticklabels(list(board.index), fontsize=8)
    ax.set_title(title, fontsize=10)
    return save_figure(fig, path)


def cd_diagram(
    mean_ranks: pd.Series,
    cliques: Sequence[Sequence[str]],
    path: Path,
    title: str = "",
    cd: float | None = None,
) -> Path:
    """A critical-difference diagram: the mean-rank axis (1 = best, left), each model's name
    on a line to its mean rank (better half on the left), a thick bar joining each group of
    models whose differences are not significant, and Nemenyi's critical difference as a
    scale bar when given."""
    plt = _plt()
    order = list(mean_ranks.sort_values(kind="stable").index)
    k = len(order)
    lo, hi = 1, max(k, 2)
    half = (k + 1) // 2
    rows = max(half, k - half)
    drop = 0.12 + 0.14 * len(cliques) + 0.15
    bottom = -(drop + 0.5 * (rows - 1) + 0.3)
    fig, ax = plt.subplots(figsize=(7.5, 0.9 + 0.55 * (0.8 - bottom)))
    ax.set_xlim(lo - 0.6 - 0.25 * k / 4, hi + 0.6 + 0.25 * k / 4)
    top = 0.0
    ax.set_ylim(bottom, 0.8)
    ax.hlines(top, lo, hi, color="black", linewidth=1)
    for r in range(lo, hi + 1):
        ax.vlines(r, top, top + 0.08, color="black", linewidth=1)
        ax.text(r, top + 0.13, str(r), ha="center", va="bottom", fontsize=8)
    for r in np.arange(lo + 0.5, hi, 1.0):
        ax.vlines(r, top, top + 0.04, color="black", linewidth=0.6)
    # clique bars, just under the axis
    for i, members in enumerate(cliques):
        ranks = [mean_ranks[m] for m in members]
        y = top - 0.12 - 0.14 * i
        ax.hlines(y, min(ranks) - 0.03, max(ranks) + 0.03, color="black", linewidth=3)
    for i, name in enumerate(order):
        r = float(mean_ranks[name])
        left = i < half
        level = i if left else k - 1 - i
        y = top - drop - 0.5 * level
        x_end = lo - 0.3 if left else hi + 0.3
        ax.plot([r, r, x_end], [top, y, y], color="0.25", linewidth=0.8)
        ax.text(
            x_end + (-0.05 if left else 0.05),
            y,
            f"{name} ({r:.2f})",
            ha="right" if left else "left",
            va="center",
            fontsize=8,
        )
    if cd is not None and np.isfinite(cd):
        ax.hlines(0.55, lo, lo + cd, color="firebrick", linewidth=2)
        ax.text(
            lo + cd / 2,
            0.6,
            f"CD = {cd:.2f}",
            ha="center",
            va="bottom",
            fontsize=8,
            color="firebrick",
        )
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    return save_figure(fig, path)

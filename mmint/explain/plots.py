"""Plots of relevance tables: top features per group, feature-to-feature heatmaps."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from mmint.io import save_figure


def _safe(name: object) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("_") or "x"


def plot_group_top(table: pd.DataFrame, group: str, path: Path, top_k: int = 10) -> Path:
    """Bars of the ``top_k`` most relevant features of each modality for one group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sub = table[table["group"].astype(str) == str(group)]
    mods = list(dict.fromkeys(sub["modality"]))
    n = max(1, len(mods))
    fig, axes = plt.subplots(
        1, n, figsize=(5.5 * n, 0.3 * top_k + 1.5), layout="constrained", squeeze=False
    )
    axes = axes[0]
    for ax, m in zip(axes, mods, strict=False):
        top = sub[sub["modality"] == m].nsmallest(top_k, "rank")[::-1]
        ax.barh([str(f)[:40] for f in top["feature"]], top["relevance"], color="tab:blue")
        ax.set_title(m)
        ax.set_xlabel("mean |SHAP|")
        ax.tick_params(axis="y", labelsize=7)
        ax.tick_params(axis="x", labelsize=7, labelrotation=30)
    fig.suptitle(f"group {group}: top features driving its probability")
    return save_figure(fig, path)


def plot_feature_heatmap(
    table: pd.DataFrame, group: str, src: str, dst: str, path: Path, top_k: int = 15
) -> Path:
    """Heatmap of src x dst relevance for the top pairs of one (group, src -> dst) table.

    Rows: the ``top_k`` dst features with the largest single-pair relevance; columns: the
    ``top_k`` src features with the largest relevance summed over those rows. Grey cells: pairs
    not in the table (outside the src features written for that dst feature).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sub = table[
        (table["group"].astype(str) == str(group)) & (table["src"] == src) & (table["dst"] == dst)
    ]
    dst_top = sub.groupby("dst_feature")["relevance"].max().nlargest(top_k).index
    sub = sub[sub["dst_feature"].isin(dst_top)]
    src_top = sub.groupby("src_feature")["relevance"].sum().nlargest(top_k).index
    grid = (
        sub[sub["src_feature"].isin(src_top)]
        .pivot_table(index="dst_feature", columns="src_feature", values="relevance")
        .reindex(index=dst_top, columns=src_top)
    )
    fig, ax = plt.subplots(figsize=(0.38 * len(src_top) + 3, 0.32 * len(dst_top) + 2))
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="lightgrey")
    # grey: a pair outside the src features written for that dst feature (``top_src``)
    im = ax.imshow(np.ma.masked_invalid(grid.to_numpy()), aspect="auto", cmap=cmap)
    ax.set_xticks(range(len(src_top)), [str(s)[:30] for s in src_top], rotation=90, fontsize=7)
    ax.set_yticks(range(len(dst_top)), [str(s)[:30] for s in dst_top], fontsize=7)
    ax.set_xlabel(f"{src} feature")
    ax.set_ylabel(f"{dst} feature")
    ax.set_title(f"group {group}: {src} -> {dst}")
    fig.colorbar(im, ax=ax, label="mean |SHAP|")
    return save_figure(fig, path)


def plot_all(
    group_table: pd.DataFrame | None,
    feature_table: pd.DataFrame | None,
    folder: Path,
    top_k: int = 10,
) -> list[Path]:
    """Every group's top-feature plot and every (group, pair)'s heatmap under ``folder``."""
    paths = []
    if group_table is not None and not group_table.empty:
        for g in dict.fromkeys(group_table["group"]):
            paths.append(
                plot_group_top(group_table, g, folder / f"group_relevance_{_safe(g)}.png", top_k)
            )
    if feature_table is not None and not feature_table.empty:
        blocks = feature_table[["group", "src", "dst"]].drop_duplicates()
        for g, src, dst in blocks.itertuples(index=False):
            name = f"feature_relevance_{_safe(g)}_{_safe(src)}_to_{_safe(dst)}.png"
            paths.append(plot_feature_heatmap(feature_table, g, src, dst, folder / name, 15))
    return paths

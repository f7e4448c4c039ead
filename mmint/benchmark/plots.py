"""A suite's plots (PNG, matplotlib Agg) in ``<suite dir>/plots/``.

- ``table_<data>.png``: scIB-style results table, model/variant x metric, coloured per
  column from worst to best;
- ``bars_<data>.png``: ARI, cross-modal R2 and FOSCTTM, bars = mean, points = seeds;
- ``tradeoff_<data>.png``: grouping (ARI) against cross-modal prediction (R2), one small point
  per run and one large point per model/variant (the seeds' mean): the multi-task question of
  an ablation (is a variant better on both axes?) at a glance;
- ``curves_<data>.png``: latent distance over epochs from each run's ``curves.csv``, one
  line per model/variant (mean over seeds);
- ``umap_<run>.png``: seed-0 runs, UMAP of the joint latent coloured by cell type and batch,
  and of the per-modality latents stacked, coloured by modality.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from mmint.benchmark.report import HEADLINE, LABELS, aggregate, ok_rows
from mmint.io import save_figure

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def safe_name(text: str) -> str:
    """A file-name-safe version of ``text``."""
    return _SAFE.sub("_", text)


def _label(model: str, variant: str) -> str:
    return model if variant == "default" else f"{model}/{variant}"


def results_table_plot(table: pd.DataFrame, data: str, path: Path) -> Path | None:
    """scIB-style table: rows model/variant (by ARI), columns headline metrics, each cell
    coloured by its column's min-max scaled score (best = dark), with the mean written in."""
    plt = _plt()
    agg = aggregate(table[table["data"] == data])
    metrics = [m for m in HEADLINE if f"{m}_mean" in agg and agg[f"{m}_mean"].notna().any()]
    if agg.empty or not metrics:
        return None
    if "ari_mean" in agg:
        agg = agg.sort_values("ari_mean", ascending=False, kind="stable")
    values = agg[[f"{m}_mean" for m in metrics]].to_numpy(dtype=float)
    scores = np.full_like(values, np.nan)
    for j, m in enumerate(metrics):
        col = values[:, j]
        lo, hi = np.nanmin(col), np.nanmax(col)
        if hi > lo:
            s = (col - lo) / (hi - lo)
            scores[:, j] = s if HEADLINE[m] else 1 - s
        else:  # all equal: neutral
            scores[:, j] = np.where(np.isfinite(col), 0.5, np.nan)
    n_rows, n_cols = values.shape
    fig, ax = plt.subplots(figsize=(1.2 * n_cols + 2.2, 0.45 * n_rows + 1.2))
    ax.imshow(np.ma.masked_invalid(scores), cmap="YlGnBu", vmin=0, vmax=1.15, aspect="auto")
    for i in range(n_rows):
        for j in range(n_cols):
            v = values[i, j]
            text = (
                "-"
                if not np.isfinite(v)
                else (f"{v:.1f}" if metrics[j] == "fit_seconds" else f"{v:.3f}")
            )
            dark = np.isfinite(scores[i, j]) and scores[i, j] > 0.6
            ax.text(
                j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black"
            )
    ax.set_xticks(
        range(n_cols),
        [LABELS.get(m, m) + ("" if HEADLINE[m] else " ↓") for m in metrics],
        rotation=35,
        ha="right",
        fontsize=8,
    )
    ax.set_yticks(
        range(n_rows), [_label(r["model"], r["variant"]) for _, r in agg.iterrows()], fontsize=8
    )
    ax.set_title(f"{data}: mean over seeds (↓ lower is better)", fontsize=9)
    ax.tick_params(length=0)
    return save_figure(fig, path)


def bar_plot(table: pd.DataFrame, data: str, path: Path) -> Path | None:
    """ARI, cross-modal R2 and FOSCTTM: mean bars with one point per seed."""
    plt = _plt()
    ok = ok_rows(table[table["data"] == data])
    metrics = [
        m
        for m in ("ari", "r2_cross", "foscttm")
        if m in ok and pd.to_numeric(ok[m], errors="coerce").notna().any()
    ]
    if ok.empty or not metrics:
        return None
    groups = list(dict.fromkeys(zip(ok["model"], ok["variant"], strict=True)))
    fig, axes = plt.subplots(
        1, len(metrics), figsize=(0.55 * len(groups) * len(metrics) + 2.5, 3.2), squeeze=False
    )
    for ax, m in zip(axes[0], metrics, strict=True):
        for i, (model, variant) in enumerate(groups):
            vals = (
                pd.to_numeric(
                    ok[(ok["model"] == model) & (ok["variant"] == variant)][m], errors="coerce"
                )
                .dropna()
                .to_numpy()
            )
            if len(vals):
                ax.bar(i, vals.mean(), color=f"C{i % 10}", alpha=0.6)
                ax.scatter(
                    np.full(len(vals), i) + np.linspace(-0.15, 0.15, len(vals)),
                    vals,
                    color="black",
                    s=10,
                    zorder=3,
                )
        ax.set_xticks(
            range(len(groups)), [_label(*g) for g in groups], rotation=45, ha="right", fontsize=8
        )
        ax.set_title(LABELS.get(m, m) + ("" if HEADLINE[m] else " (lower is better)"), fontsize=9)
        ax.axhline(0, color="grey", lw=0.5)
    fig.suptitle(f"{data}: bars = mean, points = seeds", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def tradeoff_points(table: pd.DataFrame, data: str) -> pd.DataFrame:
    """The finished runs of ``data`` with both ARI and cross-modal R2: columns ``label``
    (model or model/variant), ``seed``, ``ari``, ``r2_cross``."""
    ok = ok_rows(table[table["data"] == data])
    if ok.empty or "ari" not in ok or "r2_cross" not in ok:
        return pd.DataFrame(columns=["label", "seed", "ari", "r2_cross"])
    points = pd.DataFrame(
        {
            "label": [_label(m, v) for m, v in zip(ok["model"], ok["variant"], strict=True)],
            "seed": ok["seed"].to_numpy(),
            "ari": pd.to_numeric(ok["ari"], errors="coerce").to_numpy(),
            "r2_cross": pd.to_numeric(ok["r2_cross"], errors="coerce").to_numpy(),
        }
    )
    return points.dropna(subset=["ari", "r2_cross"]).reset_index(drop=True)


def tradeoff_plot(table: pd.DataFrame, data: str, path: Path) -> Path | None:
    """Grouping (ARI) against prediction (cross-modal R2): a point per run, a large point per
    model/variant at the seeds' mean; None with fewer than two models/variants."""
    points = tradeoff_points(table, data)
    labels = list(dict.fromkeys(points["label"]))
    if len(labels) < 2:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    r2 = points["r2_cross"].to_numpy(dtype=float)
    med = float(np.median(r2))
    spread = max(float(np.median(np.abs(r2 - med))), 0.05)
    low = max(float(r2.min()), med - 10 * spread)  # far outliers: drawn at the left edge
    clipped = False
    for i, label in enumerate(labels):
        sub = points[points["label"] == label]
        color = f"C{i % 10}"
        marker = "os^Dv>P*X"[(i // 10) % 9]
        x = sub["r2_cross"].clip(lower=low)
        clipped |= bool((sub["r2_cross"] < low).any())
        ax.scatter(x, sub["ari"], color=color, marker=marker, s=14, alpha=0.5)
        ax.scatter(
            max(float(sub["r2_cross"].mean()), low),
            sub["ari"].mean(),
            color=color,
            marker=marker,
            s=70,
            edgecolor="black",
            linewidth=0.6,
            label=f"{label} (n={len(sub)})",
            zorder=3,
        )
    ax.set_xlabel(LABELS.get("r2_cross", "r2_cross") + " (prediction, higher is better)")
    ax.set_ylabel(LABELS.get("ari", "ari") + " (grouping, higher is better)")
    ax.set_title(f"{data}: grouping vs prediction; small = runs, large = mean", fontsize=9)
    if clipped:  # e.g. untrained decoders (R2 of -40): the others would be one vertical line
        ax.axvline(low, color="grey", lw=0.5, ls=":")
        ax.annotate(
            f"R2 < {low:.2f} drawn here",
            (low, 0),
            xycoords=("data", "axes fraction"),
            xytext=(2, 2),
            textcoords="offset points",
            fontsize=6,
            color="grey",
        )
    ax.legend(fontsize=6, frameon=False, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.tight_layout()
    return save_figure(fig, path)


def curves_plot(
    table: pd.DataFrame, data: str, suite_dir: Path, path: Path, column: str = "latent_distance"
) -> Path | None:
    """Latent distance over epochs, one line per model/variant (mean over its seeds' runs)."""
    plt = _plt()
    ok = table[(table["data"] == data) & (table["status"] == "ok")]
    lines = {}
    for (model, variant), sub in ok.groupby(["model", "variant"], sort=False):
        frames = []
        for run_dir in sub["run_dir"]:
            csv = suite_dir / str(run_dir) / "curves.csv"
            if csv.exists():
                c = pd.read_csv(csv)
                if column in c and c[column].notna().any():
                    frames.append(c[["epoch", column]])
        if frames:
            lines[_label(model, variant)] = pd.concat(frames).groupby("epoch")[column].mean()
    if not lines:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for label, series in lines.items():
        ax.plot(series.index, series.to_numpy(), marker="o", ms=3, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{column.replace('_', ' ')} (val)")
    ax.set_title(f"{data}: {column.replace('_', ' ')} (mean over seeds)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def umap_plot(
    run_dir: Path,
    path: Path,
    model: str,
    label_key: str | None,
    batch_key: str | None,
    seed: int = 0,
    max_points: int = 3000,
) -> Path | None:
    """UMAP of the joint latent of one modality of ``outputs.h5mu`` coloured by cell type and
    batch, and of the per-modality latents stacked (when of equal width) coloured by modality.

    Each panel shows at most ``max_points`` points (a random subset of cells, fixed by seed 0).
    """
    import anndata as ad
    import h5py
    import mudata as md
    import scanpy as sc

    plt = _plt()
    h5mu = run_dir / "outputs.h5mu"
    if not h5mu.exists():
        return None
    with h5py.File(h5mu, "r") as fh:
        order = fh["mod"].attrs.get("mod-order")
        first = str(order[0]) if order is not None and len(order) else next(iter(fh["mod"]))
    adata = md.read_h5ad(str(h5mu), first)
    key = f"X_{model}"
    if key not in adata.obsm:
        return None
    panels: list[tuple[ad.AnnData, str]] = []
    cells = _subset(adata.n_obs, max_points)
    joint = ad.AnnData(obs=adata.obs.iloc[cells].copy())
    joint.obsm["z"] = np.asarray(adata.obsm[key], dtype=np.float32)[cells]
    _umap(sc, joint, seed)
    for col in (label_key, batch_key):
        if col and col in joint.obs:
            panels.append((joint, col))
    per_mod = {
        k[len(key) + 1 :]: np.asarray(v, dtype=np.float32)
        for k, v in adata.obsm.items()
        if k.startswith(f"{key}_")
    }
    if len(per_mod) > 1 and len({z.shape[1] for z in per_mod.values()}) == 1:
        cells = _subset(adata.n_obs, max_points // len(per_mod))
        names = adata.obs_names[cells]
        stacked = ad.AnnData(
            obs=pd.DataFrame(
                {"modality": pd.Categorical(np.repeat(list(per_mod), len(cells)))},
                index=[f"{m}:{i}" for m in per_mod for i in names],
            )
        )
        stacked.obsm["z"] = np.concatenate([z[cells] for z in per_mod.values()])
        _umap(sc, stacked, seed)
        panels.append((stacked, "modality"))
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
    for ax, (a, col) in zip(axes[0], panels, strict=True):
        _scatter(ax, a.obsm["X_umap"], a.obs[col])
        ax.set_title(
            f"{col}" + (" (per-modality latents)" if col == "modality" else " (joint latent)"),
            fontsize=9,
        )
    fig.suptitle(run_dir.name, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def _subset(n: int, at_most: int) -> np.ndarray:
    if n <= at_most:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, at_most, replace=False))


def _umap(sc, a, seed: int) -> None:
    sc.pp.neighbors(a, use_rep="z", n_neighbors=min(15, max(2, a.n_obs - 1)), random_state=seed)
    sc.tl.umap(a, random_state=seed)


def _scatter(ax, xy: np.ndarray, values: pd.Series) -> None:
    cats = pd.Categorical(values.astype(str))
    cmap = _plt().get_cmap("tab20" if len(cats.categories) > 10 else "tab10")
    order = np.random.default_rng(0).permutation(len(xy))
    colors = cmap(cats.codes[order] % cmap.N)
    ax.scatter(xy[order, 0], xy[order, 1], c=colors, s=3, linewidths=0)
    if len(cats.categories) <= 30:
        for i, cat in enumerate(cats.categories):
            ax.scatter([], [], color=cmap(i % cmap.N), s=12, label=cat)
        ax.legend(
            fontsize=6, markerscale=1, frameon=False, loc="center left", bbox_to_anchor=(1, 0.5)
        )
    ax.set_xticks([])
    ax.set_yticks([])


def make_plots(
    table: pd.DataFrame,
    suite_dir: str | Path,
    umap: bool = True,
    echo: Callable[[str], None] = print,
) -> list[Path]:
    """All plots of a suite; a plot that fails is reported and skipped."""
    suite_dir = Path(suite_dir)
    out_dir = suite_dir / "plots"
    made: list[Path] = []
    if table.empty or "status" not in table:
        return made

    def attempt(what: str, fn: Callable[[], Path | None]) -> None:
        try:
            path = fn()
        except Exception as err:  # noqa: BLE001 - a broken plot must not lose the report
            echo(f"note: plot {what} failed: {type(err).__name__}: {' '.join(str(err).split())}")
            return
        if path is not None:
            made.append(path)

    for data in dict.fromkeys(table["data"]):
        name = safe_name(str(data))
        attempt(
            f"table {data}",
            lambda d=data, n=name: results_table_plot(table, d, out_dir / f"table_{n}.png"),
        )
        attempt(
            f"bars {data}", lambda d=data, n=name: bar_plot(table, d, out_dir / f"bars_{n}.png")
        )
        attempt(
            f"tradeoff {data}",
            lambda d=data, n=name: tradeoff_plot(table, d, out_dir / f"tradeoff_{n}.png"),
        )
        attempt(
            f"curves {data}",
            lambda d=data, n=name: curves_plot(table, d, suite_dir, out_dir / f"curves_{n}.png"),
        )
    if umap:
        ok = table[(table["status"] == "ok") & (pd.to_numeric(table["seed"]) == 0)]
        for _, r in ok.iterrows():
            run_dir = suite_dir / str(r["run_dir"])
            label_key, batch_key, model = _run_keys(run_dir, r)
            attempt(
                f"umap {run_dir.name}",
                lambda d=run_dir, m=model, lk=label_key, bk=batch_key: umap_plot(
                    d, out_dir / f"umap_{safe_name(d.name)}.png", m, lk, bk
                ),
            )
    return made


def _run_keys(run_dir: Path, row: pd.Series) -> tuple[str | None, str | None, str]:
    """The label and batch keys (from the run's config.yaml) and the model's name."""
    from omegaconf import OmegaConf

    label_key = batch_key = None
    model = str(row["model"])
    cfg_path = run_dir / "config.yaml"
    if cfg_path.exists():
        cfg = OmegaConf.to_container(OmegaConf.load(cfg_path))
        label_key = cfg.get("data", {}).get("label_key")
        batch_key = cfg.get("data", {}).get("batch_key")
        model = cfg.get("model", {}).get("name", model)
    return label_key, batch_key, model

"""Tables and the figure of experiments/transfer from the suite's results.csv.

Usage::

    .venv/bin/python experiments/transfer/summarize.py runs/benchmark/transfer/results.csv

Writes ``experiments/transfer/summary.md`` (mean ± sd over seeds per dataset, held-out batch and
model) and ``experiments/transfer/transfer.png`` (bars with the seeds as points).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from mmint.benchmark.report import aggregate, fmt_pm, markdown_table, ok_rows
from mmint.benchmark.results import read_results
from mmint.io import atomic_write, save_figure

HERE = Path(__file__).resolve().parent
METRICS = {"transfer_accuracy": "accuracy", "transfer_macro_f1": "macro-F1", "ari": "ARI"}
MODELS = {
    "unitednet": "UnitedNet (stage=transfer)",
    "scvi_scanvi": "scANVI (scvi-tools)",
    "knn_transfer": "kNN on PCA (floor)",
}


def table(results: pd.DataFrame) -> str:
    """Markdown: one row per dataset, held-out batch and model."""
    agg = aggregate(results, list(METRICS))
    rows = []
    for _, r in agg.sort_values(["data", "variant"], kind="stable").iterrows():
        rows.append(
            [
                r["data"],
                r["variant"].removeprefix("holdout_"),
                MODELS.get(r["model"], r["model"]),
                *[fmt_pm(r[f"{m}_mean"], r[f"{m}_sd"]) for m in METRICS],
                str(int(r["n"])),
            ]
        )
    header = ["data", "held-out batch", "model", *METRICS.values(), "seeds"]
    return markdown_table(header, rows)


def figure(results: pd.DataFrame, path: Path) -> None:
    """Bars (mean over seeds) and points (seeds) per metric, dataset x held-out batch, model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = ok_rows(results)
    groups = sorted({(d, v) for d, v in zip(ok["data"], ok["variant"], strict=True)})
    fig, axes = plt.subplots(1, len(METRICS), figsize=(5 * len(METRICS), 4), sharey=True)
    width = 0.8 / len(MODELS)
    for ax, (metric, label) in zip(np.atleast_1d(axes), METRICS.items(), strict=True):
        for i, (model, name) in enumerate(MODELS.items()):
            x = np.arange(len(groups)) + (i - (len(MODELS) - 1) / 2) * width
            vals = [
                pd.to_numeric(
                    ok[(ok["data"] == d) & (ok["variant"] == v) & (ok["model"] == model)][metric],
                    errors="coerce",
                ).dropna()
                for d, v in groups
            ]
            ax.bar(x, [s.mean() if len(s) else np.nan for s in vals], width, label=name)
            for xi, s in zip(x, vals, strict=True):
                ax.scatter(np.full(len(s), xi), s, color="k", s=8, zorder=3)
        ax.set_xticks(np.arange(len(groups)))
        ax.set_xticklabels(
            [f"{d.split('_')[1]}\nheld out {v.removeprefix('holdout_')}" for d, v in groups],
            fontsize=8,
        )
        ax.set_title(label)
        ax.set_ylim(0, 1)
    np.atleast_1d(axes)[0].legend(fontsize=8, loc="upper left")
    fig.suptitle("Label transfer to a held-out BMMC batch (3 seeds)")
    save_figure(fig, path)


def main(results_csv: str) -> None:
    results = read_results(results_csv)
    atomic_write(HERE / "summary.md", table(results) + "\n")
    figure(results, HERE / "transfer.png")
    print(table(results))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/benchmark/transfer/results.csv")

"""scvi_multivi (the suite's adapter) against benchmarks/results/multivi_parity.csv's MULTIVI.

Both train scvi-tools 1.4.2 MULTIVI with the same settings (n_latent 20, 200 epochs, no early
stopping, scvi-tools' other defaults) on the same training cells (mmint's random split by seed)
and score the same test cells through mmint.evaluate. Writes ``parity_check.md`` beside this
file: per dataset and score, the parity run's and the adapter's mean over seeds and the largest
per-seed absolute difference.

Usage::

    .venv/bin/python experiments/real_comparators/parity_check.py \
        runs/benchmark/real_comparators/results.csv
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from mmint.benchmark.report import markdown_table
from mmint.benchmark.results import read_results
from mmint.io import atomic_write

HERE = Path(__file__).resolve().parent
PARITY = HERE.parents[1] / "benchmarks" / "results" / "multivi_parity.csv"
DATASETS = ("bmmc_cite_neurips2021_starter", "bmmc_multiome_neurips2021_starter")


def other(data: str) -> str:
    return "adt" if "cite" in data else "atac"


def scores(data: str) -> dict[str, tuple[str, str]]:
    """label -> (parity column, suite column)."""
    o = other(data)
    out = {
        "scIB bio conservation": ("scib_bio", "scib.bio_conservation"),
        "scIB batch correction": ("scib_batch", "scib.batch_correction"),
        "scIB total": ("scib_total", "scib.total"),
        "KMeans ARI": ("ari_kmeans", "ari_kmeans"),
        "KMeans NMI": ("nmi_kmeans", "nmi_kmeans"),
        "Leiden best NMI": ("nmi_leiden", "nmi_leiden"),
        "FOSCTTM": ("foscttm", "foscttm"),
        f"RNA Pearson from {o}": ("pearson_rna_from_other", f"pearson.{o}.rna"),
    }
    if o == "adt":
        out["ADT Pearson from RNA"] = ("pearson_adt_from_rna", "pearson.rna.adt")
    else:
        out["ATAC AUROC from RNA"] = ("auroc_atac_from_rna", "auroc.rna.atac")
        out["ATAC Pearson from RNA"] = ("pearson_atac_from_rna", "pearson.rna.atac")
    return out


def main(results_csv: str) -> None:
    suite = read_results(results_csv)
    suite = suite[(suite["model"] == "scvi_multivi") & (suite["status"] == "ok")]
    parity = pd.read_csv(PARITY)
    parity = parity[(parity["model"] == "scvi") & (parity["status"] == "ok")]
    lines = ["# scvi_multivi adapter vs the MULTIVI parity runs", ""]
    worst = 0.0
    for data in DATASETS:
        a = parity[parity["dataset"] == data].set_index("seed")
        b = suite[suite["data"] == data].set_index("seed")
        seeds = sorted(set(a.index) & set(b.index))
        if not seeds:
            lines += [f"## {data}", "", "No seed finished in both.", ""]
            continue
        rows = []
        for label, (pa, sb) in scores(data).items():
            x = pd.to_numeric(a.loc[seeds, pa]).to_numpy()
            y = pd.to_numeric(b.loc[seeds, sb]).to_numpy()
            diff = float(np.max(np.abs(x - y)))
            worst = max(worst, diff)
            rows.append([label, f"{x.mean():.4f}", f"{y.mean():.4f}", f"{diff:.4f}"])
        lines += [
            f"## {data} (seeds {seeds})",
            "",
            markdown_table(
                ["score", "parity MULTIVI (mean)", "scvi_multivi (mean)", "max |diff| per seed"],
                rows,
            ),
            "",
        ]
    lines.append(f"Largest per-seed difference over every score: {worst:.4f} (criterion: 0.05).")
    atomic_write(HERE / "parity_check.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/benchmark/real_comparators/results.csv")

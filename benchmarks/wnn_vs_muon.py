"""mmint's exact-neighbour WNN graph against muon's ``muon.pp.neighbors`` on the same coordinates.

For each dataset: a WNN model is fitted on the training cells (its per-modality PCA / LSI
spaces), both graph builders run on every cell's coordinates with the same settings, and the
script reports the modality weights' agreement (correlation, mean absolute difference, means)
and the share of WNN edges both graphs have. Written to ``benchmarks/results/wnn_vs_muon.md``.

Usage (needs the ``wnn`` extra, i.e. muon)::

    MMINT_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/wnn_vs_muon.py
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATASETS = [
    (
        "synthetic (300 cells)",
        "synthetic",
        [
            "data.simulate.n_cells=300",
            "data.simulate.n_types=4",
            "data.simulate.n_major=2",
            "+data.simulate.n_features={rna: 100, atac: 200, ephys: 20}",
        ],
    ),
    ("bmmc_cite_neurips2021_starter", "bmmc_cite_neurips2021_starter", []),
    ("bmmc_multiome_neurips2021_starter", "bmmc_multiome_neurips2021_starter", []),
]


def compare(data: str, extra: list[str]) -> dict:
    """Weights and edges of both builders on all cells of ``data`` (seed 0 split)."""
    from mmint.cli import compose
    from mmint.fit import build_datamodule, plain
    from mmint.models import build_model
    from mmint.models.wnn_graph import muon_wnn_graph, wnn_graph

    cfg = plain(compose("fit", ["model=wnn", f"data={data}", *extra]))
    dm = build_datamodule(cfg, 512)
    model = build_model("wnn", dm.spec, resolutions=[1.0]).fit_data(dm)
    cells = dm.cells("all")
    spaces = {m: model.space(dm, m, cells) for m in model.modalities}
    t0 = time.perf_counter()
    ours = wnn_graph(spaces)
    t1 = time.perf_counter()
    theirs = muon_wnn_graph(spaces)
    t2 = time.perf_counter()
    a, b = (ours.distances > 0).astype(int), (theirs.distances > 0).astype(int)
    out = {"cells": len(cells), "seconds_mmint": t1 - t0, "seconds_muon": t2 - t1}
    out["edges_shared"] = float(a.multiply(b).sum() / a.sum())
    for m in spaces:
        wa, wb = ours.weights[m], theirs.weights[m]
        out[m] = {
            "corr": float(np.corrcoef(wa, wb)[0, 1]),
            "mean_abs_diff": float(np.abs(wa - wb).mean()),
            "mean_mmint": float(wa.mean()),
            "mean_muon": float(wb.mean()),
        }
    return out


def main() -> None:
    import torch

    from mmint.io import atomic_write

    torch.set_num_threads(1)
    os.environ.setdefault("MMINT_DATA_DIR", "/work/shared/data")
    lines = [
        "# WNN graph: mmint (exact neighbours) vs muon.pp.neighbors (NN-descent)",
        "",
        "`benchmarks/wnn_vs_muon.py`: the same per-modality coordinates (a WNN model's PCA / LSI "
        "spaces fitted on the seed-0 training cells), every cell, n_neighbors 20, bandwidth "
        "neighbours 20, candidates 200. Seconds include muon's numba compilation.",
        "",
        "| data | cells | modality | weight corr. | mean abs. diff. | mean weight mmint | "
        "mean weight muon | WNN edges shared | s mmint | s muon |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, data, extra in DATASETS:
        res = compare(data, extra)
        for m in [k for k in res if isinstance(res[k], dict)]:
            r = res[m]
            lines.append(
                f"| {label} | {res['cells']} | {m} | {r['corr']:.3f} | {r['mean_abs_diff']:.3f} | "
                f"{r['mean_mmint']:.3f} | {r['mean_muon']:.3f} | {res['edges_shared']:.3f} | "
                f"{res['seconds_mmint']:.1f} | {res['seconds_muon']:.1f} |"
            )
        print(lines[-1], flush=True)
    atomic_write(REPO / "benchmarks" / "results" / "wnn_vs_muon.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

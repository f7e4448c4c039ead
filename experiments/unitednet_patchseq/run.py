"""UnitedNet on Patch-seq (Gouwens 2020) beside the floors, under the reference and honest protocols.

UnitedNet's numbers are the UnitedNet parity benchmark's rows (``benchmarks/unitednet_parity.py``:
mmint with its defaults and the original code, same cells, folds, seeds and inputs); this
script computes the floors on exactly the same inputs and cells and writes one table:

- PCA floor (``model=pca``: per-modality PCA, KMeans with K = 27 on the joint latent, ridge
  translation, fitted on the protocol's training cells);
- k-means(27) on 30 RNA principal components (the anchors' floor).

Usage (from the repository root, after the parity benchmark has run these protocols)::

    MMINT_DATA_DIR=../shared/data python experiments/unitednet_patchseq/run.py --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

from unitednet_parity import _datamodule  # noqa: E402
from unitednet_parity_protocols import Protocol, build  # noqa: E402
from unitednet_parity_report import mean_sd, paired_difference  # noqa: E402

from mmint.evaluate import evaluate, mean_cross_r2  # noqa: E402
from mmint.io import atomic_write  # noqa: E402
from mmint.metrics.clustering import ari, class_level_ari  # noqa: E402
from mmint.models import build_model  # noqa: E402

DATA = "patchseq_gouwen2020"
PROTOCOLS = ("reference", "honest")


def floors(proto: Protocol) -> dict[str, float]:
    """The PCA floor and k-means(27) on 30 RNA PCs, fitted on the protocol's training cells
    (stage 2's cells and inputs) and scored on its scored cells."""
    train = proto.stages[-1].train
    cells = proto.score_cells
    dm = _datamodule(proto, proto.score_inputs, train, train, cells, 256)
    pca = build_model("pca", dm.spec).fit_data(dm)
    scores = evaluate(pca, dm, "test", scib=False, leiden=False, seed=proto.seed)
    rna = proto.score_inputs["rna"]
    pcs = PCA(n_components=30, random_state=proto.seed).fit(rna[train])
    km = KMeans(n_clusters=27, n_init=10, random_state=proto.seed).fit(pcs.transform(rna[train]))
    pred_tr, pred = km.predict(pcs.transform(rna[train])), km.predict(pcs.transform(rna[cells]))
    labels = proto.labels
    return {
        "pca_ari_kmeans": scores["ari_kmeans"],
        "pca_ari_class": scores.get("ari_class"),
        "pca_r2vw_cross": mean_cross_r2(scores["r2_variance_weighted"]),
        "kmeans_rna_pcs_ari": ari(labels[cells], pred),
        "kmeans_rna_pcs_ari_class": class_level_ari(
            labels[train], pred_tr, labels[cells], pred, proto.classes
        ),
    }


def table(parity: pd.DataFrame, floor: pd.DataFrame) -> str:
    """Markdown: UnitedNet (mmint, original) and the floors, mean +/- sd; paired differences."""
    lines = []
    for protocol in PROTOCOLS:
        block = parity[(parity["dataset"] == DATA) & (parity["protocol"] == protocol)]
        mine = block[(block["implementation"] == "mmint") & (block["variant"] == "default")]
        orig = block[block["implementation"] == "original"]
        fl = floor[floor["protocol"] == protocol]
        lines += [
            f"### {protocol}",
            "",
            "| method | n | MET-type ARI | class ARI | KMeans ARI (joint latent) | "
            "cross-modal R2 (var.-weighted) |",
            "|---|---|---|---|---|---|",
        ]
        for name, rows in (("UnitedNet, mmint", mine), ("UnitedNet, original code", orig)):
            if len(rows):
                lines.append(
                    f"| {name} | {len(rows)} | {mean_sd(rows['ari'])} | "
                    f"{mean_sd(rows['ari_class'])} | {mean_sd(rows['ari_kmeans'])} | "
                    f"{mean_sd(rows['r2vw_cross'])} |"
                )
        if len(fl):
            lines.append(
                f"| PCA floor (KMeans, K = 27) | {len(fl)} | {mean_sd(fl['pca_ari_kmeans'])} | "
                f"{mean_sd(fl['pca_ari_class'])} | {mean_sd(fl['pca_ari_kmeans'])} | "
                f"{mean_sd(fl['pca_r2vw_cross'])} |"
            )
            lines.append(
                f"| k-means(27) on 30 RNA PCs | {len(fl)} | {mean_sd(fl['kmeans_rna_pcs_ari'])} | "
                f"{mean_sd(fl['kmeans_rna_pcs_ari_class'])} | - | - |"
            )
        if len(mine) and len(fl):
            a = mine.set_index("seed")["ari"]
            b = fl.set_index("seed")["kmeans_rna_pcs_ari"].reindex(a.index)
            m, lo, hi, n = paired_difference(a, b)
            lines.append("")
            lines.append(
                f"UnitedNet (mmint) minus k-means on RNA PCs, MET-type ARI: {m:+.3f} "
                f"[{lo:+.3f}, {hi:+.3f}] (n={n})"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument(
        "--parity", type=Path, default=REPO / "benchmarks" / "results" / "unitednet_parity.csv"
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for protocol in PROTOCOLS:
        for seed in args.seeds:
            proto = build(DATA, protocol, seed)
            rows.append({"protocol": protocol, "seed": seed, **floors(proto)})
            print(rows[-1], flush=True)
    floor = pd.DataFrame(rows)
    atomic_write(args.out / "floors.csv", floor.to_csv(index=False))
    parity = pd.read_csv(args.parity) if args.parity.exists() else pd.DataFrame()
    text = table(parity, floor) if not parity.empty else "(no parity rows yet)\n"
    atomic_write(args.out / "summary.md", text)
    print(text)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()

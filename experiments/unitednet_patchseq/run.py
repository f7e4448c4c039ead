"""UnitedNet on Patch-seq (Gouwens 2020): the reference protocol as it was, and mmint's honest one.

Usage (from the repository root, MMINT_DATA_DIR pointing at the shared datasets)::

    python experiments/unitednet_patchseq/run.py --seeds 0 1 2 --out experiments/unitednet_patchseq/results

(a) reference: sklearn StratifiedKFold(10, shuffle=True, random_state=0) on cell_type, test =
    fold 9; stage 1 cross-modal training (clustering then translation passes, GAN on) with the
    checkpoint chosen on the test fold; stage 2 unsupervised grouping with fresh heads trained,
    selected and scored on all 448 cells.
(b) honest: the contracts' stratified 80/10/10 split per seed; stage 1 and stage 2 on train cells
    with checkpoints chosen on val; scores on test cells.
Each (protocol, seed) also scores the PCA floor and k-means(27) on 30 RNA PCs on the same cells.
Results are appended atomically to ``results.csv``; finished (protocol, seed) rows are skipped.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score
from sklearn.model_selection import StratifiedKFold

from mmint.cli import compose
from mmint.data import PairedDataModule, load_dataset
from mmint.evaluate import evaluate, mean_cross_r2
from mmint.fit import plain, train_model
from mmint.io import atomic_write
from mmint.metrics.clustering import class_level_ari
from mmint.models import build_model

DATA = "patchseq_gouwen2020"


def reference_split(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Fold 9 of the original notebook's StratifiedKFold(10, shuffle, seed 0) is test (and val)."""
    folds = list(StratifiedKFold(n_splits=10, shuffle=True, random_state=0).split(labels, labels))
    train, test = folds[9]
    return {"kind": "given", "train": train, "val": test, "test": test}


def floors(dm: PairedDataModule, cells: str, seed: int) -> dict[str, float]:
    """k-means(27) on 30 RNA PCs (anchor-results' floor) and its class-level ARI."""
    train, test = dm.cells("train"), dm.cells(cells)
    pca = PCA(n_components=30, random_state=seed).fit(dm.inputs["rna"][train])
    km = KMeans(n_clusters=len(dm.label_names), n_init=10, random_state=seed)
    km.fit(pca.transform(dm.inputs["rna"][train]))
    pred_tr, pred_te = (
        km.predict(pca.transform(dm.inputs["rna"][train])),
        km.predict(pca.transform(dm.inputs["rna"][test])),
    )
    names = np.array(dm.label_names)
    lab_te, lab_tr = dm.true_labels[test], dm.true_labels[train]
    return {
        "kmeans_rna_pcs_ari": adjusted_rand_score(lab_te, pred_te),
        "kmeans_rna_pcs_ari_class": class_level_ari(
            names[lab_tr], pred_tr, names[lab_te], pred_te, dm.data.classes()
        ),
    }


def run_one(protocol: str, seed: int, epochs: int, out: Path) -> dict:
    """Both stages of UnitedNet plus the floors for one protocol and seed."""
    torch.set_num_threads(1)
    cfg = plain(
        compose("fit", [f"data={DATA}", "model=unitednet_patchseq", f"seed={seed}", "logger=none"])
    )
    cfg["eval"]["every_n_epochs"] = epochs
    hp = dict(cfg["model"])
    for key in ("name", "max_epochs", "batch_size"):
        hp.pop(key)
    data = load_dataset(cfg["data"])
    labels, _ = data.labels()
    split = reference_split(labels) if protocol == "reference" else {"kind": "random"}
    dm = PairedDataModule(data, split=split, seed=seed, batch_size=int(cfg["model"]["batch_size"]))
    dm.setup()
    torch.manual_seed(seed)
    hp["seed"] = seed
    # stage 1: cross-modal prediction (reference task cross_model_prediction_clus: clustering
    # passes then translation passes, GAN on, selection on translation loss)
    model = build_model("unitednet", dm.spec, **{**hp, "stage": "finetune", "adversarial": True})
    run_dir = out / f"{protocol}_seed{seed}"
    start = time.perf_counter()
    model, cost1 = train_model(model, dm, cfg, run_dir / "stage1", epochs, [])
    # stage 2: unsupervised grouping with fresh heads
    model.configure_stage(task="unsupervised", stage="train")
    model.hparams["adversarial"] = None
    model.reinit_group_heads()
    if protocol == "reference":  # trained, selected and scored on all cells, as the notebook
        every = np.arange(data.n_cells)
        dm2 = PairedDataModule(
            data,
            split={"kind": "given", "train": every, "val": every, "test": every},
            seed=seed,
            batch_size=dm.batch_size,
        )
        dm2.transforms = dm.transforms  # keep stage 1's fitted transforms
        dm2.setup()
    else:
        dm2 = dm
    model, cost2 = train_model(model, dm2, cfg, run_dir / "stage2", epochs, [])
    seconds = time.perf_counter() - start
    scores = evaluate(model, dm2, "test", scib=False, leiden=False, seed=seed)
    pca = build_model("pca", dm2.spec).fit_data(dm2)
    pca_scores = evaluate(pca, dm2, "test", scib=False, leiden=False, seed=seed)
    row = {
        "protocol": protocol,
        "seed": seed,
        "scored_cells": len(dm2.cells("test")),
        "ari": scores["ari"],
        "nmi": scores["nmi"],
        "ari_class": scores.get("ari_class"),
        "n_groups": scores["n_groups"],
        "ari_kmeans": scores["ari_kmeans"],
        "r2_cross_uniform": mean_cross_r2(scores["r2"]),
        "r2_cross_variance_weighted": mean_cross_r2(scores["r2_variance_weighted"]),
        **{
            f"r2vw.{s}.{d}": v
            for s, r in scores["r2_variance_weighted"].items()
            for d, v in r.items()
        },
        **{f"r2.{s}.{d}": v for s, r in scores["r2"].items() for d, v in r.items()},
        "pca_ari_kmeans": pca_scores["ari_kmeans"],
        "pca_ari_class": pca_scores.get("ari_class"),
        "pca_r2_cross_variance_weighted": mean_cross_r2(pca_scores["r2_variance_weighted"]),
        **floors(dm2, "test", seed),
        "seconds": seconds,
        "seconds_per_epoch_stage1": cost1["seconds_per_epoch"],
        "seconds_per_epoch_stage2": cost2["seconds_per_epoch"],
    }
    return row


SUMMARY = [
    "ari",
    "ari_class",
    "nmi",
    "n_groups",
    "ari_kmeans",
    "r2_cross_variance_weighted",
    "r2_cross_uniform",
    "pca_ari_kmeans",
    "pca_ari_class",
    "pca_r2_cross_variance_weighted",
    "kmeans_rna_pcs_ari",
    "kmeans_rna_pcs_ari_class",
    "seconds_per_epoch_stage1",
    "seconds_per_epoch_stage2",
]


def summary(table: pd.DataFrame) -> str:
    """Mean +/- sd over seeds per protocol, as a markdown table."""
    rows = []
    for key in SUMMARY:
        cells = []
        for protocol in ("reference", "honest"):
            v = table.loc[table["protocol"] == protocol, key].astype(float)
            cells.append(f"{v.mean():.3f} +/- {v.std(ddof=1):.3f} (n={len(v)})" if len(v) else "-")
        rows.append(f"| {key} | {cells[0]} | {cells[1]} |")
    head = (
        "| metric | (a) reference protocol, all 448 cells | (b) honest, test cells |\n|---|---|---|"
    )
    return head + "\n" + "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--protocols", nargs="+", default=["reference", "honest"])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("experiments/unitednet_patchseq/results"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    table = args.out / "results.csv"
    done = pd.read_csv(table) if table.exists() else pd.DataFrame(columns=["protocol", "seed"])
    for protocol in args.protocols:
        for seed in args.seeds:
            if ((done["protocol"] == protocol) & (done["seed"] == seed)).any():
                continue
            row = run_one(protocol, seed, args.epochs, args.out)
            done = pd.concat([done, pd.DataFrame([row])], ignore_index=True)
            atomic_write(table, done.to_csv(index=False))
            print(pd.DataFrame([row]).T.to_string(), flush=True)
    atomic_write(args.out / "summary.md", summary(done))
    print(summary(done))


if __name__ == "__main__":
    main()

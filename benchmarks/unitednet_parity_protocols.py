"""The protocols of the UnitedNet parity benchmark: the same cells, folds and inputs for both
implementations, and the one scoring function both are scored by.

A :class:`Protocol` holds every array a run needs: the model inputs of each stage (already
preprocessed, so that mmint and the original see the same numbers), the cell sets, the cells
that are scored and the labels. The original's preprocessing is reproduced here in our own
words: standard scaling per modality (fitted per fold on Patch-seq's reference protocol, on
the training spots and on all spots for DBiT-seq), and for the multiome starter
normalise-to-1e4 + log1p + scaling clipped at 4 (scanpy's ``scale(max_value=4)``) for RNA and
binarised peaks.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.model_selection import StratifiedKFold

from mmint.data import PairedDataModule, load_dataset
from mmint.metrics.clustering import (
    ari,
    class_level_ari,
    hungarian_accuracy,
    kmeans_labels,
    nmi,
)
from mmint.metrics.prediction import auroc, r2

PATCHSEQ = "patchseq_gouwen2020"
DBITSEQ = "dbitseq_mouse_embryo"
MULTIOME = "bmmc_multiome_neurips2021_starter"
SYNTHETIC = "synthetic"


@dataclass
class Stage:
    """One training stage (one ``train`` call of the original, one ``Trainer.fit`` of mmint).

    ``task``: ``clus_then_translation`` (the original's ``cross_model_prediction_clus``: a
    clustering pass then a translation pass per epoch, GAN on, checkpoint on the translation
    loss), ``unsupervised`` or ``supervised``. ``val=None``: validation on the training cells
    (the original's default). ``labelled``: whether the training labels are given to the model
    (only ``supervised`` reads them).
    """

    task: str
    epochs: int
    inputs: dict[str, np.ndarray]
    train: np.ndarray
    val: np.ndarray | None
    init_heads: bool = False


@dataclass
class Protocol:
    """Everything one (dataset, protocol, seed) run needs, for either implementation."""

    dataset: str
    name: str
    seed: int
    modalities: list[str]
    binary: dict[str, bool]
    labels: np.ndarray
    stages: list[Stage]
    score_inputs: dict[str, np.ndarray]
    score_cells: np.ndarray
    class_fit_cells: np.ndarray
    n_groups: int
    preset: str
    original_config: str
    classes: dict[str, str] | None = None
    batches: np.ndarray | None = None
    #: labels hidden from the models (classes absent from the training cells)
    hidden_labels: set[str] = field(default_factory=set)
    #: model overrides the protocol needs on mmint's side
    mmint_overrides: dict = field(default_factory=dict)


# ------------------------------------------------------------------------ preprocessing
def standardise(x: np.ndarray, fit: np.ndarray) -> np.ndarray:
    """``(x - mean) / sd`` with mean and (population) sd of ``fit``; constant features -> 0."""
    fit = np.asarray(fit, dtype=np.float64)
    mean, sd = fit.mean(0), fit.std(0)
    sd[sd == 0] = 1.0
    return ((np.asarray(x, dtype=np.float64) - mean) / sd).astype(np.float32)


def per_set_scaled(x: np.ndarray, sets: list[np.ndarray]) -> np.ndarray:
    """Each set of cells standardised on itself (the original's scalers fitted per fold)."""
    out = np.zeros(x.shape, dtype=np.float32)
    for idx in sets:
        out[idx] = standardise(x[idx], x[idx])
    return out


def honest_split(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """StratifiedKFold(10, shuffle, seed): fold 0 is test, fold 1 val, the rest (80%) train."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rare labels: fewer members than folds
        folds = [
            te
            for _, te in StratifiedKFold(10, shuffle=True, random_state=seed).split(
                np.zeros(len(labels)), labels
            )
        ]
    test, val = np.sort(folds[0]), np.sort(folds[1])
    train = np.setdiff1d(np.arange(len(labels)), np.concatenate([test, val]))
    return train, val, test


def _raw(dataset: str) -> tuple[dict[str, np.ndarray], np.ndarray, object]:
    data = load_dataset(dataset)
    x = {
        m: np.asarray(mod.x.toarray() if hasattr(mod.x, "toarray") else mod.x)
        for m, mod in data.modalities.items()
    }
    labels = data.obs[data.label_key].astype(str).to_numpy()
    return x, labels, data


# ---------------------------------------------------------------------------- protocols
def patchseq(name: str, seed: int, scaler: str = "original") -> Protocol:
    """Patch-seq: ``reference`` (the original notebook) or ``honest`` (80/10/10 by seed).

    reference: StratifiedKFold(10, shuffle, random_state=0) on the MET type, fold 9 is the
    test fold. Stage 1 (clustering + translation passes, GAN on) trains on the other folds and
    selects its checkpoint on the test fold; stage 2 (fresh heads, unsupervised grouping)
    trains, selects and is scored on all 448 cells. Scalers: stage 1 fits one on the training
    folds and one on the test fold; stage 2 one on all cells (``scaler="train_folds"``: one
    scaler fitted on the training folds for both stages, as mmint's data module does).
    honest: the split of :func:`honest_split`, one scaler fitted on the training cells, both
    stages select on val, scored on the test cells.
    """
    x, labels, data = _raw(PATCHSEQ)
    mods = ["rna", "ephys", "morph"]
    if name == "reference":
        folds = list(StratifiedKFold(10, shuffle=True, random_state=0).split(labels, labels))
        train, test = folds[9]
        every = np.concatenate([train, test])  # the original's stage-2 order: train, then test
        if scaler == "train_folds":
            s1 = {m: standardise(x[m], x[m][train]) for m in mods}
            s2 = s1
        else:
            s1 = {m: per_set_scaled(x[m], [train, test]) for m in mods}
            s2 = {m: standardise(x[m], x[m]) for m in mods}
        stages = [
            Stage("clus_then_translation", 20, s1, train, test),
            Stage("unsupervised", 20, s2, every, every, init_heads=True),
        ]
        score, fit = np.arange(len(labels)), np.arange(len(labels))
    else:
        train, val, test = honest_split(labels, seed)
        s = {m: standardise(x[m], x[m][train]) for m in mods}
        stages = [
            Stage("clus_then_translation", 20, s, train, val),
            Stage("unsupervised", 20, s, train, val, init_heads=True),
        ]
        s2, score, fit = s, test, train
    return Protocol(
        PATCHSEQ,
        name,
        seed,
        mods,
        {m: False for m in mods},
        labels,
        stages,
        s2,
        score,
        fit,
        27,
        "unitednet_patchseq",
        "patchseq_config",
        classes=data.classes(),
    )


def dbitseq(seed: int) -> Protocol:
    """DBiT-seq as the original's notebook: stage 1 on the training spots (validated on
    them, inputs scaled on them), scored on all spots (inputs scaled on all spots) with the
    stage's best checkpoint; K = 12 groups as its config."""
    x, labels, data = _raw(DBITSEQ)
    mods = ["rna", "protein", "niche_rna"]
    split = data.obs["unitednet_split"].astype(str).to_numpy()
    train = np.flatnonzero(split == "train")
    s1 = {m: per_set_scaled(x[m], [train]) for m in mods}
    every = np.arange(len(labels))
    return Protocol(
        DBITSEQ,
        "reference",
        seed,
        mods,
        {m: False for m in mods},
        labels,
        [Stage("clus_then_translation", 20, s1, train, None)],
        {m: standardise(x[m], x[m]) for m in mods},
        every,
        every,
        12,
        "unitednet_dbitseq",
        "dbitseq_config",
    )


def multiome(seed: int) -> Protocol:
    """The multiome starter in the original's supervised mode (its atacseq config): the split
    of :func:`honest_split`, 10 epochs, checkpoint on the val cells' cross-entropy, scored on
    the test cells. Labels absent from the training cells are hidden from both models."""
    x, labels, _ = _raw(MULTIOME)
    train, val, test = honest_split(labels, seed)
    seen = set(labels[train])
    val = val[np.isin(labels[val], sorted(seen))]  # the original cannot validate on them
    counts = x["rna"].astype(np.float64)
    lognorm = np.log1p(counts / np.maximum(counts.sum(1, keepdims=True), 1) * 1e4)
    rna = np.clip(standardise(lognorm, lognorm[train]), -4, 4)
    inputs = {"atac": (x["atac"] > 0).astype(np.float32), "rna": rna.astype(np.float32)}
    return Protocol(
        MULTIOME,
        "honest",
        seed,
        ["atac", "rna"],  # the atacseq config's order
        {"atac": True, "rna": False},
        labels,
        [Stage("supervised", 10, inputs, train, val)],
        inputs,
        test,
        train,
        len(seen),
        "unitednet_multiome",
        "atacseq_config",
        hidden_labels=set(labels) - seen,
    )


def synthetic(seed: int) -> Protocol:
    """mmint's default synthetic data and UnitedNet defaults (unsupervised, 30 epochs): the
    inputs are mmint's data module's (transforms fitted on training cells), the split its
    random 80/10/10; the original gets a config with the same networks (see
    ``unitednet_original.config_from_mmint``)."""
    data = load_dataset(SYNTHETIC)
    dm = PairedDataModule(data, split={"kind": "random"}, seed=seed, batch_size=64)
    dm.setup()
    mods = list(dm.modalities)
    inputs = {
        m: np.asarray(
            dm.inputs[m].toarray() if hasattr(dm.inputs[m], "toarray") else dm.inputs[m],
            dtype=np.float32,
        )
        for m in mods
    }
    labels = data.obs[data.label_key].astype(str).to_numpy()
    train, val, test = dm.cells("train"), dm.cells("val"), dm.cells("test")
    batches, _ = data.batches()
    return Protocol(
        SYNTHETIC,
        "honest",
        seed,
        mods,
        {m: data.modalities[m].kind == "binary" for m in mods},
        labels,
        [Stage("unsupervised", 30, inputs, train, val)],
        inputs,
        test,
        train,
        len(set(labels[train])),
        "unitednet",
        "mmint_default",
        batches=batches,
    )


def build(dataset: str, protocol: str, seed: int, scaler: str = "original") -> Protocol:
    """The protocol of a (dataset, protocol) pair for one seed."""
    if dataset == PATCHSEQ:
        return patchseq(protocol, seed, scaler)
    if dataset == DBITSEQ:
        return dbitseq(seed)
    if dataset == MULTIOME:
        return multiome(seed)
    if dataset == SYNTHETIC:
        return synthetic(seed)
    raise SystemExit(f"error: no parity protocol for dataset '{dataset}'")


# ------------------------------------------------------------------------------ scoring
@dataclass
class Result:
    """What an implementation gives for the scored cells (and the class-fit cells)."""

    groups: np.ndarray
    joint: np.ndarray
    translations: dict[tuple[str, str], np.ndarray]
    fit_groups: np.ndarray


def score(proto: Protocol, res: Result) -> dict[str, float]:
    """The same metric functions (``mmint.metrics``) for both implementations."""
    cells = proto.score_cells
    labels = proto.labels[cells]
    out: dict[str, float] = {
        "scored_cells": int(len(cells)),
        "ari": ari(labels, res.groups),
        "nmi": nmi(labels, res.groups),
        "accuracy_hungarian": hungarian_accuracy(labels, res.groups),
        "n_groups": int(len(np.unique(res.groups))),
        "ari_kmeans": ari(
            labels, kmeans_labels(res.joint, len(np.unique(labels)), seed=proto.seed)
        ),
    }
    if proto.classes:
        fit = proto.class_fit_cells
        out["ari_class"] = class_level_ari(
            proto.labels[fit], res.fit_groups, labels, res.groups, proto.classes
        )
    cross = []
    for (src, dst), pred in sorted(res.translations.items()):
        target = proto.score_inputs[dst][cells]
        if proto.binary[dst]:
            out[f"auroc.{src}.{dst}"] = auroc(target, pred)
            continue
        out[f"r2vw.{src}.{dst}"] = r2(target, pred, "variance")
        out[f"r2.{src}.{dst}"] = r2(target, pred, "uniform")
        if src != dst:
            cross.append(out[f"r2vw.{src}.{dst}"])
    out["r2vw_cross"] = float(np.mean(cross)) if cross else float("nan")
    return out

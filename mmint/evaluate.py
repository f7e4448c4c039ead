"""One metric path for every integrator: model interface in, ``metrics.json`` entries out.

Only the model interface (:class:`mmint.models.base.Integrator`) is used, so every model is
scored by the same code on the same cells.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np
import torch

from mmint import keys
from mmint.data.datamodule import PairedDataModule
from mmint.metrics.alignment import FOSCTTM_MAX_CELLS, foscttm_subsampled, latent_distance
from mmint.metrics.clustering import (
    ari,
    class_level_ari,
    hungarian_accuracy,
    kmeans_labels,
    leiden_best,
    nmi,
)
from mmint.metrics.prediction import PredictionAccumulator
from mmint.metrics.subsample import SCIB_MAX_CELLS
from mmint.models.base import Integrator
from mmint.models.cell_outputs import Outputs
from mmint.models.wholeset import WholeSetIntegrator


def _eval_mode(model: Integrator) -> bool:
    was = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    return was


@torch.no_grad()
def collect(
    model: Integrator,
    dm: PairedDataModule,
    cells: np.ndarray,
    translations: bool = True,
    pairs: list[tuple[str, str]] | None = None,
) -> Outputs:
    """Run the model over ``cells`` batch by batch; stream cross-modal predictions into
    accumulators (each in dst's model-input space, on cells that have both modalities) so a
    large ATAC modality is never densified whole. A whole-set model
    (:class:`~mmint.models.wholeset.WholeSetIntegrator`, ``embed_cells`` in ``contracts.md``)
    gives everything for ``cells`` at once instead."""
    if isinstance(model, WholeSetIntegrator):
        return model.embed_cells(dm, cells, translations=translations, pairs=pairs)
    was_training = _eval_mode(model)
    mods = dm.modalities
    pairs = pairs if pairs is not None else [(s, d) for s in mods for d in mods]
    prediction: dict[str, dict[str, PredictionAccumulator]] = {}
    for s, d in pairs:
        binary = dm.input_kind(d) == "binary"
        prediction.setdefault(s, {})[d] = PredictionAccumulator(compute_auroc=binary)
    rows = _Rows(len(cells))
    device = getattr(model, "device", torch.device("cpu"))
    sparse = bool(getattr(model, "accepts_sparse", False))
    size = dm.prediction_rows([d for _, d in pairs] if translations else [])
    for batch in dm.iter_batches(cells, batch_size=size, sparse=sparse):
        idx = batch[keys.INDEX].numpy()
        batch = {k: v.to(device) for k, v in batch.items()}
        rows.put("joint", model.joint_latent(batch).float().cpu().numpy())
        for m, z in model.latents(batch).items():
            rows.put(f"latent/{m}", z.float().cpu().numpy())
        g = model.predict_groups(batch)
        if g is not None:
            rows.put("groups", g.cpu().numpy())
        rows.advance(len(idx))
        if translations:
            for s, d in pairs:
                both = (dm.masks[s][idx] > 0) & (dm.masks[d][idx] > 0)
                if not both.any():
                    continue
                pred = model.translate(batch, s, d).float().cpu().numpy()[both]
                prediction[s][d].update(dm.inputs[d][idx[both]], pred)
    if was_training and hasattr(model, "train"):
        model.train()
    return Outputs(
        cells=cells,
        joint=rows.get("joint"),
        latents={m: rows.get(f"latent/{m}") for m in mods if f"latent/{m}" in rows.arrays},
        groups=rows.get("groups") if "groups" in rows.arrays else None,
        prediction=prediction,
    )


class _Rows:
    """Per-cell outputs written batch by batch into arrays sized for all cells at the first
    batch: a list of per-batch arrays would interleave small long-lived blocks with each batch's
    freed temporaries, and malloc's heap then grows by about a batch's temporaries per batch
    (11 GB over the 800,000 training cells of a 10^6-cell run)."""

    def __init__(self, n: int) -> None:
        self.n, self.start, self.arrays = n, 0, {}

    def put(self, name: str, values: np.ndarray) -> None:
        out = self.arrays.get(name)
        if out is None:
            out = self.arrays[name] = np.empty((self.n, *values.shape[1:]), values.dtype)
        out[self.start : self.start + len(values)] = values

    def advance(self, n: int) -> None:
        self.start += n

    def get(self, name: str) -> np.ndarray:
        if name not in self.arrays:  # no batch (no cells): what concatenating nothing raises
            raise ValueError("need at least one array to concatenate")
        return self.arrays[name]


def prediction_scores(out: Outputs) -> dict[str, Any]:
    """``r2``, ``r2_variance_weighted``, ``r2_excluded_features``, ``pearson``, ``auroc``."""
    res: dict[str, Any] = {"r2": {}, "r2_variance_weighted": {}, "pearson": {}, "auroc": {}}
    excluded: dict[str, int] = {}
    for s, row in out.prediction.items():
        for d, acc in row.items():
            if acc.n_cells < 2:
                continue
            res["r2"].setdefault(s, {})[d] = acc.r2("uniform")
            res["r2_variance_weighted"].setdefault(s, {})[d] = acc.r2("variance")
            res["pearson"].setdefault(s, {})[d] = acc.pearson()
            if acc.compute_auroc:
                res["auroc"].setdefault(s, {})[d] = acc.auroc()
            # counted on dst's own cells (its reconstruction) when available
            if d not in excluded or s == d:
                excluded[d] = acc.n_degenerate()
    res["r2_excluded_features"] = excluded
    if not res["auroc"]:
        res["auroc"] = None
    return res


def mean_cross_r2(r2: dict[str, dict[str, float]]) -> float | None:
    """Mean of the off-diagonal entries of an ``r2`` matrix (the contracts' mean cross-modal R2)."""
    vals = [v for s, row in r2.items() for d, v in row.items() if s != d and v is not None]
    return float(np.mean(vals)) if vals else None


def alignment_scores(
    out: Outputs,
    dm: PairedDataModule,
    seed: int = 0,
    foscttm_max_cells: int | None = FOSCTTM_MAX_CELLS,
) -> dict[str, Any]:
    """FOSCTTM and latent distance per modality pair (cells with both) and their means.

    FOSCTTM is quadratic in the cells: above ``foscttm_max_cells`` cells with both it runs on
    a seeded uniform subsample, recorded per pair in ``foscttm_subsample``.
    """
    fos: dict[str, dict[str, float]] = {}
    dist: dict[str, dict[str, float]] = {}
    how: dict[str, dict[str, Any]] = {}
    for a, b in combinations(sorted(out.latents), 2):
        both = (dm.masks[a][out.cells] > 0) & (dm.masks[b][out.cells] > 0)
        if both.sum() < 3:
            continue
        za, zb = out.latents[a][both], out.latents[b][both]
        if za.shape[1] != zb.shape[1]:
            continue
        value, how.setdefault(a, {})[b] = foscttm_subsampled(za, zb, foscttm_max_cells, seed)
        fos.setdefault(a, {})[b] = value
        dist.setdefault(a, {})[b] = latent_distance(za, zb, seed=seed)
    flat = lambda d: [v for row in d.values() for v in row.values()]  # noqa: E731
    return {
        "foscttm": float(np.mean(flat(fos))) if fos else None,
        "latent_distance": float(np.mean(flat(dist))) if dist else None,
        "foscttm_pairs": fos,
        "latent_distance_pairs": dist,
        "foscttm_subsample": how or None,
    }


def group_scores(
    out: Outputs,
    dm: PairedDataModule,
    train_out: Outputs | None = None,
    leiden: bool = True,
    seed: int = 0,
    by_modality: bool = True,
) -> dict[str, Any]:
    """ARI/NMI from the model's head (or KMeans), KMeans (also of each modality's own latent
    with ``by_modality``), Leiden, Hungarian accuracy, ari_class."""
    labels = dm.true_labels[out.cells]
    lab = labels >= 0
    res: dict[str, Any] = {}
    n_labels = len(np.unique(labels[lab]))
    if lab.sum() < 2 or n_labels < 1:
        return {"ari": None, "nmi": None, "n_groups": None}
    km = kmeans_labels(out.joint[lab], max(n_labels, 1), seed=seed)
    res["ari_kmeans"], res["nmi_kmeans"] = ari(labels[lab], km), nmi(labels[lab], km)
    if by_modality and len(out.latents) > 1:
        # which modality's own code carries the groups (on the labelled cells that have the
        # modality: the others' codes come from zero inputs)
        res["ari_kmeans_by_modality"] = {}
        for m, z in out.latents.items():
            has = lab & (dm.masks[m][out.cells] > 0)
            k = len(np.unique(labels[has]))
            if k > 1:
                res["ari_kmeans_by_modality"][m] = ari(
                    labels[has], kmeans_labels(z[has], k, seed=seed)
                )
    if leiden and lab.sum() >= 10:
        best = leiden_best(out.joint[lab], labels[lab], seed=seed)
        res["ari_leiden"], res["nmi_leiden"] = best["ari"], best["nmi"]
        res["leiden_resolution"] = best["resolution"]
    groups = out.groups[lab] if out.groups is not None else km
    res["ari"], res["nmi"] = ari(labels[lab], groups), nmi(labels[lab], groups)
    res["accuracy_hungarian"] = hungarian_accuracy(labels[lab], groups)
    res["n_groups"] = int(len(np.unique(groups)))
    res["groups_from"] = "model head" if out.groups is not None else "kmeans"
    fine_to_class = dm.data.classes()
    if fine_to_class and train_out is not None:
        names = np.array(dm.label_names)
        tr_labels = dm.true_labels[train_out.cells]
        tr_lab = tr_labels >= 0
        if out.groups is not None and train_out.groups is not None:
            tr_groups, te_groups = train_out.groups[tr_lab], groups
        else:
            # no head: one KMeans fitted on training cells assigns both sets
            from sklearn.cluster import KMeans

            fitted = KMeans(n_clusters=n_labels, n_init=10, random_state=seed)
            tr_groups = fitted.fit_predict(train_out.joint[tr_lab])
            te_groups = fitted.predict(out.joint[lab])
        res["ari_class"] = class_level_ari(
            names[tr_labels[tr_lab]], tr_groups, names[labels[lab]], te_groups, fine_to_class
        )
    return res


def transfer_scores_for(
    out: Outputs, dm: PairedDataModule, train_out: Outputs, model: Integrator
) -> dict[str, Any]:
    """Annotation transfer to the held-out target: the model's classes when its groups are
    labels, else a 15-NN classifier on the joint latent trained on labelled training cells."""
    from sklearn.neighbors import KNeighborsClassifier

    from mmint.metrics.transfer import transfer_scores

    truth = dm.true_labels[out.cells]
    ok = truth >= 0
    if model.groups_are_labels and out.groups is not None:
        pred, how = out.groups, "model classifier"
    else:
        tr = dm.true_labels[train_out.cells]
        knn = KNeighborsClassifier(n_neighbors=min(15, int((tr >= 0).sum())))
        knn.fit(train_out.joint[tr >= 0], tr[tr >= 0])
        pred, how = knn.predict(out.joint), "15-NN on the joint latent"
    res = transfer_scores(truth[ok], pred[ok])
    res["transfer_protocol"] = how
    return res


def scib_block(
    out: Outputs,
    dm: PairedDataModule,
    kbet: bool = False,
    seed: int = 0,
    max_cells: int | None = SCIB_MAX_CELLS,
) -> dict | None:
    """scIB scores of the joint latent and the modality-mixing score of the per-modality latents;
    above ``max_cells`` scored cells both run on a seeded label-stratified subsample, recorded
    in ``subsample``."""
    from mmint.metrics.scib import modality_mixing, scib_scores

    labels = dm.true_labels[out.cells]
    lab = labels >= 0
    if len(np.unique(labels[lab])) < 2:
        return None
    batches = dm.batch_codes[out.cells][lab]
    res = scib_scores(
        out.joint[lab],
        labels[lab],
        batches if len(np.unique(batches)) > 1 else None,
        kbet=kbet,
        seed=seed,
        max_cells=max_cells,
    )
    complete = lab.copy()
    for m in out.latents:
        complete &= dm.masks[m][out.cells] > 0
    dims = {z.shape[1] for z in out.latents.values()}
    if len(out.latents) >= 2 and len(dims) == 1 and complete.sum() > 10:
        res["modality_mixing"] = modality_mixing(
            {m: z[complete] for m, z in out.latents.items()},
            labels[complete],
            kbet=kbet,
            max_cells=max_cells,
            seed=seed,
        )
    else:
        res["modality_mixing"] = None
    return res


def evaluate(
    model: Integrator,
    dm: PairedDataModule,
    cells: str = "test",
    scib: bool = True,
    kbet: bool = False,
    leiden: bool = True,
    seed: int = 0,
    scib_max_cells: int | None = SCIB_MAX_CELLS,
    foscttm_max_cells: int | None = FOSCTTM_MAX_CELLS,
) -> dict[str, Any]:
    """All score keys of ``metrics.json`` for ``cells`` (``test`` by default); the scIB block
    runs on a stratified subsample above ``scib_max_cells`` cells, FOSCTTM on a uniform one
    above ``foscttm_max_cells``."""
    idx = dm.cells(cells)
    out = collect(model, dm, idx)
    skip = not_applicable(model)
    holdout = dm.split_config.get("kind") == "holdout_batch"
    need_train = (dm.data.classes() is not None and "ari_class" not in skip) or (
        holdout and "transfer_accuracy" not in skip
    )
    train_out = collect(model, dm, dm.cells("train"), translations=False) if need_train else None
    res: dict[str, Any] = {"scored_on": cells}
    res.update(group_scores(out, dm, train_out, leiden=leiden, seed=seed))
    res.update(prediction_scores(out))
    res.update(alignment_scores(out, dm, seed=seed, foscttm_max_cells=foscttm_max_cells))
    if holdout and train_out is not None:
        res.update(transfer_scores_for(out, dm, train_out, model))
    res["scib"] = (
        scib_block(out, dm, kbet=kbet, seed=seed, max_cells=scib_max_cells) if scib else None
    )
    res.update(out.extra)
    # metrics that do not apply are null, with the reason (contracts: not_applicable)
    for key in skip:
        res[key] = None
    res["not_applicable"] = skip
    return res


def not_applicable(model: Integrator) -> dict[str, str]:
    """``{metric: reason}`` for the metrics that do not apply to ``model`` (may be empty)."""
    return dict(getattr(model, "not_applicable", None) or {})


def quick_scores(model: Integrator, dm: PairedDataModule, cells: np.ndarray, seed: int = 0) -> dict:
    """Per-epoch curve values on ``cells``: latent distance, FOSCTTM, ARI, mean cross-modal R2."""
    out = collect(model, dm, cells)
    groups = group_scores(out, dm, None, leiden=False, seed=seed, by_modality=False)
    pred = prediction_scores(out)
    align = alignment_scores(out, dm, seed=seed)
    return {
        "latent_distance": align["latent_distance"],
        "foscttm": align["foscttm"],
        "ari": groups.get("ari"),
        "ari_kmeans": groups.get("ari_kmeans"),
        "r2_cross": mean_cross_r2(pred["r2"]),
    }

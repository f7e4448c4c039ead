"""Tests of mmint.metrics.scib: values equal scib-metrics' own Benchmarker on a tiny toy.

The jax JIT makes first calls slow, so each configuration is computed once per module.
"""

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from mmint.metrics import exact_neighbors, modality_mixing, scib_scores, stratified_subsample
from mmint.metrics.subsample import HOW_ALL, HOW_STRATIFIED

scib_metrics = pytest.importorskip("scib_metrics")
from scib_metrics.benchmark import BatchCorrection, Benchmarker, BioConservation  # noqa: E402

N_CELLS = 300
TOL = 1e-6

# snake_case names of the contracts -> Benchmarker's raw row names
BENCHMARKER_NAMES = {
    "isolated_labels": "isolated_labels",
    "kmeans_nmi": "nmi_ari_cluster_labels_kmeans_nmi",
    "kmeans_ari": "nmi_ari_cluster_labels_kmeans_ari",
    "silhouette_label": "silhouette_label",
    "clisi_knn": "clisi_knn",
    "bras": "bras",
    "ilisi_knn": "ilisi_knn",
    "kbet_per_label": "kbet_per_label",
    "graph_connectivity": "graph_connectivity",
    "pcr_comparison": "pcr_comparison",
}


def _toy(seed: int = 0):
    """300 cells, 4 labels (label 3 only in batch 1, an isolated label), 2 batches, 10 dims."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(np.array(["T", "B", "NK", "Mono"]), N_CELLS, p=[0.35, 0.3, 0.2, 0.15])
    batches = rng.choice(np.array(["b0", "b1"]), N_CELLS)
    batches[labels == "Mono"] = "b1"
    centres = {lab: rng.normal(0, 3, 10) for lab in np.unique(labels)}
    shift = {"b0": np.zeros(10), "b1": rng.normal(0, 1.0, 10)}
    z = np.stack([centres[lab] + shift[b] for lab, b in zip(labels, batches, strict=True)])
    z = (z + rng.normal(0, 1.5, z.shape)).astype(np.float32)
    # the pre-integration embedding has a stronger batch effect: PCR comparison is in (0, 1)
    x_pre = z @ rng.normal(size=(10, 8)) + rng.normal(0, 0.5, (N_CELLS, 8))
    x_pre[batches == "b1"] += rng.normal(0, 6.0, 8)
    x_pre = x_pre.astype(np.float32)
    return z, labels, batches, x_pre


def _benchmarker(z, labels, batches, x_pre=None, bio=True, batch=True):
    adata = ad.AnnData(
        np.zeros((z.shape[0], 1), dtype=np.float32),
        obs=pd.DataFrame(
            {"labels": labels, "batch": batches}, index=[f"c{i}" for i in range(len(z))]
        ),
    )
    # a copy: scib-metrics' KMeans centres and un-centres its input in place (float32
    # rounding), which would change the shared toy for the next test
    adata.obsm["X_emb"] = z.copy()
    if x_pre is not None:
        adata.obsm["X_pre"] = x_pre
    bm = Benchmarker(
        adata,
        batch_key="batch",
        label_key="labels",
        embedding_obsm_keys=["X_emb"],
        bio_conservation_metrics=BioConservation() if bio else None,
        batch_correction_metrics=(
            BatchCorrection(kbet_per_label=False, pcr_comparison=x_pre is not None)
            if batch
            else None
        ),
        pre_integrated_embedding_obsm_key="X_pre" if x_pre is not None else "X_emb",
        progress_bar=False,
    )
    bm.prepare(neighbor_computer=exact_neighbors)
    bm.benchmark()
    return bm.get_results(min_max_scale=False, clean_names=False).loc["X_emb"]


@pytest.fixture(scope="module")
def toy():
    return _toy()


@pytest.fixture(scope="module")
def two_batch(toy):
    z, labels, batches, x_pre = toy
    ours = scib_scores(z, labels, batches, x_pre=x_pre)
    reference = _benchmarker(z, labels, batches, x_pre)
    return ours, reference


@pytest.fixture(scope="module")
def one_batch(toy):
    z, labels, _, _ = toy
    ours = scib_scores(z, labels)
    reference = _benchmarker(z, labels, np.full(N_CELLS, "b0"), bio=True, batch=False)
    return ours, reference


def test_two_batch_structure(two_batch):
    ours, _ = two_batch
    assert set(ours) == {
        "bio_conservation",
        "batch_correction",
        "total",
        "metrics",
        "protocol",
        "subsample",
    }
    assert ours["subsample"] == {
        "n_cells": N_CELLS,
        "n_cells_total": N_CELLS,
        "max_cells": None,
        "how": HOW_ALL,
        "seed": None,
    }
    assert list(ours["metrics"]) == [
        "isolated_labels",
        "kmeans_nmi",
        "kmeans_ari",
        "silhouette_label",
        "clisi_knn",
        "bras",
        "ilisi_knn",
        "graph_connectivity",
        "pcr_comparison",
    ]
    assert all(isinstance(v, float) for v in ours["metrics"].values())
    protocol = ours["protocol"]
    assert "scib-metrics 0.5.10" in protocol and "kBET off" in protocol
    assert "no min-max scaling" in protocol and "k = 90" in protocol


def test_two_batch_metrics_equal_benchmarker(two_batch):
    ours, reference = two_batch
    for name, value in ours["metrics"].items():
        assert value == pytest.approx(float(reference[BENCHMARKER_NAMES[name]]), abs=TOL), name
    assert 0 < ours["metrics"]["pcr_comparison"] < 1


def test_two_batch_aggregates_equal_benchmarker(two_batch):
    ours, reference = two_batch
    assert ours["bio_conservation"] == pytest.approx(float(reference["Bio conservation"]), abs=TOL)
    assert ours["batch_correction"] == pytest.approx(float(reference["Batch correction"]), abs=TOL)
    assert ours["total"] == pytest.approx(float(reference["Total"]), abs=TOL)
    assert ours["total"] == pytest.approx(
        0.6 * ours["bio_conservation"] + 0.4 * ours["batch_correction"]
    )


def test_one_batch_is_bio_only_and_equals_benchmarker(one_batch, two_batch):
    ours, reference = one_batch
    assert ours["batch_correction"] is None and ours["total"] is None
    assert list(ours["metrics"]) == [
        "isolated_labels",
        "kmeans_nmi",
        "kmeans_ari",
        "silhouette_label",
        "clisi_knn",
    ]
    assert "one batch" in ours["protocol"]
    for name, value in ours["metrics"].items():
        assert value == pytest.approx(float(reference[BENCHMARKER_NAMES[name]]), abs=TOL), name
    assert ours["bio_conservation"] == pytest.approx(float(reference["Bio conservation"]), abs=TOL)
    # batch-independent bio metrics are the same as with two batches
    for name in ("kmeans_nmi", "kmeans_ari", "silhouette_label", "clisi_knn"):
        assert ours["metrics"][name] == pytest.approx(two_batch[0]["metrics"][name], abs=1e-12)


def test_without_x_pre_pcr_is_left_out(toy, two_batch):
    z, labels, batches, _ = toy
    out = scib_scores(z, labels, batches)
    assert "pcr_comparison" not in out["metrics"]
    ref = two_batch[0]["metrics"]
    expected_batch = np.mean([ref[k] for k in ("bras", "ilisi_knn", "graph_connectivity")])
    assert out["batch_correction"] == pytest.approx(expected_batch, abs=TOL)


def test_one_label_raises(toy):
    z, _, batches, _ = toy
    with pytest.raises(ValueError, match="at least 2 distinct labels"):
        scib_scores(z, np.zeros(N_CELLS), batches)


@pytest.fixture(scope="module")
def mixing(toy):
    z, labels, _, _ = toy
    half = N_CELLS // 2  # stacked: N_CELLS cells again, so the jitted LISI is reused
    z, labels = z[:half], labels[:half]
    rng = np.random.default_rng(1)
    latents = {"rna": z, "atac": (z + rng.normal(0, 1.0, z.shape)).astype(np.float32)}
    ours = modality_mixing(latents, labels)
    stacked = np.concatenate([latents["rna"], latents["atac"]])
    reference = _benchmarker(
        stacked, np.tile(labels, 2), np.repeat(["rna", "atac"], half), bio=False
    )
    return ours, reference


def test_modality_mixing_equals_benchmarker(mixing):
    ours, reference = mixing
    assert list(ours) == [
        "bras",
        "ilisi_knn",
        "graph_connectivity",
        "batch_correction",
        "subsample",
    ]
    for name in ("bras", "ilisi_knn", "graph_connectivity"):
        assert ours[name] == pytest.approx(float(reference[name]), abs=TOL), name
    assert ours["batch_correction"] == pytest.approx(float(reference["Batch correction"]), abs=TOL)


def test_modality_mixing_without_labels_and_errors(toy):
    z = toy[0][: N_CELLS // 2]
    rng = np.random.default_rng(2)
    mixed = modality_mixing({"a": z, "b": z[rng.permutation(z.shape[0])]})
    apart = modality_mixing({"a": z, "b": z + 1000.0})
    assert set(mixed) == {
        "bras",
        "ilisi_knn",
        "graph_connectivity",
        "batch_correction",
        "subsample",
    }
    assert apart["ilisi_knn"] < 0.05 < 0.5 < mixed["ilisi_knn"]
    assert apart["bras"] < mixed["bras"]
    assert apart["batch_correction"] < mixed["batch_correction"]
    with pytest.raises(ValueError, match="at least 2 modalities"):
        modality_mixing({"a": z})
    with pytest.raises(ValueError, match="same shape"):
        modality_mixing({"a": z, "b": z[:, :3]})


def test_exact_neighbors_include_self_and_are_sorted(toy):
    z = toy[0]
    nn = exact_neighbors(z, 12)
    assert nn.indices.shape == (N_CELLS, 12)
    np.testing.assert_array_equal(nn.indices[:, 0], np.arange(N_CELLS))
    assert np.all(np.diff(nn.distances, axis=1) >= 0)
    assert exact_neighbors(z[:5], 90).n_neighbors == 5


# ---------------------------------------------------------------------- eval.scib_max_cells
def test_at_the_bound_nothing_changes(toy, two_batch):
    z, labels, batches, x_pre = toy
    bounded = scib_scores(z, labels, batches, x_pre=x_pre, max_cells=N_CELLS)
    unbounded = two_batch[0]
    assert bounded["subsample"] == {**unbounded["subsample"], "max_cells": N_CELLS}
    assert bounded["protocol"] == unbounded["protocol"]
    # the same cells in the same order (float32 jax sums may differ in the last bits)
    for key in ("bio_conservation", "batch_correction", "total"):
        assert bounded[key] == pytest.approx(unbounded[key], abs=TOL), key
    assert bounded["metrics"] == pytest.approx(unbounded["metrics"], abs=TOL)


def test_above_the_bound_scores_the_recorded_stratified_subsample():
    """The same scores as scib_scores on the subsample's cells, which are stratified by label
    and recorded; the per-modality mixing scores use the same draw. 600 cells bounded to 300:
    the shapes the other tests already compiled."""
    toys = [_toy(0), _toy(1)]
    z, labels, batches, x_pre = (np.concatenate(parts) for parts in zip(*toys, strict=True))
    n = z.shape[0]
    bounded = scib_scores(z, labels, batches, x_pre=x_pre, seed=4, max_cells=N_CELLS)
    idx, _ = stratified_subsample(labels, N_CELLS, seed=4)
    direct = scib_scores(z[idx], labels[idx], batches[idx], x_pre=x_pre[idx], seed=4)
    assert bounded["subsample"] == {
        "n_cells": N_CELLS,
        "n_cells_total": n,
        "max_cells": N_CELLS,
        "how": HOW_STRATIFIED,
        "seed": 4,
    }
    for key in ("bio_conservation", "batch_correction", "total"):
        assert bounded[key] == pytest.approx(direct[key], abs=TOL), key
    assert bounded["metrics"] == pytest.approx(direct["metrics"], abs=TOL)
    # stratified: each label keeps its share of the cells to within one cell
    for lab in np.unique(labels):
        assert abs((labels[idx] == lab).sum() - (labels == lab).mean() * N_CELLS) < 1, lab
    assert not np.array_equal(idx, stratified_subsample(labels, N_CELLS, seed=5)[0])

    half = N_CELLS // 2  # stacked: N_CELLS cells, as in the mixing fixture
    rng = np.random.default_rng(1)
    latents = {"rna": z, "atac": (z + rng.normal(0, 1.0, z.shape)).astype(np.float32)}
    mixed = modality_mixing(latents, labels, max_cells=half, seed=4)
    keep, _ = stratified_subsample(labels, half, seed=4)
    direct_mixed = modality_mixing({m: x[keep] for m, x in latents.items()}, labels[keep])
    assert mixed["subsample"] == {
        **direct_mixed["subsample"],
        "n_cells_total": n,
        "max_cells": half,
        "how": HOW_STRATIFIED,
        "seed": 4,
    }
    for name in ("bras", "ilisi_knn", "graph_connectivity", "batch_correction"):
        assert mixed[name] == pytest.approx(direct_mixed[name], abs=TOL), name

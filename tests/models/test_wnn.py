"""WNN: modality weights, the exact-neighbour graph, the kNN prediction floor, the run directory."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from mmint.evaluate import evaluate
from mmint.models import build_model
from mmint.models.wnn_graph import _knn, wnn_graph

from .contract import TRI, fit_run


def clusters_and_noise(n: int = 120, seed: int = 0) -> dict[str, np.ndarray]:
    """Modality ``a`` separates 4 tight clusters; modality ``b`` is pure noise."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=5.0, size=(4, 8))
    a = centers[np.arange(n) % 4] + rng.normal(scale=0.3, size=(n, 8))
    b = rng.normal(size=(n, 8))
    unit = lambda z: z / np.linalg.norm(z, axis=1, keepdims=True)  # noqa: E731
    return {"a": unit(a), "b": unit(b)}


@pytest.fixture(scope="module")
def graph():
    return wnn_graph(clusters_and_noise(), n_neighbors=10, n_bandwidth_neighbors=10)


def test_weights_in_unit_interval_and_sum_to_one(graph):
    w = np.stack([graph.weights["a"], graph.weights["b"]], axis=1)
    assert np.all((w >= 0) & (w <= 1))
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)


def test_informative_modality_gets_the_weight(graph):
    # a cell's within-modality prediction is far better than the cross one in `a` only
    assert np.median(graph.weights["a"]) > 0.7
    assert (graph.weights["a"] > graph.weights["b"]).mean() > 0.9


def test_graph_follows_the_informative_modality(graph):
    # WNN neighbours stay within the cell's cluster (the noise modality cannot mix them)
    n = graph.connectivities.shape[0]
    coo = sp.coo_matrix(graph.distances)
    same = (coo.row % 4) == (coo.col % 4)
    assert same.mean() > 0.95
    assert graph.distances.getnnz(axis=1).min() == graph.distances.getnnz(axis=1).max()
    assert np.all(graph.distances.diagonal() == 0) and coo.row.size == n * (10 + 1)


def test_knn_excludes_the_cell_itself():
    x = np.random.default_rng(1).normal(size=(30, 3))
    idx, dist = _knn(x, 5)
    assert not np.any(idx == np.arange(30)[:, None])
    full = np.linalg.norm(x[:, None] - x[None], axis=2)
    np.fill_diagonal(full, np.inf)
    np.testing.assert_allclose(dist, np.sort(full, axis=1)[:, :5], atol=1e-12)


@pytest.fixture(scope="module")
def fitted(tiny_data):
    from mmint.data import PairedDataModule

    dm = PairedDataModule(tiny_data, split={"kind": "random"}, seed=0, batch_size=64)
    dm.setup()
    return build_model("wnn", dm.spec, n_neighbors=10, resolutions=[0.5, 1.0]).fit_data(dm), dm


def test_knn_prediction_matches_a_hand_computation(fitted):
    model, dm = fitted
    test, train = dm.cells("test"), dm.cells("train")
    pred = model.predict_cells(dm, "atac", "rna", test)
    # by hand: the 10 training cells closest in atac's L2-normalised LSI space
    z_train, z_test = model.space(dm, "atac", train), model.space(dm, "atac", test)
    d = ((z_test[:, None] - z_train[None]) ** 2).sum(-1)
    nearest = train[np.argsort(d, axis=1, kind="stable")[:, :10]]
    rna = dm.inputs["rna"].toarray() if sp.issparse(dm.inputs["rna"]) else dm.inputs["rna"]
    np.testing.assert_allclose(pred, rna[nearest].mean(axis=1), rtol=1e-5, atol=1e-6)


def test_resolution_chosen_on_validation_cells(fitted):
    model, _ = fitted
    assert model.resolution in (0.5, 1.0)
    assert "validation" in model.model_info["leiden_resolution_chosen_by"]


def test_evaluate_marks_what_does_not_apply(fitted):
    model, dm = fitted
    res = evaluate(model, dm, "test", scib=False, leiden=False)
    assert res["foscttm"] is None and "not aligned" in res["not_applicable"]["foscttm"]
    assert res["ari_class"] is None and "ari_class" in res["not_applicable"]
    weights = res["wnn_modality_weights"]
    assert set(weights) == {"rna", "atac", "ephys"} and sum(weights.values()) == pytest.approx(1)
    assert res["groups_from"] == "model head" and res["ari"] is not None


def test_per_batch_interface_refused_with_one_line(fitted):
    from mmint.errors import InputError

    model, dm = fitted
    with pytest.raises(InputError, match="whole sets of cells"):
        model.joint_latent(dm.batch(dm.cells("test")[:5]))


def test_run_directory(tmp_path):
    metrics = fit_run("wnn", TRI, tmp_path, "model.resolutions=[1.0]")
    assert (tmp_path / "predictions" / "rna_to_atac.h5ad").exists()
    assert set(metrics["not_applicable"]) >= {"foscttm", "latent_distance"}
    assert metrics["wnn_leiden_resolution"] == 1.0

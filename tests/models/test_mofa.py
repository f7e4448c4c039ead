"""MOFA+ (mofapy2): factors of training cells against mofapy2's own, prediction, run directory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmint.models import build_model

from .contract import TRI, fit_run


@pytest.fixture(scope="module")
def fitted(tiny_data):
    from mmint.data import PairedDataModule

    dm = PairedDataModule(tiny_data, split={"kind": "random"}, seed=0, batch_size=64)
    dm.setup()
    return build_model("mofa", dm.spec, n_factors=5, max_iter=300).fit_data(dm), dm


def test_projected_factors_match_mofapy2_on_training_cells(fitted):
    model, dm = fitted
    z = model.joint_latent(dm.batch(dm.cells("train"))).numpy()
    ref = model.train_factors
    active = ref.std(axis=0) > 1e-6
    assert active.sum() >= 2
    for k in np.flatnonzero(active):
        assert np.corrcoef(z[:, k], ref[:, k])[0, 1] > 0.999


def test_translation_goes_through_factors_and_loadings(fitted):
    model, dm = fitted
    batch = dm.batch(dm.cells("test"))
    x = batch["atac"].numpy().astype(np.float64)
    # by hand: posterior mean of the factors from atac alone, then rna's loadings
    w, tau, s = model.loadings["atac"], model.precision["atac"], model.scale["atac"]
    z = np.linalg.solve(
        w.T @ (w * tau[:, None]) + np.eye(w.shape[1]),
        (w * tau[:, None]).T @ ((x - model.mean["atac"]) / s).T,
    ).T
    expected = z @ model.loadings["rna"].T * model.scale["rna"] + model.mean["rna"]
    np.testing.assert_allclose(
        model.translate(batch, "atac", "rna").numpy(), expected, rtol=1e-4, atol=1e-4
    )
    # the explain hook is the same linear map
    net = model.translator("atac", "rna")
    with torch.no_grad():
        np.testing.assert_allclose(net(batch["atac"]).numpy(), expected, rtol=1e-3, atol=1e-3)


def test_per_modality_latents_share_the_factor_space(fitted):
    model, dm = fitted
    lat = model.latents(dm.batch(dm.cells("test")))
    assert {z.shape[1] for z in lat.values()} == {model.loadings["rna"].shape[1]}


def test_run_directory(tmp_path):
    metrics = fit_run("mofa", TRI, tmp_path, "model.n_factors=4", "model.max_iter=200")
    assert metrics["not_applicable"] == {}
    assert metrics["foscttm"] is not None and 0 <= metrics["foscttm"] <= 1
    assert metrics["model_info"]["active_factors"] <= 4

"""The PCA floor: PCA and ridge maps fitted on training cells, checked against sklearn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.linear_model import Ridge

from mmint import keys
from mmint.models import build_model
from mmint.models.pca import PCABaseline


@pytest.fixture
def fitted(tiny_dm):
    return build_model("pca", tiny_dm.spec, n_components=5, ridge_alpha=2.0).fit_data(tiny_dm)


def test_pca_fitted_on_train_cells_only(fitted, tiny_dm):
    train = tiny_dm.cells("train")
    ref = PCA(n_components=5).fit(tiny_dm.inputs["ephys"][train])
    np.testing.assert_allclose(
        np.abs(fitted.projections["ephys"].components.numpy().T), np.abs(ref.components_), atol=1e-4
    )


def test_ridge_translation_matches_sklearn(fitted, tiny_dm):
    train, test = tiny_dm.cells("train"), tiny_dm.cells("test")
    pca = PCA(n_components=5).fit(tiny_dm.inputs["rna"][train])
    signs = np.sign(np.sum(pca.components_ * fitted.projections["rna"].components.numpy().T, 1))
    z_train = pca.transform(tiny_dm.inputs["rna"][train]) * signs
    ref = Ridge(alpha=2.0).fit(z_train, tiny_dm.inputs["ephys"][train])
    batch = tiny_dm.batch(test)
    expected = ref.predict(pca.transform(batch["rna"].numpy()) * signs)
    np.testing.assert_allclose(fitted.translate(batch, "rna", "ephys").numpy(), expected, atol=1e-4)


def test_binary_predictions_are_probabilities(fitted, tiny_dm):
    pred = fitted.translate(tiny_dm.batch(tiny_dm.cells("test")), "ephys", "atac").numpy()
    assert pred.min() >= 0.0 and pred.max() <= 1.0


def test_joint_latent_weighs_modalities_equally(fitted, tiny_dm):
    z = fitted.joint_latent(tiny_dm.batch(tiny_dm.cells("train"))).numpy()
    blocks = np.split(
        z, np.cumsum([fitted.projections[m].k for m in fitted.modalities])[:-1], axis=1
    )
    totals = [b.var(axis=0).sum() for b in blocks]
    np.testing.assert_allclose(totals, 1.0, rtol=0.02)


def test_missing_modality_gives_zero_block(fitted, tiny_dm):
    batch = tiny_dm.batch(tiny_dm.cells("test")[:5])
    batch[keys.mask_key("atac")][:] = 0
    assert np.all(fitted.latents(batch)["atac"].numpy() == 0)


def test_save_load_round_trip(fitted, tiny_dm, tmp_path):
    fitted.save(tmp_path / "m.ckpt", tiny_dm)
    again = PCABaseline.load(tmp_path / "m.ckpt")
    batch = tiny_dm.batch(tiny_dm.cells("test"))
    np.testing.assert_allclose(
        again.joint_latent(batch).numpy(), fitted.joint_latent(batch).numpy(), rtol=1e-5, atol=1e-6
    )

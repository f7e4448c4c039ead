"""SVD + RBF kernel ridge against scikit-learn's TruncatedSVD / KernelRidge; run directory."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.kernel_ridge import KernelRidge
from sklearn.metrics import r2_score

from mmint.models import build_model

from .contract import TRI, fit_run


@pytest.fixture(scope="module")
def dm(tiny_data):
    from mmint.data import PairedDataModule

    dm = PairedDataModule(tiny_data, split={"kind": "random"}, seed=0, batch_size=64)
    dm.setup()
    return dm


def _dense(x):
    return x.toarray() if hasattr(x, "toarray") else np.asarray(x)


def sklearn_prediction(model, dm, src, dst, alpha, cells):
    train = dm.cells("train")
    z = model.components(src, dm.inputs[src][train])
    y = _dense(dm.inputs[dst][train]).astype(np.float64)
    ref = KernelRidge(alpha=alpha, kernel="rbf", gamma=1.0 / z.shape[1])
    ref.fit(z, y - y.mean(axis=0))
    return ref.predict(model.components(src, dm.inputs[src][cells])) + y.mean(axis=0)


def test_kernel_ridge_matches_sklearn(dm):
    model = build_model("svd_ridge", dm.spec, n_components=8, alphas=[0.5]).fit_data(dm)
    test = dm.cells("test")
    for src, dst in [("rna", "ephys"), ("atac", "rna"), ("ephys", "ephys")]:
        expected = sklearn_prediction(model, dm, src, dst, 0.5, test)
        got = model.predict(src, dst, dm.inputs[src][test])
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_alpha_is_the_best_on_validation_cells(dm):
    alphas = [0.01, 1.0, 100.0]
    model = build_model("svd_ridge", dm.spec, n_components=8, alphas=alphas).fit_data(dm)
    val = dm.cells("val")
    truth = _dense(dm.inputs["ephys"][val])
    keep = truth.var(axis=0) > 1e-8
    scores = [
        r2_score(truth[:, keep], sklearn_prediction(model, dm, "rna", "ephys", a, val)[:, keep])
        for a in alphas
    ]
    assert model.regressions[("rna", "ephys")]["alpha"] == alphas[int(np.argmax(scores))]


def test_wide_targets_are_predicted_as_svd_components(dm):
    model = build_model(
        "svd_ridge", dm.spec, n_components=8, alphas=[1.0], max_direct_features=50
    ).fit_data(dm)
    assert model.model_info["target"]["atac"] == "svd components"
    train, test = dm.cells("train"), dm.cells("test")
    svd = model.svds["atac"]
    y = svd.transform(dm.inputs["atac"][train])
    z = model.components("rna", dm.inputs["rna"][train])
    ref = KernelRidge(alpha=1.0, kernel="rbf", gamma=1.0 / z.shape[1]).fit(z, y - y.mean(0))
    comps = ref.predict(model.components("rna", dm.inputs["rna"][test])) + y.mean(0)
    expected = np.clip(comps @ svd.components_, 0.0, 1.0)
    np.testing.assert_allclose(
        model.predict("rna", "atac", dm.inputs["rna"][test]), expected, atol=1e-5
    )


def test_run_directory(tmp_path):
    metrics = fit_run("svd_ridge", TRI, tmp_path, "model.n_components=8")
    assert metrics["foscttm"] is None and "not aligned" in metrics["not_applicable"]["foscttm"]
    assert set(metrics["r2"]["rna"]) == {"rna", "atac", "ephys"}
    assert set(metrics["model_info"]["alpha"]) == {
        f"{s}->{d}" for s in ("rna", "atac", "ephys") for d in ("rna", "atac", "ephys")
    }

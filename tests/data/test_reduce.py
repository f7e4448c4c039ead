"""``data.reduce``: the reduction against sklearn's TruncatedSVD on the training rows, never a
dense wide matrix, the one-line errors, and a tiny ``fit`` through the real Hydra configs."""

from __future__ import annotations

import json

import lightning as L
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from omegaconf import OmegaConf
from sklearn.decomposition import TruncatedSVD

from mmint.cli import compose
from mmint.config import config_dir
from mmint.data import PairedData, PairedDataModule
from mmint.data.modality import TARGET_SUM
from mmint.data.simulate import simulate
from mmint.errors import InputError
from mmint.evaluate import evaluate
from mmint.fit import _split_model_config, run_fit
from mmint.models import build_model

from .fitting import fit_briefly
from .wide import N_PEAKS, simulate_wide

K = 6


def _low_rank_peaks(n_cells: int, seed: int) -> sp.csr_matrix:
    """Sparse non-negative values of rank about ``K`` plus sparse noise: the first ``K``
    singular values are well apart, so the axes are determined (what SVDs can agree on)."""
    rng = np.random.default_rng(seed)
    scale = np.linspace(10, 2, K)[:, None]
    h = rng.random((K, N_PEAKS)) * (rng.random((K, N_PEAKS)) < 0.02) * scale
    noise = rng.random((n_cells, N_PEAKS)) * (rng.random((n_cells, N_PEAKS)) < 0.01)
    return sp.csr_matrix(rng.random((n_cells, K)) @ h + noise, dtype=np.float32)


def _data(peaks: sp.csr_matrix) -> PairedData:
    """240 cells: rna counts and 3,000 sparse non-negative peaks declared continuous."""
    sim = simulate_wide()
    sim.adatas["atac"].X = peaks
    kinds = {"rna": "counts", "atac": "continuous"}
    return PairedData.from_anndatas(sim.adatas, kinds, label_key="cell_type", batch_key="batch")


@pytest.fixture(scope="module")
def wide_continuous():
    return _data(_low_rank_peaks(240, 0))


def _reduced(data, method, **kw):
    dm = PairedDataModule(
        data, seed=0, batch_size=64, reduce={"atac": {"method": method, "n_components": K}}, **kw
    )
    dm.setup()
    return dm


def _match(components: np.ndarray, reference: np.ndarray) -> float:
    """Largest difference between two sets of axes (columns), up to each axis' sign."""
    sign = np.sign((components * reference).sum(0))
    return float(np.abs(components * sign - reference).max())


def test_svd_equals_truncated_svd_on_training_rows(wide_continuous):
    dm = _reduced(wide_continuous, "svd")
    raw = sp.csr_matrix(wide_continuous.modalities["atac"].x, dtype=np.float64)
    train = dm.split["train"]
    ref = TruncatedSVD(K, algorithm="arpack").fit(raw[train])
    red = dm.reductions["atac"]
    assert _match(red.components, ref.components_.T) < 1e-5
    assert red.explained_variance_ratio == pytest.approx(ref.explained_variance_ratio_, abs=1e-6)
    assert red.n_train == len(train)
    # every cell projected, each component standardised with the training cells' statistics
    scores = np.abs(ref.transform(raw))
    got = dm.inputs["atac"] * red.std + red.mean
    assert np.abs(np.abs(got) - scores).max() < 1e-4 * scores.max()
    assert np.allclose(dm.inputs["atac"][train].mean(0), 0, atol=1e-5)
    assert np.allclose(dm.inputs["atac"][train].std(0), 1, atol=1e-4)


@pytest.mark.parametrize("method", ["svd", "lsi"])
def test_val_and_test_cells_do_not_change_the_fit(wide_continuous, method):
    """Other values in every non-training cell: the same reduction (no leakage)."""
    dm = _reduced(wide_continuous, method)
    peaks = sp.csr_matrix(wide_continuous.modalities["atac"].x, copy=True)
    other = np.setdiff1d(np.arange(peaks.shape[0]), dm.split["train"])
    noise = _low_rank_peaks(peaks.shape[0], 7)
    peaks = sp.vstack([peaks[i] if i in set(dm.split["train"]) else noise[i] for i in range(240)])
    changed = _reduced(_data(sp.csr_matrix(peaks)), method)
    assert np.array_equal(changed.split["train"], dm.split["train"])
    a, b = dm.reductions["atac"], changed.reductions["atac"]
    assert np.array_equal(a.components, b.components) and np.array_equal(a.mean, b.mean)
    assert not np.allclose(dm.inputs["atac"][other], changed.inputs["atac"][other])


def test_lsi_is_tfidf_then_svd(wide_continuous):
    dm = _reduced(wide_continuous, "lsi")
    raw = sp.csr_matrix(wide_continuous.modalities["atac"].x, dtype=np.float64)
    train = dm.split["train"]
    # the project's TF-IDF by hand: idf from training cells, log1p(tf * idf * 1e4)
    idf = len(train) / (1.0 + np.asarray((raw[train] > 0).sum(0)).ravel())
    tf = sp.diags(1.0 / np.asarray(raw.sum(1)).ravel()) @ raw
    tfidf = (tf @ sp.diags(idf * TARGET_SUM)).tocsr()
    tfidf.data = np.log1p(tfidf.data)
    ref = TruncatedSVD(K, algorithm="arpack").fit(tfidf[train])
    assert _match(dm.reductions["atac"].components, ref.components_.T) < 1e-5


def test_the_models_see_k_continuous_columns(wide_continuous):
    dm = _reduced(wide_continuous, "lsi")
    spec = dm.spec
    assert spec.n_features["atac"] == K and spec.kinds["atac"] == "continuous"
    assert spec.feature_names["atac"] == [f"atac_lsi{i}" for i in range(1, K + 1)]
    assert "atac" not in dm.counts and "rna" in dm.counts
    assert not any("atac" in w and "continuous" in w for w in wide_continuous.warnings)
    # a checkpoint's state rebuilds the same inputs without refitting
    again = PairedDataModule(
        wide_continuous, seed=0, reduce={"atac": {"method": "lsi", "n_components": K}}
    )
    again.load_state_dict(dm.state_dict())
    again.setup()
    assert np.array_equal(again.inputs["atac"], dm.inputs["atac"])


@pytest.mark.parametrize("name", ["unitednet", "multivi"])
def test_fit_and_evaluate_never_densify_the_wide_input(name, wide_continuous, no_densify):
    dm = _reduced(wide_continuous, "lsi")
    L.seed_everything(0, verbose=False)
    cfg = OmegaConf.to_container(OmegaConf.load(config_dir() / "model" / f"{name}.yaml"))
    *_, hparams = _split_model_config(cfg)
    model = build_model(name, dm.spec, **hparams)
    fit_briefly(model, dm)
    scores = evaluate(model, dm, "test", scib=False, leiden=False)
    assert np.isfinite(scores["r2"]["rna"]["atac"])


@pytest.mark.parametrize(
    ("reduce", "transforms", "match"),
    [
        ({"adt": {"method": "svd", "n_components": 5}}, None, "modality 'adt'"),
        ({"atac": {"method": "pca", "n_components": 5}}, None, "unknown reduction method 'pca'"),
        ({"atac": {"method": "svd", "n_components": N_PEAKS}}, None, "n_components 3000"),
        ({"atac": {"method": "svd", "n_components": 0}}, None, "n_components 0"),
        ({"atac": {"method": "svd"}}, None, "method and n_components"),
        ({"atac": {"method": "lsi", "n_components": 5}}, {"atac": "none"}, "own TF-IDF"),
    ],
)
def test_bad_settings_are_one_line_input_errors(wide_continuous, reduce, transforms, match):
    with pytest.raises(InputError, match=match) as err:
        PairedDataModule(wide_continuous, reduce=reduce, transforms=transforms)
    assert "\n" not in str(err.value) and " - " in str(err.value)


def test_lsi_refuses_negative_values():
    sim = simulate(
        n_cells=40, modalities={"a": ("continuous", 30), "b": ("continuous", 5)}, n_links=0
    )
    data = PairedData.from_anndatas(sim.adatas, sim.kinds)
    dm = PairedDataModule(data, reduce={"a": {"method": "lsi", "n_components": 3}})
    with pytest.raises(InputError, match="non-negative"):
        dm.setup()


def test_fit_with_data_reduce_through_hydra(tmp_path):
    cfg = compose(
        "fit",
        [
            "model=multivi",
            "model.max_epochs=1",
            "logger=csv",
            "data.simulate.n_cells=300",
            "data.simulate.n_types=4",
            "data.simulate.n_major=2",
            "+data.simulate.n_features={rna: 100, atac: 200, ephys: 20}",
            "data.reduce={atac: {method: lsi, n_components: 8}}",
            "eval.scib=false",
            "eval.leiden=false",
        ],
    )
    metrics = run_fit(cfg, tmp_path)
    assert metrics["status"] == "ok"
    rec = json.loads((tmp_path / "metrics.json").read_text())["reduction"]["atac"]
    assert rec["method"] == "lsi" and rec["n_components"] == 8
    assert rec["fitted_on_train_cells"] == metrics["split"]["n_train"]
    assert 0 < rec["explained_variance_ratio_sum"] < 1
    # atac was the only binary modality: scored as components now, so no AUROC anywhere
    assert np.isfinite(metrics["r2"]["rna"]["atac"]) and metrics["auroc"] is None


def test_multivi_reads_a_raw_wide_continuous_modality_sparse_or_dense(wide_continuous):
    """The raw case (no reduction, transform none: the input stays CSR): the MultiVI-style
    Gaussian decoder scores a sparse batch as the same batch dense."""
    dm = PairedDataModule(wide_continuous, seed=0, transforms={"atac": "none"})
    dm.setup()
    model = build_model("multivi", dm.spec).eval()
    idx = dm.split["train"][:64]
    sparse, dense = dm.batch(idx, sparse=True), dm.batch(idx, sparse=False)
    assert sparse["atac"].layout == torch.sparse_csr
    with torch.no_grad():
        a, b = model.module.loss(sparse), model.module.loss(dense)
    assert torch.isfinite(a.loss) and float(a.loss) == pytest.approx(float(b.loss), rel=1e-6)

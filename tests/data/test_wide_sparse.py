"""A wide sparse modality is never made dense on the fit and evaluate path (issue 21).

Every densifying call of scipy (``toarray``, ``todense``) and torch (``Tensor.to_dense``) is
patched to fail on a matrix at least ``SPARSE_MIN_FEATURES`` wide, then a tiny multiome-like
dataset (3,000 peaks) is fitted, scored and written by each model whose path reads sparse
input (MultiVI-style, CVQVAE-style with its ``pca`` input, the PCA floor and kNN transfer,
which builds on it).
"""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from omegaconf import OmegaConf

from mmint.config import config_dir
from mmint.data import PairedData, PairedDataModule
from mmint.data.simulate import simulate
from mmint.errors import InputError
from mmint.evaluate import evaluate
from mmint.fit import _split_model_config
from mmint.models import build_model
from mmint.nn.sparse import SPARSE_MIN_FEATURES
from mmint.outputs import to_mudata, write_outputs

from .fitting import fit_briefly
from .wide import N_PEAKS, Densified, simulate_wide


@pytest.fixture(scope="module")
def wide_data():
    sim = simulate_wide()
    return PairedData.from_anndatas(sim.adatas, sim.kinds, label_key="cell_type", batch_key="batch")


def test_the_guard_catches_a_densified_wide_matrix(no_densify):
    wide = sp.random(4, SPARSE_MIN_FEATURES, density=0.1, format="csr")
    with pytest.raises(Densified):
        wide.toarray()
    with pytest.raises(Densified):
        torch.sparse_csr_tensor(
            torch.tensor([0, 1]), torch.tensor([5]), torch.tensor([1.0]), size=(1, 3000)
        ).to_dense()
    assert sp.random(4, 10, density=0.5, format="csr").toarray().shape == (4, 10)


@pytest.mark.parametrize("name", ["multivi", "cvqvae", "pca", "knn_transfer"])
def test_fit_evaluate_and_write_stay_sparse(name, wide_data, no_densify, tmp_path):
    dm = PairedDataModule(wide_data, seed=0, batch_size=64)
    dm.setup()
    assert sp.issparse(dm.inputs["atac"]) and dm.inputs["atac"].shape[1] == N_PEAKS
    L.seed_everything(0, verbose=False)
    # the model's own config (cvqvae: its pca input), as `mmint fit model=<name>` builds it
    yaml = OmegaConf.load(config_dir() / "model" / f"{name}.yaml")
    cfg = OmegaConf.to_container(OmegaConf.merge({"seed": 0, "model": yaml}), resolve=True)["model"]
    *_, hparams = _split_model_config(cfg)
    model = build_model(name, dm.spec, **hparams)
    fit_briefly(model, dm)
    scores = evaluate(model, dm, "test", scib=False, leiden=False)
    assert np.isfinite(scores["r2"]["rna"]["atac"]) and 0.5 < scores["auroc"]["rna"]["atac"] <= 1
    write_outputs(model, dm, tmp_path, dm.cells("test"))
    assert (tmp_path / "predictions" / "rna_to_atac.h5ad").exists()
    # every cell has atac: outputs.h5mu's entry is the input itself, not a copy of it
    assert to_mudata(model, dm).mod["atac"].X is dm.inputs["atac"]


@pytest.mark.parametrize("transform", ["clr", "standardize"])
def test_dense_transform_of_a_wide_sparse_modality_is_refused(transform):
    sim = simulate(
        n_cells=20, modalities={"rna": ("counts", 2500), "adt": ("counts", 5)}, n_links=0
    )
    data = PairedData.from_anndatas(sim.adatas, sim.kinds)
    with pytest.raises(InputError, match="dense"):
        PairedDataModule(data, transforms={"rna": transform})
    # narrowed by feature selection below the width, it is allowed
    PairedDataModule(data, transforms={"rna": transform}, n_top_features={"rna": 500})


def test_prediction_chunks_do_not_change_scores(wide_data, monkeypatch):
    """Evaluation batches cut to a few cells for a wide target give the in-memory scores."""
    from mmint.data import datamodule

    dm = PairedDataModule(wide_data, seed=0, batch_size=64)
    dm.setup()
    model = build_model("pca", dm.spec).fit_data(dm)
    whole = evaluate(model, dm, "test", scib=False, leiden=False)
    monkeypatch.setattr(datamodule, "PREDICTION_ENTRIES", 5 * N_PEAKS)  # 5 cells per chunk
    assert dm.prediction_rows(["atac"]) == 5
    chunked = evaluate(model, dm, "test", scib=False, leiden=False)
    for key in ("r2", "r2_variance_weighted", "pearson", "auroc"):
        for s, row in whole[key].items():
            for d, v in row.items():
                assert chunked[key][s][d] == pytest.approx(v, abs=1e-6), (key, s, d)

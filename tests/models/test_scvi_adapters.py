"""The scvi-tools adapters (MULTIVI, totalVI, scANVI) on tiny data, a few epochs each."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mmint.data import PairedData, PairedDataModule
from mmint.data.simulate import simulate
from mmint.errors import InputError
from mmint.models import build_model

from .contract import CITE, MULTIOME, fit_run

pytest.importorskip("scvi")  # the [scvi] extra is part of .[dev]; a bare install skips


def tiny_dm(kinds: dict[str, tuple[str, int]], split=None, transforms=None) -> PairedDataModule:
    sim = simulate(n_cells=200, n_types=4, n_major=2, n_batches=2, modalities=kinds, seed=0)
    data = PairedData.from_anndatas(sim.adatas, sim.kinds, label_key="cell_type", batch_key="batch")
    dm = PairedDataModule(data, split=split or {"kind": "random"}, seed=0, transforms=transforms)
    dm.setup()
    return dm


@pytest.fixture(scope="module")
def multiome():
    dm = tiny_dm({"rna": ("counts", 60), "atac": ("binary", 80)})
    model = build_model("scvi_multivi", dm.spec, max_epochs=3, seed=0).fit_data(dm)
    return model, dm


def test_multivi_rna_prediction_matches_scvi_public_api(multiome):
    """RNA from ATAC alone equals scvi-tools' get_normalized_expression on a copy of the
    data whose RNA counts are zeroed (MULTIVI's missing modality), in mmint's lognorm space."""
    model, dm = multiome
    test = dm.cells("test")
    pred = model.predict_cells(dm, "atac", "rna", test)
    scvi_model = model.model(dm)
    zeroed = scvi_model.adata.copy()
    zeroed.mod["rna"].X = zeroed.mod["rna"].X * 0
    scale = scvi_model.get_normalized_expression(
        adata=zeroed, indices=test, use_z_mean=True, return_numpy=True
    )
    np.testing.assert_allclose(pred, np.log1p(1e4 * scale), rtol=1e-4, atol=1e-5)


def test_multivi_latents_are_scvi_tools_latents(multiome):
    model, dm = multiome
    cells = dm.cells("test")
    out = model.embed_cells(dm, cells, translations=False)
    ref = model.model(dm).get_latent_representation(modality="accessibility", indices=cells)
    np.testing.assert_allclose(out.latents["atac"], ref, rtol=1e-5, atol=1e-6)
    assert out.joint.shape == (len(cells), 20)


def test_multivi_checkpoint_round_trip(multiome, tmp_path):
    model, dm = multiome
    model.save(tmp_path / "m.ckpt", dm)
    again = type(model).load(tmp_path / "m.ckpt")
    cells = dm.cells("test")
    np.testing.assert_allclose(
        again.embed_cells(dm, cells, translations=False).joint,
        model.embed_cells(dm, cells, translations=False).joint,
        rtol=1e-5,
        atol=1e-6,
    )
    assert again.fit_cost["epochs"] == 3


def test_multivi_trains_on_training_cells_only(multiome):
    model, dm = multiome
    train, val, test = model.split_indices(dm)
    np.testing.assert_array_equal(train, dm.split["train"])
    np.testing.assert_array_equal(val, dm.split["val"])
    assert not set(train) & set(test)


def test_multivi_run_directory(tmp_path):
    metrics = fit_run("scvi_multivi", MULTIOME, tmp_path, "model.max_epochs=2")
    assert metrics["epochs"] == 2 and metrics["seconds_per_epoch"] > 0
    assert metrics["foscttm"] is not None and metrics["auroc"]["rna"]["atac"] is not None
    assert metrics["model_info"]["n_latent"] == 20


def test_totalvi_run_directory(tmp_path):
    metrics = fit_run("scvi_totalvi", CITE, tmp_path, "model.max_epochs=2")
    assert (
        metrics["foscttm"] is None and "one joint encoder" in metrics["not_applicable"]["foscttm"]
    )
    assert set(metrics["pearson"]["rna"]) == {"rna", "adt"}
    assert np.isfinite(metrics["pearson"]["rna"]["adt"])


def test_totalvi_refuses_atac(tmp_path):
    dm = tiny_dm({"rna": ("counts", 30), "atac": ("binary", 40)})
    with pytest.raises(InputError, match="totalVI takes RNA and ADT"):
        build_model("scvi_totalvi", dm.spec, max_epochs=1).fit_data(dm)


def test_scanvi_hides_every_label_but_the_training_cells():
    dm = tiny_dm(
        {"rna": ("counts", 60), "atac": ("binary", 40)},
        split={"kind": "holdout_batch", "holdout": ["b1"]},
    )
    model = build_model("scvi_scanvi", dm.spec)
    obs = model.adata(dm).obs
    seen = obs["label"].astype(str) != "__unlabelled__"
    np.testing.assert_array_equal(np.flatnonzero(seen), np.sort(dm.split["train"]))
    target = dm.split["test"]
    train, _, test = model.split_indices(dm, train_extra=target)
    assert set(target) <= set(train) and len(test) == 0  # the target trains, unlabelled


def test_scanvi_transfer_run_directory(tmp_path):
    metrics = fit_run(
        "scvi_scanvi",
        MULTIOME,
        tmp_path,
        "split.kind=holdout_batch",
        "split.holdout=[b1]",
        "model.max_epochs=2",
        "model.scanvi_epochs=2",
    )
    assert 0 <= metrics["transfer_accuracy"] <= 1 and metrics["groups_from"] == "model head"
    assert metrics["r2"] is None and "RNA only" in metrics["not_applicable"]["r2"]
    assert metrics["model_info"]["unlabelled_target_in_training"] is True
    assert not (tmp_path / "predictions" / "rna_to_atac.h5ad").exists()


def test_missing_extra_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "scvi", None)  # import scvi now raises ImportError
    dm = tiny_dm({"rna": ("counts", 30), "atac": ("binary", 40)})
    with pytest.raises(InputError) as err:
        build_model("scvi_multivi", dm.spec).fit_data(dm)
    assert "pip install 'mmint[scvi]'" in str(err.value) and "\n" not in str(err.value)


def test_drop_last_only_for_a_one_cell_last_batch():
    from mmint.models.scvi_tools.base import ScviIntegrator

    split = [np.arange(129), np.arange(129, 300), np.array([], dtype=np.int64)]
    assert ScviIntegrator.splitter_kwargs(split, 128)["drop_last"] is True
    assert "drop_last" not in ScviIntegrator.splitter_kwargs(split, 256)
    labelled = np.arange(129)  # 129 labelled training cells: the labelled loader's last batch
    assert ScviIntegrator.splitter_kwargs([np.arange(200), *split[1:]], 128, labelled)["drop_last"]

"""``unitednet_original``: the original UnitedNet by path, wired on a FAKE original
(:mod:`fake_original`). The test recomputes the fake's outputs on the test cells itself and
checks mmint's scores against sklearn."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.metrics import adjusted_rand_score, r2_score

from mmint.cli import compose
from mmint.errors import InputError
from mmint.fit import build_datamodule, run_fit
from mmint.models import build_model

from .fake_original import installed_fake

TINY = [
    "data.simulate.n_cells=300",
    "data.simulate.n_types=4",
    "data.simulate.n_major=2",
    "+data.simulate.n_features={rna: 40, atac: 60, ephys: 12}",
    "eval.scib=false",
    "eval.leiden=false",
    "logger=csv",
]


def dense(x) -> np.ndarray:
    """A data module's rows as a numpy array (sparse modalities are CSR)."""
    return x.toarray() if sp.issparse(x) else np.asarray(x)


@pytest.fixture
def fake_original(tmp_path, monkeypatch):
    yield from installed_fake(tmp_path, monkeypatch)


def test_without_the_checkout_one_line_error(monkeypatch):
    monkeypatch.delenv("MMINT_UNITEDNET_ORIGINAL", raising=False)
    cfg = compose("fit", ["model=unitednet_original", *TINY])
    dm = build_datamodule(cfg, 64)
    with pytest.raises(InputError) as info:
        build_model("unitednet_original", dm.spec)
    line = str(info.value)
    assert "\n" not in line and "export MMINT_UNITEDNET_ORIGINAL=" in line


def test_checkout_without_src(tmp_path, monkeypatch):
    monkeypatch.setenv("MMINT_UNITEDNET_ORIGINAL", str(tmp_path))
    cfg = compose("fit", ["model=unitednet_original", *TINY])
    with pytest.raises(InputError, match="has no src/interface.py"):
        build_model("unitednet_original", build_datamodule(cfg, 64).spec)


def test_fit_scores_the_originals_own_outputs(fake_original, tmp_path, capfd):
    cfg = compose("fit", ["model=unitednet_original", "model.max_epochs=2", *TINY])
    run_dir = tmp_path / "run"
    metrics = run_fit(cfg, run_dir)
    assert metrics["status"] == "ok" and metrics["epochs"] == 2
    assert "it/s]" not in capfd.readouterr().err  # the original's tqdm bar stays off
    assert metrics["foscttm"] is None  # the original gives the fused latent only
    net = torch.load(run_dir / "checkpoints/best.ckpt", weights_only=False)["fitted"]["network"]
    # the original was handed mmint unitednet's networks for the same data
    hp = build_model("unitednet", build_datamodule(cfg, 64).spec).hparams
    mods = list(hp["spec"]["modalities"])
    for i, m in enumerate(mods):
        assert net.config["encoders"][i]["hiddens"] == list(hp["encoder_hidden"][m])
    assert net.config["clusters"]["output"] == hp["n_groups"]
    assert net.config["train_epochs"] == 2
    # recompute the fake's outputs on the test cells; score them with sklearn
    dm = build_datamodule(cfg, 64)
    test = dm.cells("test")
    xs = [torch.as_tensor(dense(dm.inputs[m][test]).astype(np.float32)) for m in mods]
    with torch.no_grad():
        trans, groups, _ = net.outputs(xs)
    labels = dm.true_labels[test]
    assert metrics["ari"] == pytest.approx(adjusted_rand_score(labels, groups))
    src, dst = mods.index("rna"), mods.index("ephys")
    truth = dense(dm.inputs["ephys"][test]).astype(np.float64)
    assert metrics["r2"]["rna"]["ephys"] == pytest.approx(
        r2_score(truth, trans[dst][src].astype(np.float64)), abs=1e-5
    )


def test_a_preset_composed_into_unitednet_builds_its_networks(fake_original, tmp_path):
    # the speed suite's way: +model@model.unitednet=<preset>; its name / epochs / batch size
    # are the adapter's own keys, the rest are the networks the original is handed
    cfg = compose(
        "fit",
        [
            "model=unitednet_original",
            "+model@model.unitednet=unitednet_multiome",
            "model.max_epochs=3",
            *TINY,
        ],
    )
    assert cfg["model"]["unitednet"]["max_epochs"] == 10  # the preset's, not used
    run_dir = tmp_path / "run"
    metrics = run_fit(cfg, run_dir)
    assert metrics["status"] == "ok" and metrics["epochs"] == 3
    net = torch.load(run_dir / "checkpoints/best.ckpt", weights_only=False)["fitted"]["network"]
    assert net.config["train_epochs"] == 3
    assert [e["hiddens"] for e in net.config["encoders"]] == [[64, 64]] * 3  # the preset's
    assert net.config["encoders"][0]["output"] == 64
    # the epoch clock saw the fake's three validation passes
    assert metrics["cpu_seconds_per_epoch"] is not None and metrics["cpu_seconds_per_epoch"] >= 0

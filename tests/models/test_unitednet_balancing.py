"""UnitedNet's loss balancing (``loss_balancing``) and encoder options (``encoder``,
``variational``): the terms and fixed weights each phase's balancer sees, its state in
checkpoints, and learned weights in curves.csv after a tiny fit."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

import mmint.nn.balancing as balancing
from mmint import keys
from mmint.errors import InputError
from mmint.models.unitednet import UnitedNet
from mmint.nn.encoders import ResidualBlock, VariationalLatent

from ._unitednet_utils import _batch, _detached, _spec

#: default compat: contrastive / n_head, DDC x n_head, shared discriminator optimizer
OPTIONS = {"n_head": 2, "contrastive_per_head": True, "ddc_sum_over_heads": True}


def _pair(method: str, seed: int = 0, **kw) -> tuple[UnitedNet, UnitedNet]:
    """The same model (same initial weights) with ``fixed`` and with ``method``."""
    models = []
    for m in ("fixed", method):
        torch.manual_seed(seed)
        models.append(_detached(UnitedNet(_spec(), loss_balancing=m, **{**OPTIONS, **kw})))
    return models[0], models[1]


def _neutral(model: UnitedNet) -> None:
    """Learned weights that multiply every term by exactly 1 (uncertainty: 0.5 e^-s = 1)."""
    for bal in model.balancers.values():
        if isinstance(bal, balancing.Uncertainty):
            with torch.no_grad():
                bal.log_vars.fill_(-math.log(2.0))


def _run(model: UnitedNet, step: str, batch) -> None:
    torch.manual_seed(123)  # input noise and contrastive negatives drawn alike
    getattr(model, step)(batch)


@pytest.mark.parametrize("method", ["uncertainty", "gradnorm", "pcgrad", "dwa"])
@pytest.mark.parametrize(
    ("step", "kw"),
    [
        ("_pgc_step", {}),
        ("_pgc_step", {"variational": True, "noise_level": 0.1}),
        ("_group_step", {"cluster_update_encoders": True}),
        ("_group_step", {"task": "supervised"}),
        ("_joint_step", {"task": "joint"}),
    ],
)
def test_neutral_weights_give_the_fixed_step(method, step, kw, monkeypatch):
    """With every learned weight at 1 (and PCGrad's projection off) a balanced step moves the
    parameters exactly as the fixed weighted sum: each phase's balancer gets every term of its
    optimizer, with the model's fixed weights (contrastive / heads, DDC x heads, KL)."""
    if method == "pcgrad":
        monkeypatch.setattr(balancing, "project_conflicts", lambda g: g)
    fixed, other = _pair(method, **kw)
    assert fixed.balancers is None and other.balancers is not None
    _neutral(other)
    batch = _batch()
    before = [p.detach().clone() for p in fixed.module.parameters()]
    _run(fixed, step, batch)
    _run(other, step, batch)
    pairs = zip(fixed.module.named_parameters(), other.module.named_parameters(), strict=True)
    for (name, a), (_, b) in pairs:
        # the gradients (Adam's first step is nearly sign(gradient): compare them, not only
        # the parameters)
        assert (a.grad is None) == (b.grad is None), name
        if a.grad is not None:
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-7, msg=name)
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=name)
    assert (
        sum(not torch.equal(p, q) for p, q in zip(before, fixed.module.parameters(), strict=True))
        > 2
    )


def test_the_terms_of_each_phase():
    model = UnitedNet(_spec(), loss_balancing="dwa", variational=True, kl_weight=0.5)
    assert set(model.balancers) == {"pgc", "group"}
    pgc = model.balancers["pgc"].names
    assert pgc == ["reconstruction", "translation", "contrastive", "generator", "kl"]
    assert model.balancers["group"].names == ["ddc", "self_entropy"]
    weights = model.epoch_values()
    assert weights["weight_pgc_kl"] == 0.5 and weights["weight_pgc_generator"] == 0.1
    sup = UnitedNet(_spec(), loss_balancing="uncertainty", task="supervised")
    assert sup.balancers["group"].names == ["cross_entropy"]
    joint = UnitedNet(_spec(), loss_balancing="pcgrad", task="joint", contrastive_weight=0.0)
    assert list(joint.balancers) == ["joint"]
    # joint with labels classifies (the default group mode)
    assert joint.balancers["joint"].names == [
        "reconstruction",
        "translation",
        "generator",
        "cross_entropy",
    ]
    # a new stage gets the new schedule's balancers
    joint.configure_stage(task="pgc_only")
    assert list(joint.balancers) == ["pgc"]
    assert UnitedNet(_spec()).epoch_values() == {}


def test_gradnorm_balances_the_encoders_output_layers_or_the_heads():
    model = UnitedNet(_spec(), loss_balancing="gradnorm")
    out_layers = [
        [m for m in e.net if isinstance(m, torch.nn.Linear)][-1]
        for e in model.module.encoders.values()
    ]
    assert {id(p) for p in model.balancers["pgc"]._shared} == {
        id(p) for layer in out_layers for p in layer.parameters()
    }
    heads = {id(p) for h in model.module.heads for p in h.projector[0].parameters()}
    assert {id(p) for p in model.balancers["group"]._shared} == heads


def test_self_entropy_is_balanced_as_a_non_negative_term():
    model = _detached(UnitedNet(_spec(), loss_balancing="uncertainty", self_entropy_weight=1.0))
    seen = {}
    bal = model.balancers["group"]
    backward = bal.backward

    def spy(terms, params, fn):
        seen.update({k: v.detach() for k, v in terms.items()})
        return backward(terms, params, fn)

    bal.backward = spy
    model._group_step(_batch())
    assert seen["self_entropy"].item() >= 0.0  # sum p log p + log K, K = 3
    assert seen["self_entropy"].item() <= math.log(3)


def test_balancer_state_is_in_the_checkpoint():
    model = _detached(UnitedNet(_spec(), loss_balancing="uncertainty"))
    model._pgc_step(_batch())
    state = model.state_dict()
    assert "balancers.pgc.log_vars" in state
    assert not torch.equal(state["balancers.pgc.log_vars"], torch.zeros(4))
    fresh = UnitedNet(_spec(), loss_balancing="uncertainty")
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh.balancers["pgc"].log_vars, model.balancers["pgc"].log_vars)
    assert fresh.balancers["pgc"].opt.state_dict()["state"][0]["step"] == 1


def test_bad_options_are_one_line_errors():
    with pytest.raises(InputError, match="unknown loss_balancing 'magic'"):
        UnitedNet(_spec(), loss_balancing="magic")
    with pytest.raises(InputError, match="balancing_options"):
        UnitedNet(_spec(), loss_balancing="dwa", balancing_options={"alpha": 1.0})
    with pytest.raises(InputError, match="unknown encoder 'cnn'"):
        UnitedNet(_spec(), encoder="cnn")


def test_encoder_options_build_the_networks():
    res = UnitedNet(_spec(), encoder="residual", encoder_hidden=[8, 8, 4])
    blocks = [b for b in res.module.encoders["rna"].net if isinstance(b, ResidualBlock)]
    assert len(blocks) == 2
    var = UnitedNet(_spec(), variational=True)
    assert set(var.module.variational) == {"rna", "atac", "ephys"}
    lat = var.module.variational["rna"]
    assert isinstance(lat, VariationalLatent)
    # kaiming init does not replace the small starting variance
    assert torch.equal(lat.log_var.weight, torch.zeros_like(lat.log_var.weight))
    ids = {id(p) for p in var.module.pgc_parameters()}
    assert {id(p) for p in lat.parameters()} <= ids
    var.eval()
    batch = _batch()
    x, masks = var._inputs(batch)
    z = var.module.encode(x, masks)
    torch.testing.assert_close(z["rna"], var.module.encoders["rna"](x["rna"]))  # the mean


def test_variational_kl_is_a_translation_term_over_observed_cells():
    model = _detached(UnitedNet(_spec(), variational=True, kl_weight=0.5))
    batch = _batch()
    batch[keys.mask_key("atac")] = torch.tensor([1.0] * 10 + [0.0] * 6)
    x, masks = model._inputs(batch)
    torch.manual_seed(0)
    z = model.module.encode(x, masks)
    mus, lvs = [], []
    for m in model.modalities:
        obs = masks[m] > 0
        h = model.module.encoders[m](x[m][obs])
        mus.append(h)
        lvs.append(model.module.variational[m].log_var(h))
    mu, lv = torch.cat(mus), torch.cat(lvs)
    want = (0.5 * (mu**2 + lv.exp() - 1 - lv)).mean()
    torch.testing.assert_close(model.module.last_kl, want)
    out = model._pgc_loss(x, masks, z, batch, x)
    assert "kl" in out.terms
    rest = {k: v for k, v in out.terms.items() if k != "kl"}
    torch.testing.assert_close(out.loss - model._weighted(rest), 0.5 * out.terms["kl"])


@pytest.mark.parametrize("method", ["uncertainty", "gradnorm", "pcgrad", "dwa"])
def test_tiny_fit_logs_the_effective_weights_in_curves_csv(method, tmp_path):
    from mmint.cli import compose
    from mmint.fit import run_fit

    cfg = compose(
        "fit",
        [
            "model=unitednet",
            "logger=csv",
            "data.simulate.n_cells=120",
            "data.simulate.n_types=3",
            "data.simulate.n_major=2",
            "+data.simulate.n_features={rna: 20, atac: 30}",
            "eval.scib=false",
            "eval.leiden=false",
            "model.max_epochs=3",
            f"model.loss_balancing={method}",
        ],
    )
    metrics = run_fit(cfg, tmp_path)
    assert metrics["status"] == "ok"
    curves = pd.read_csv(tmp_path / "curves.csv")
    cols = [c for c in curves if c.startswith("weight_")]
    assert curves["epoch"].tolist() == [0, 1, 2]
    assert {"weight_pgc_translation", "weight_group_ddc", "weight_group_self_entropy"} <= set(cols)
    first, last = curves[cols].iloc[0], curves[cols].iloc[-1]
    if method == "pcgrad":  # projects gradients, keeps the fixed weights
        assert last["weight_pgc_translation"] == 1.0 and last["weight_pgc_generator"] == 0.1
    elif method == "uncertainty":  # 0.5 e^-s x fixed, s moved from 0
        assert first["weight_pgc_translation"] != pytest.approx(0.5, abs=1e-6)
        assert (first != last).all()
    elif method == "gradnorm":  # weights renormalised to the number of terms
        fixed = {"reconstruction": 1, "translation": 1, "contrastive": 1, "generator": 0.1}
        for row in (first, last):
            learned = sum(row[f"weight_pgc_{k}"] / w for k, w in fixed.items())
            assert learned == pytest.approx(4.0)
        assert (first != last).any()
    else:  # DWA: 1 for two epochs, then from the loss ratios
        assert (curves[cols].iloc[:2] == first).all().all()
        assert (last != first).any()
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert any(k.startswith("balancers.pgc") for k in ckpt["state_dict"])


@pytest.mark.parametrize("method", ["uncertainty", "gradnorm", "pcgrad", "dwa"])
def test_preset_like_networks_step_with_every_option(method):
    """The presets' network options (several heads, per-feature fusion, linear latent
    projector, encoder dropout on the first layer) with residual encoders and a variational
    latent: a translation and a group step per method, finite, learned weights moved."""
    torch.manual_seed(0)
    model = _detached(
        UnitedNet(
            _spec(),
            n_head=3,
            fuser="feature_weighted_mean",
            latent_projector="linear",
            encoder_hidden=[16, 12, 8],
            dropout=0.2,
            dropout_first_only=True,
            discriminator_out_dim=4,
            discriminator_out_norm="layer",
            encoder="residual",
            variational=True,
            cluster_update_encoders=True,
            loss_balancing=method,
        )
    )
    before = model.epoch_values()
    for seed in range(2):
        model._pgc_step(_batch(seed=seed))
        model._group_step(_batch(seed=seed))
    assert all(torch.isfinite(p).all() for p in model.parameters())
    after = model.epoch_values()
    assert "weight_pgc_kl" in after and set(after) == set(before)
    if method in ("uncertainty", "gradnorm"):
        assert after != before
    else:  # PCGrad keeps the fixed weights; DWA changes them at epoch ends only
        assert after == before

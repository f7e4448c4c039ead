"""UnitedNet: every loss against a hand computation, schedules, masks, fits, checkpoints."""

from __future__ import annotations

import math

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmint import keys
from mmint.data import PairedDataModule
from mmint.data.spec import DataSpec
from mmint.errors import InputError
from mmint.models import build_model
from mmint.models.unitednet import GroupNet, TranslationNet, UnitedNet
from mmint.models.unitednet import losses as UL
from mmint.models.unitednet.heads import HeadStats, vote

from ._unitednet_utils import N_FEATURES, _batch, _detached, _spec, _trainer
from .configs import model_config

torch.set_num_threads(1)


# ------------------------------------------------------------------------ losses
def test_distance_mse_and_bce_by_hand():
    pred = torch.tensor([[0.0, 1.0], [2.0, -1.0]])
    target = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    mse = ((0 - 1) ** 2 + 1**2 + 1**2 + (-1 - 1) ** 2) / 4
    assert UL.distance(pred, target, False).item() == pytest.approx(mse)
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    bce = -(math.log(sig(0)) + math.log(1 - sig(1)) + math.log(sig(2)) + math.log(sig(-1))) / 4
    assert UL.distance(pred, target, True).item() == pytest.approx(bce, rel=1e-6)


def test_mean_distance_skips_empty_terms():
    a, b = torch.tensor([[1.0, 3.0]]), torch.tensor([[0.0, 0.0]])
    empty = torch.zeros(0, 2)
    value = UL.mean_distance([(a, b, False), (empty, empty, False), (b, b, False)])
    assert value.item() == pytest.approx((5.0 + 0.0) / 2)


def test_gan_losses_by_hand():
    real = [torch.tensor([[0.9], [0.6]]), torch.tensor([[1.0]])]
    fake = [torch.tensor([[0.2], [0.5]]), torch.tensor([[0.4]])]
    d0 = (0.1**2 + 0.4**2) / 2 + (0.2**2 + 0.5**2) / 2
    d1 = 0.0 + 0.4**2
    assert UL.discriminator_loss(real, fake).item() == pytest.approx((d0 + d1) / 2)
    g = ((0.8**2 + 0.5**2) / 2 + 0.6**2) / 2
    assert UL.generator_loss(fake).item() == pytest.approx(g)


def test_contrastive_loss_by_hand():
    p = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0], [-1.0, 0.0]], dtype=torch.float64)
    positives = torch.tensor([[0, 1], [2, 1]])
    negatives = torch.tensor([[2, 3], [3, 3]])
    tau = 0.1
    c = 1 / math.sqrt(2)

    def term(pos, negs):
        return -pos / tau + math.log(sum(math.exp(s / tau) for s in [pos, *negs]))

    expected = (term(c, [0.0, -1.0]) + term(c, [0.0, 0.0])) / 2
    got = UL.contrastive_loss(p, positives, negatives, tau)
    assert got.item() == pytest.approx(expected, rel=1e-9)


def test_sample_negatives_only_other_groups_and_seeded():
    groups = torch.tensor([0, 0, 1, 2, 1, 0])
    valid = torch.tensor([True, True, True, True, False, True])
    anchors = torch.tensor([0, 2, 3])
    keep, neg = UL.sample_negatives(groups, valid, anchors, 50, torch.Generator().manual_seed(1))
    assert keep.tolist() == [True, True, True]
    for a, row in zip(anchors.tolist(), neg, strict=True):
        assert all(groups[r] != groups[a] and valid[r] for r in row.tolist())
    assert set(neg[0].tolist()) == {2, 3}
    # uniform over the allowed rows: anchor 3 (group 2) may draw rows 0, 1, 2, 5
    _, many = UL.sample_negatives(
        groups, valid, anchors[2:], 20000, torch.Generator().manual_seed(2)
    )
    freq = torch.bincount(many[0], minlength=6).float() / 20000
    torch.testing.assert_close(
        freq, torch.tensor([0.25, 0.25, 0.25, 0, 0, 0.25]), atol=0.015, rtol=0
    )
    _, again = UL.sample_negatives(groups, valid, anchors, 50, torch.Generator().manual_seed(1))
    assert torch.equal(neg, again)
    keep, neg = UL.sample_negatives(torch.zeros(4, dtype=torch.long), valid[:4], anchors[:1], 3)
    assert keep.tolist() == [False] and neg.shape == (0, 3)


def test_sample_negatives_within_strata():
    groups = torch.tensor([0, 0, 1, 2, 1, 0, 2, 1])
    strata = torch.tensor([0, 1, 0, 1, 1, 0, 0, 1])
    valid = torch.ones(8, dtype=torch.bool)
    anchors = torch.tensor([0, 1, 3])
    keep, neg = UL.sample_negatives(
        groups, valid, anchors, 4000, torch.Generator().manual_seed(0), strata
    )
    assert keep.tolist() == [True, True, True]
    # anchor 0 (group 0, batch 0) may draw rows 2 and 6 only: another group, its own batch
    assert set(neg[0].tolist()) == {2, 6}
    assert set(neg[1].tolist()) == {3, 4, 7}
    assert set(neg[2].tolist()) == {1, 4, 7}
    # one stratum for all rows: the same draws as the reference's sampling
    g = torch.Generator().manual_seed(3)
    plain = UL.sample_negatives(groups, valid, anchors, 9, g)[1]
    g = torch.Generator().manual_seed(3)
    same = UL.sample_negatives(groups, valid, anchors, 9, g, torch.zeros(8, dtype=torch.long))[1]
    assert torch.equal(plain, same)
    # an anchor whose batch has no other group is dropped
    keep, _ = UL.sample_negatives(groups, valid, torch.tensor([0]), 2, None, torch.arange(8))
    assert keep.tolist() == [False]


def test_multiview_contrastive_by_hand_and_single_group_is_zero():
    # two modalities, two cells; cell 1's rows are identical so any drawn negative gives the same
    z_a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z_b = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    masks = [torch.ones(2), torch.ones(2)]
    groups = torch.tensor([0, 1])
    tau, c = 0.1, 1 / math.sqrt(2)
    # one negative each (int(0.25 * 4) = 1): for cell 0's anchors a row of cell 1, and back
    t_a0 = -c / tau + math.log(math.exp(c / tau) + math.exp(0.0))  # anchor (a,0), neg (0, 1)
    t_b0 = -c / tau + math.log(math.exp(c / tau) + math.exp(c / tau))  # anchor (b,0)
    loss = UL.multiview_contrastive_loss([z_a, z_b], masks, groups, tau, 0.25)
    # cell 1's anchors draw cell 0's rows (a: (1,0), b: (1,1)): the value depends on the draw,
    # so check it against all four possible draws
    s = lambda u, v: float(F.cosine_similarity(u[None], v[None]))  # noqa: E731
    rows0 = [z_a[0], z_b[0]]
    cands = []
    for n1 in rows0:
        for n2 in rows0:
            t_a1 = -1 / tau + math.log(math.exp(1 / tau) + math.exp(s(z_a[1], n1) / tau))
            t_b1 = -1 / tau + math.log(math.exp(1 / tau) + math.exp(s(z_b[1], n2) / tau))
            cands.append((t_a0 + t_b0 + t_a1 + t_b1) / 4)
    assert any(abs(loss.item() - v) < 1e-4 for v in cands)
    same = UL.multiview_contrastive_loss([z_a, z_b], masks, torch.zeros(2, dtype=torch.long))
    assert same.item() == 0.0


def test_multiview_contrastive_positives_need_both_modalities():
    z_a = torch.randn(3, 4, requires_grad=True)
    z_b = torch.randn(3, 4)
    masks = [torch.tensor([1.0, 1.0, 0.0]), torch.ones(3)]
    loss = UL.multiview_contrastive_loss([z_a, z_b], masks, torch.tensor([0, 1, 2]))
    loss.backward()
    # cell 2 lacks modality a: its row is neither anchor, positive nor negative
    assert torch.all(z_a.grad[2] == 0) and torch.any(z_a.grad[:2] != 0)


def test_gaussian_kernel_by_hand():
    h = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    sq = np.array([[0, 1, 4], [1, 0, 5], [4, 5, 0]], dtype=float)
    median = np.sort(sq.ravel())[4]  # torch.median: lower median of 9 values -> 1
    sigma2 = 0.15 * median
    expected = np.exp(-sq / (2 * sigma2))
    np.testing.assert_allclose(UL.gaussian_kernel(h).numpy(), expected, rtol=1e-5, atol=1e-7)


def _dcs_numpy(a: np.ndarray, k: np.ndarray) -> float:
    n_clusters = a.shape[1]
    total = 0.0
    for i in range(n_clusters):
        for j in range(i + 1, n_clusters):
            nij = a[:, i] @ k @ a[:, j]
            nii, njj = a[:, i] @ k @ a[:, i], a[:, j] @ k @ a[:, j]
            total += nij / math.sqrt(nii * njj)
    return 2 * total / (n_clusters * (n_clusters - 1))


def test_cauchy_schwarz_and_ddc_by_hand():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(7, 3, generator=g), dim=1).double()
    hidden = torch.randn(7, 5, generator=g).double()
    k = UL.gaussian_kernel(hidden).numpy()
    a = probs.numpy()
    assert UL.cauchy_schwarz_divergence(probs, torch.tensor(k)).item() == pytest.approx(
        _dcs_numpy(a, k), rel=1e-8
    )
    corners = np.exp(-(((a[:, None, :] - np.eye(3)[None]) ** 2).sum(-1)))
    expected = _dcs_numpy(a, k) + _dcs_numpy(corners, k)
    assert UL.ddc_loss(probs, hidden).item() == pytest.approx(expected, rel=1e-8)
    # perfectly separated one-hot clusters with a block kernel: L1 = 0
    onehot = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    block = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert UL.cauchy_schwarz_divergence(onehot, block).item() == pytest.approx(0.0, abs=1e-6)


def test_self_entropy_by_hand():
    probs = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    expected = 0.75 * math.log(0.75) + 0.25 * math.log(0.25)
    assert UL.self_entropy_loss(probs).item() == pytest.approx(expected)


def test_cross_entropy_weighted_and_ignores_unlabelled():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [5.0, -5.0, 9.0]], requires_grad=True)
    labels = torch.tensor([0, 1, -1])
    w = torch.tensor([1.0, 3.0, 0.5])
    lse0, lse1 = math.log(math.exp(2) + 2), math.log(math.exp(1) + 2)
    expected = (1.0 * (lse0 - 2) + 3.0 * (lse1 - 1)) / (1.0 + 3.0)
    loss = UL.cross_entropy_loss(logits, labels, w)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert torch.all(logits.grad[2] == 0)
    none = UL.cross_entropy_loss(logits, torch.full((3,), -1), w)
    assert none.item() == 0.0


# --------------------------------------------------------------------- the model
def test_config_errors_are_input_errors():
    with pytest.raises(InputError, match="n_groups"):
        UnitedNet(_spec(labels=False))
    with pytest.raises(InputError, match="no labels"):
        UnitedNet(_spec(labels=False), task="supervised")
    with pytest.raises(InputError, match="task"):
        UnitedNet(_spec(), task="clustering")
    assert UnitedNet(_spec(labels=False), n_groups=5).module.n_groups == 5
    assert UnitedNet(_spec()).module.n_groups == 3


def test_defaults_sized_from_inputs_and_registry():
    model = build_model("unitednet", _spec())
    assert isinstance(model, UnitedNet)
    assert model.hparams["encoder_hidden"] == {"rna": [32, 32], "atac": [32, 32], "ephys": [32, 32]}
    assert model.hparams["latent_dim"] == 32
    assert model.hparams["decoder_hidden"]["rna"] == [32, 32]
    spec = _spec()
    spec.n_features = {"rna": 1000, "atac": 2000, "ephys": 50}
    big = UnitedNet(spec)
    assert big.hparams["encoder_hidden"]["rna"] == [500, 250]
    assert big.hparams["encoder_hidden"]["atac"] == [512, 256]
    assert big.hparams["latent_dim"] == 64
    w = model.hparams
    assert (w["self_entropy_weight"], w["ddc_weight"], w["cross_entropy_weight"]) == (0.1, 0.1, 1.0)
    assert (w["contrastive_weight"], w["discriminator_weight"], w["generator_weight"]) == (
        1,
        0.1,
        0.1,
    )
    assert (w["reconstruction_weight"], w["translation_weight"], w["lr"]) == (1.0, 1.0, 1e-3)


def test_schedules_and_passes():
    spec = _spec()
    assert UnitedNet(spec).schedule == ["pgc", "group"]
    sup = UnitedNet(spec, task="supervised")
    assert sup.schedule == ["pgc"] + ["group"] * 6 and sup.train_passes_per_epoch == 7
    assert UnitedNet(spec, task="supervised", stage="finetune").schedule[-1] == "pgc"
    assert UnitedNet(spec, alternation="batch").train_passes_per_epoch == 1
    assert UnitedNet(spec, task="pgc_only").train_passes_per_epoch == 1
    assert UnitedNet(spec, stage="transfer").uses_unlabelled_target
    assert not UnitedNet(spec).uses_unlabelled_target
    assert not UnitedNet(spec, stage="transfer").adversarial and UnitedNet(spec).adversarial


def _snapshot(model: UnitedNet) -> dict[str, torch.Tensor]:
    model.module.head_outputs(model.latents(_batch()), {m: torch.ones(16) for m in N_FEATURES})
    return {k: v.detach().clone() for k, v in _params(model).items()}


def _params(model: UnitedNet) -> dict[str, torch.Tensor]:
    """Parameters by name, the module's without its ``module.`` prefix."""
    return {k.removeprefix("module."): v for k, v in model.named_parameters()}


def _changed(before: dict[str, torch.Tensor], model: UnitedNet) -> set[str]:
    after = _params(model)
    parts = set()
    for k, v in before.items():
        if not torch.allclose(v, after[k], atol=1e-5, rtol=0):
            parts.add(k.split(".")[0] if not k.startswith("heads") else "heads." + k.split(".")[2])
    return parts


@pytest.mark.parametrize("mode", ["clustering", "classification"])
def test_each_schedule_updates_only_its_parameters(mode):
    # seeded: the contrastive loss (the latent projector's only gradient) is 0 when a batch
    # happens to be predicted as one group
    torch.manual_seed(7)
    task = "unsupervised" if mode == "clustering" else "supervised"
    model = _detached(
        UnitedNet(
            _spec(), task=task, n_head=2, latent_projector="linear", batch_correction="adversarial"
        )
    )
    before = _snapshot(model)
    model._pgc_step(_batch())
    # pgc step: encoders, decoders, latent projector; then the discriminator and batch
    # adversary steps
    assert _changed(before, model) == {
        "encoders",
        "decoders",
        "latent_projector",
        "discriminators",
        "batch_adversary",
    }
    before = _snapshot(model)
    model._group_step(_batch())
    heads = {"heads.fuser", "heads.projector", "heads.classifier"}
    expected = heads | {"encoders"} if mode == "classification" else heads
    assert _changed(before, model) == expected
    before = _snapshot(model)
    x, masks = model._inputs(_batch())
    model._discriminator_step(model.optimizers()[1], x, {m: x[m] * 0.5 for m in x}, masks)
    assert _changed(before, model) == {"discriminators"}


def test_batch_correction_defaults_and_decoder_inputs():
    one = DataSpec(**{**_spec().to_dict(), "n_batches": 1})
    assert UnitedNet(one).module.n_covariates == 0 and UnitedNet(one).batch_adversary is None
    default = UnitedNet(_spec())
    assert default.hparams["batch_correction"] == "covariate"  # resolved from the data
    model = UnitedNet(_spec(), batch_correction="adversarial")
    assert model.module.n_covariates == 2 and model.batch_adversary is not None
    assert model.module.decoders["ephys"].net[0].in_features == model.module.latent_dim + 2
    plain = UnitedNet(_spec(), batch_correction="none")
    assert plain.module.n_covariates == 0 and plain.batch_adversary is None
    cov = UnitedNet(_spec(), batch_correction="covariate")
    assert cov.module.n_covariates == 2 and cov.batch_adversary is None
    assert len(cov.configure_optimizers()) == 3 and len(model.configure_optimizers()) == 4
    with pytest.raises(InputError, match="batch_correction"):
        UnitedNet(_spec(), batch_correction="harmony")


def test_held_out_batch_decodes_with_the_seen_batches_mix():
    spec = DataSpec(**{**_spec().to_dict(), "train_batch_counts": [20, 0]})
    model = UnitedNet(spec).eval()
    cov = model._cov({keys.BATCH: torch.tensor([0, 1])})
    torch.testing.assert_close(cov, torch.tensor([[1.0, 0.0], [1.0, 0.0]]))


def test_batch_adversary_fool_loss_and_its_own_step():
    torch.manual_seed(0)
    model = _detached(UnitedNet(_spec(), batch_correction="adversarial"))
    batch = {**_batch(), keys.BATCH: torch.arange(16) % 2}
    x, masks = model._inputs(batch)
    # the fooling loss's gradient reaches the encoders only (the adversary has its own step)
    z = model.module.encode(x, masks)
    fool = model._fool_batch_adversary(z, masks, batch)["batch_adversary"]
    fool.backward()
    assert all(p.grad is not None for p in model.module.encoders.parameters())
    assert model.module.decoders["rna"].net[0].weight.grad is None
    model.zero_grad(set_to_none=True)
    # hand check: cross-entropy toward the other batch, mean over the modalities
    with torch.no_grad():
        model.batch_adversary.eval()
        logp = [torch.log_softmax(model.batch_adversary.net(z[m]), 1) for m in model.modalities]
        other = 1 - batch[keys.BATCH]
        hand = torch.stack([-lp[torch.arange(16), other].mean() for lp in logp]).mean()
        mine = model._fool_batch_adversary(z, masks, batch)["batch_adversary"]
        torch.testing.assert_close(mine, hand)
    model.batch_adversary.train()
    before = _snapshot(model)
    model._batch_adversary_step(z, masks, batch)
    assert _changed(before, model) == {"batch_adversary"}


def test_batch_adversary_learns_a_separable_batch():
    torch.manual_seed(0)
    model = _detached(UnitedNet(_spec(), lr=1e-2, batch_correction="adversarial"))
    codes = torch.arange(64) % 2
    z = {m: torch.randn(64, model.module.latent_dim) + 2.0 * codes[:, None] for m in N_FEATURES}
    masks = {m: torch.ones(64) for m in N_FEATURES}
    batch = {keys.BATCH: codes}
    first = model.batch_adversary.loss(torch.cat(list(z.values())), codes.repeat(3), False)
    for _ in range(50):
        model._batch_adversary_step(z, masks, batch)
    model.batch_adversary.eval()
    last = model.batch_adversary.loss(torch.cat(list(z.values())), codes.repeat(3), False)
    assert float(last) < 0.2 < float(first)


def test_cluster_update_encoders_option():
    model = _detached(UnitedNet(_spec(), cluster_update_encoders=True))
    before = _snapshot(model)
    model._group_step(_batch())
    assert "encoders" in _changed(before, model)


def test_discriminator_learns_on_a_toy_problem():
    torch.manual_seed(0)
    model = _detached(UnitedNet(_spec(), discriminator_lr=1e-2))
    batch = _batch(64)
    x, masks = model._inputs(batch)
    fakes = {
        "rna": x["rna"].flip(1) * 0.2,
        "atac": torch.full_like(x["atac"], 0.5),
        "ephys": x["ephys"] * 0 + 3.0,
    }
    opt = model.optimizers()[1]
    first = model.module.discriminator_loss(x, fakes, masks).item()
    for _ in range(60):
        model._discriminator_step(opt, x, fakes, masks)
    last = model.module.discriminator_loss(x, fakes, masks).item()
    assert last < 0.25 * first


def test_transfer_target_cells_never_enter_cross_entropy():
    labels = [0, 1, 2, 0, -1, -1, -1, -1]
    torch.manual_seed(0)
    base = UnitedNet(_spec(), task="supervised", stage="transfer")
    state = {k: v.clone() for k, v in base.state_dict().items()}
    results = []
    for garbage in (False, True):
        model = _detached(UnitedNet(_spec(), task="supervised", stage="transfer"))
        model.load_state_dict(state)
        batch = _batch(8, labels=labels)
        if garbage:  # other inputs for the unlabelled target cells: same update
            for m in N_FEATURES:
                batch[m][4:] = torch.randn(4, N_FEATURES[m]) * 10
        model._group_step(batch)
        results.append({k: v.detach().clone() for k, v in model.module.named_parameters()})
    for k in results[0]:
        assert torch.equal(results[0][k], results[1][k]), k
    # a batch of target cells only: no classification step at all
    model = _detached(UnitedNet(_spec(), task="supervised", stage="transfer"))
    before = _snapshot(model)
    model._group_step(_batch(8, labels=[-1] * 8))
    assert _changed(before, model) == set()


def test_fusion_renormalises_over_observed_modalities():
    model = UnitedNet(_spec(), fuser="feature_weighted_mean").eval()
    with torch.no_grad():
        model.module.heads[0].fuser.theta.normal_()
        batch = _batch(6)
        batch[keys.mask_key("atac")][:3] = 0
        batch["atac"][:3] = 0
        z = model.latents(batch)
        joint = model.joint_latent(batch)
        w = torch.softmax(model.module.heads[0].fuser.theta, dim=1)  # (d, M)
        w_obs = w[:, [0, 2]] / w[:, [0, 2]].sum(1, keepdim=True)
        expected = z["rna"][:3] * w_obs[:, 0] + z["ephys"][:3] * w_obs[:, 1]
        torch.testing.assert_close(joint[:3], expected)
        full = w[:, 0] * z["rna"][3:] + w[:, 1] * z["atac"][3:] + w[:, 2] * z["ephys"][3:]
        torch.testing.assert_close(joint[3:], full)
        batch["atac"][:3] = torch.rand(3, 10)  # whatever the absent rows hold
        torch.testing.assert_close(model.joint_latent(batch)[:3], joint[:3])
        assert model.predict_groups(batch).shape == (6,)


def test_missing_modality_cells_train_from_what_they_have():
    model = _detached(UnitedNet(_spec()))
    batch = _batch(16)
    batch[keys.mask_key("rna")][:8] = 0
    batch["rna"][:8] = 0
    model._pgc_step(batch)
    model._group_step(batch)
    for p in model.parameters():
        assert torch.isfinite(p).all()


def test_group_rows_normalised_and_noise_only_in_training():
    model = UnitedNet(_spec(), noise_level=0.5)
    batch = _batch()
    model.eval()
    with torch.no_grad():
        model.predict_groups(batch)
        w = model.module.heads[0].classifier.weight
        torch.testing.assert_close(w.norm(dim=1), torch.ones(3))
        x, masks = model._inputs(batch)
        assert model._noised(x, masks) is x
    model.train()
    x, masks = model._inputs(batch)
    noised = model._noised(x, masks)
    assert not torch.equal(noised["rna"], x["rna"])


def test_best_head_argmin_ties_to_lowest():
    stats = HeadStats()
    assert stats.argmin() is None
    stats.add(torch.tensor([2.0, 1.0, 1.0]), 1.0)
    assert stats.argmin() == 1
    stats = HeadStats()
    # weighted means (4 + 4) / 2 = 4, (6 + 2) / 2 = 4, 3 / 1 = 3 ... then a tie at 4
    stats.add(torch.tensor([2.0, 3.0, 3.0]), 2.0)
    stats.add(torch.tensor([2.0, 1.0, 9.0]), 2.0)
    torch.testing.assert_close(stats.means(), torch.tensor([2.0, 2.0, 6.0]))
    assert stats.argmin() == 0


def test_best_head_vote_is_the_originals_rule():
    votes = torch.zeros(3, dtype=torch.long)
    # below the threshold (2 votes) the latest pass's winner is used
    assert vote(votes, 2, threshold=2) == 2
    assert vote(votes, 1, threshold=2) == 1
    # a pass without group losses changes nothing until a head reaches the threshold
    assert vote(votes, None, threshold=2) is None
    # head 1 reaches 2 votes: the most voted head from now on, whoever wins the pass
    assert vote(votes, 1, threshold=2) == 1
    assert vote(votes, 0, threshold=2) == 1
    assert votes.tolist() == [1, 2, 1]
    # ties among the most voted go to the lowest index (torch.argmax, numpy's bincount rule)
    assert vote(votes, 0, threshold=2) == 0


def test_reinit_group_heads_keeps_encoders():
    model = _detached(UnitedNet(_spec(), n_head=2))
    for _ in range(3):
        model._pgc_step(_batch())
        model._group_step(_batch())
    model.module.best_head.fill_(1)
    enc = {k: v.clone() for k, v in model.module.encoders.state_dict().items()}
    model.reinit_group_heads()
    assert model.module.best() == 0
    for head in model.module.heads:
        torch.testing.assert_close(head.fuser.theta, torch.full((3,), 1 / 3))
    for k, v in model.module.encoders.state_dict().items():
        assert torch.equal(v, enc[k])
    model.configure_stage(task="unsupervised", stage="finetune")
    assert model.hparams["stage"] == "finetune" and model.schedule == ["group", "pgc"]


# ------------------------------------------------------------------- with a Trainer
@pytest.mark.parametrize("alternation", ["epoch", "batch"])
@pytest.mark.parametrize("task", ["unsupervised", "supervised", "pgc_only", "group_only", "joint"])
def test_one_epoch_fit(tiny_dm, task, alternation):
    L.seed_everything(0, verbose=False)
    model = UnitedNet(tiny_dm.spec, task=task, alternation=alternation, n_head=2)
    trainer = _trainer()
    trainer.fit(model, datamodule=tiny_dm)
    metrics = trainer.callback_metrics
    assert torch.isfinite(metrics["val/loss"])
    assert "train/reconstruction" in metrics or task == "group_only"
    model.eval()
    batch = next(iter(tiny_dm.val_dataloader()))
    with torch.no_grad():
        assert model.joint_latent(batch).shape[0] == batch["index"].shape[0]
        probs = model.translate(batch, "rna", "atac")
        assert probs.min() >= 0 and probs.max() <= 1
        groups = model.predict_groups(batch)
    assert (groups is None) == (task == "pgc_only")


def test_epoch_alternation_runs_each_pass_in_turn(tiny_dm):
    """A plain ``Trainer.fit(model, datamodule)`` runs the model's schedule: nothing is set
    on the data module by hand."""
    model = UnitedNet(tiny_dm.spec, task="supervised", group_passes=2)
    seen: list[str] = []
    original = model._phases

    def spy(batch, batch_idx):
        phases = original(batch, batch_idx)
        seen.extend(phases)
        return phases

    model._phases = spy  # type: ignore[method-assign]
    _trainer(max_epochs=2).fit(model, datamodule=tiny_dm)
    per_pass = len(seen) // 6
    epoch = ["pgc"] * per_pass + ["group"] * 2 * per_pass
    assert seen == epoch + epoch and per_pass >= 3


def test_a_loader_with_too_few_passes_is_refused(tiny_dm):
    model = UnitedNet(tiny_dm.spec, task="supervised", group_passes=2)
    tiny_dm.passes_per_epoch = 1  # overrides the model's declaration (3 passes)
    with pytest.raises(InputError, match="passes"):
        _trainer().fit(model, datamodule=tiny_dm)


def test_gradient_clipping_applies(tiny_dm):
    norms: dict[str, list[float]] = {"on": [], "off": []}
    for key, clip in (("on", 0.01), ("off", 0.0)):
        model = UnitedNet(tiny_dm.spec, gradient_clip_val=clip, alternation="batch")
        tiny_dm.passes_per_epoch = 1

        class Spy(L.Callback):
            def on_train_start(self, trainer, pl_module, key=key):
                for opt in trainer.optimizers:

                    def hook(o, args, kwargs, key=key):
                        ps = [
                            p.grad
                            for g in o.param_groups
                            for p in g["params"]
                            if p.grad is not None
                        ]
                        norms[key].append(
                            float(
                                torch.linalg.vector_norm(
                                    torch.stack([torch.linalg.vector_norm(g) for g in ps])
                                )
                            )
                        )

                    opt.register_step_pre_hook(hook)

        _trainer(limit_val_batches=0, callbacks=[Spy()]).fit(model, datamodule=tiny_dm)
    assert max(norms["on"]) <= 0.01 * 1.001
    assert max(norms["off"]) > 0.01


def test_transfer_stage_fits_with_unlabelled_target(tiny_data):
    dm = PairedDataModule(
        tiny_data, split={"kind": "holdout_batch", "holdout": ["b1"]}, batch_size=64
    )
    dm.setup()
    model = UnitedNet(dm.spec, task="supervised", stage="transfer", alternation="batch")
    assert model.uses_unlabelled_target
    dm.include_target_in_train = True
    labels = torch.cat([b[keys.LABEL] for b in dm.train_dataloader()])
    assert (labels == -1).sum() == len(dm.split["test"])
    _trainer().fit(model, datamodule=dm)
    assert torch.isfinite(_trainer_metric(model, "val/loss"))


def _trainer_metric(model: UnitedNet, key: str) -> torch.Tensor:
    return model.trainer.callback_metrics[key]


def test_same_seed_same_metrics(tiny_dm):
    values = []
    for _ in range(2):
        L.seed_everything(3, verbose=False)
        model = UnitedNet(tiny_dm.spec, n_head=2)
        trainer = _trainer(max_epochs=2)
        trainer.fit(model, datamodule=tiny_dm)
        values.append({k: float(v) for k, v in trainer.callback_metrics.items()})
    assert values[0] == values[1]


def test_checkpoint_round_trip(tiny_dm, tmp_path):
    L.seed_everything(0, verbose=False)
    model = UnitedNet(tiny_dm.spec, n_head=3, latent_projector="linear")
    trainer = _trainer()
    trainer.fit(model, datamodule=tiny_dm)
    model.module.best_head.fill_(2)
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    # the data module's fitted transforms (numpy) ride along: a full, trusted unpickle
    loaded = UnitedNet.load_from_checkpoint(path, weights_only=False)
    assert loaded.module.best() == 2
    model.eval()
    loaded.eval()
    batch = next(iter(tiny_dm.val_dataloader()))
    with torch.no_grad():
        torch.testing.assert_close(loaded.joint_latent(batch), model.joint_latent(batch))
        torch.testing.assert_close(
            loaded.translate(batch, "ephys", "rna"), model.translate(batch, "ephys", "rna")
        )
        assert torch.equal(loaded.predict_groups(batch), model.predict_groups(batch))
        for m, z in model.latents(batch).items():
            torch.testing.assert_close(loaded.latents(batch)[m], z)


# ------------------------------------------------------------------------ configs
PRESET_DATA = {
    "unitednet": {"rna": ("counts", 40), "atac": ("binary", 30), "ephys": ("continuous", 8)},
    "unitednet_patchseq": {
        "rna": ("continuous", 1252),
        "ephys": ("continuous", 68),
        "morph": ("continuous", 514),
    },
    "unitednet_dbitseq": {
        "rna": ("continuous", 568),
        "protein": ("continuous", 22),
        "niche_rna": ("continuous", 568),
    },
    "unitednet_multiome": {"rna": ("counts", 600), "atac": ("binary", 600)},
}


@pytest.mark.parametrize("preset", sorted(PRESET_DATA))
def test_presets_build_and_step(preset):
    cfg = model_config(preset)  # composed: the preset over unitednet.yaml
    mods = PRESET_DATA[preset]
    spec = DataSpec(
        modalities=list(mods),
        kinds={m: k for m, (k, _) in mods.items()},
        n_features={m: n for m, (_, n) in mods.items()},
        transforms={
            m: {"counts": "lognorm", "binary": "binarize"}.get(k, "standardize")
            for m, (k, _) in mods.items()
        },
        label_names=[f"t{i}" for i in range(5)],
        train_label_counts=[4] * 5,
    )
    name = cfg.pop("name")
    cfg.pop("max_epochs"), cfg.pop("batch_size")
    model = _detached(build_model(name, spec, **cfg))
    g = torch.Generator().manual_seed(0)
    batch = {m: torch.randn(8, n, generator=g) for m, (_, n) in mods.items()}
    for m, (kind, _) in mods.items():
        if kind == "binary":
            batch[m] = (batch[m] > 0).float()
        batch[keys.mask_key(m)] = torch.ones(8)
    batch[keys.LABEL] = torch.arange(8) % 5
    model._pgc_step(batch)
    model._group_step(batch)
    model.eval()
    with torch.no_grad():
        assert model.joint_latent(batch).shape == (8, model.hparams["latent_dim"])


def test_explain_hooks_match_the_interface():
    model = UnitedNet(_spec(), n_head=2, batch_correction="none").eval()
    model.module.best_head.fill_(1)
    batch = _batch(8)
    with torch.no_grad():
        net = TranslationNet(model.module, "rna", "atac")
        torch.testing.assert_close(net(batch["rna"]), model.translate(batch, "rna", "atac"))
        probs = GroupNet(model.module)(torch.cat([batch[m] for m in model.modalities], dim=1))
        assert torch.equal(probs.argmax(1), model.predict_groups(batch))
        torch.testing.assert_close(probs.sum(1), torch.ones(8))
        # batch-conditioned decoders: a fixed batch code matches cells of that batch, and
        # without one the covariate is the uniform mix
        model = UnitedNet(_spec(), batch_correction="covariate").eval()
        for code in (0, 1):
            one = {**batch, keys.BATCH: torch.full((8,), code)}
            net = TranslationNet(model.module, "rna", "ephys", batch_code=code)
            torch.testing.assert_close(net(batch["rna"]), model.translate(one, "rna", "ephys"))
        mix = TranslationNet(model.module, "rna", "ephys")
        torch.testing.assert_close(mix.cov, torch.tensor([[0.5, 0.5]]))

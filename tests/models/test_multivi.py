"""MultiVI-style model: divergences, mixing, missing modalities, adversary, fit, checkpoint."""

from __future__ import annotations

import inspect
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import yaml
from torch.distributions import Normal, kl_divergence

from mmint import keys
from mmint.data.spec import DataSpec
from mmint.models import build_model
from mmint.models.multivi import MultiVI
from mmint.models.multivi.module import (
    default_sizes,
    gaussian_mmd,
    jeffreys_divergence,
    kl_standard_normal,
    masked_softmax,
    mix_posteriors,
)
from mmint.models.multivi.plan import kl_warmup
from mmint.nn.batch import BatchAdversary

torch.set_num_threads(1)

KINDS = {"rna": "counts", "atac": "binary", "ephys": "continuous", "adt": "counts"}
TRANSFORMS = {"rna": "lognorm", "atac": "binarize", "ephys": "standardize", "adt": "clr"}
N_FEATURES = {"rna": 30, "atac": 40, "ephys": 6, "adt": 8}


def make_spec(mods=("rna", "atac", "ephys"), n_batches: int = 2) -> DataSpec:
    return DataSpec(
        modalities=list(mods),
        kinds={m: KINDS[m] for m in mods},
        n_features={m: N_FEATURES[m] for m in mods},
        transforms={m: TRANSFORMS[m] for m in mods},
        n_batches=n_batches,
    )


def make_batch(spec: DataSpec, n: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    """A hand-made dict batch in the data module's format."""
    g = torch.Generator().manual_seed(seed)
    out = {
        keys.INDEX: torch.arange(n),
        keys.BATCH: torch.randint(0, spec.n_batches, (n,), generator=g),
        keys.LABEL: torch.full((n,), -1),
    }
    for m in spec.modalities:
        f = spec.n_features[m]
        if spec.kinds[m] == "counts":
            counts = torch.poisson(torch.full((n, f), 3.0), generator=g)
            out[keys.counts_key(m)] = counts
            if spec.transforms[m] == "clr":
                log = torch.log1p(counts)
                out[m] = log - log.mean(1, keepdim=True)
            else:
                out[m] = torch.log1p(counts / counts.sum(1, keepdim=True).clamp_min(1) * 1e4)
        elif spec.kinds[m] == "binary":
            out[m] = (torch.rand(n, f, generator=g) < 0.2).float()
        else:
            out[m] = torch.randn(n, f, generator=g)
        out[keys.mask_key(m)] = torch.ones(n)
    return out


def drop(batch: dict, modality: str, cells: slice) -> dict:
    """Mark ``modality`` missing for ``cells`` (mask 0, zero rows), as the data module does."""
    batch = {k: v.clone() for k, v in batch.items()}
    batch[keys.mask_key(modality)][cells] = 0.0
    batch[modality][cells] = 0.0
    if keys.counts_key(modality) in batch:
        batch[keys.counts_key(modality)][cells] = 0.0
    return batch


# ---------------------------------------------------------------------------- divergences
def test_jeffreys_matches_torch_kl():
    g = torch.Generator().manual_seed(0)
    m1, m2 = torch.randn(10, 4, generator=g), torch.randn(10, 4, generator=g)
    v1, v2 = torch.rand(10, 4, generator=g) + 0.1, torch.rand(10, 4, generator=g) + 0.1
    p, q = Normal(m1, v1.sqrt()), Normal(m2, v2.sqrt())
    want = (kl_divergence(p, q) + kl_divergence(q, p)).sum(-1)
    torch.testing.assert_close(jeffreys_divergence(m1, v1, m2, v2), want)


def test_kl_standard_normal_matches_torch():
    g = torch.Generator().manual_seed(1)
    m, v = torch.randn(7, 3, generator=g), torch.rand(7, 3, generator=g) + 0.05
    want = kl_divergence(Normal(m, v.sqrt()), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(kl_standard_normal(m, v), want)


def test_mmd_matches_direct_formula():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, 3)), rng.normal(1.0, 1.0, size=(9, 3))
    pooled = np.vstack([x, y])
    d2 = ((pooled[:, None] - pooled[None]) ** 2).sum(-1)
    off = np.sort(d2[~np.eye(len(pooled), dtype=bool)])
    med = off[(len(off) - 1) // 2]  # lower median, as torch.median
    k = sum(np.exp(-d2 / (s * med)) for s in (0.25, 1.0, 4.0)) / 3
    want = k[:12, :12].mean() + k[12:, 12:].mean() - 2 * k[:12, 12:].mean()
    got = gaussian_mmd(torch.tensor(x), torch.tensor(y)).item()
    assert got == pytest.approx(want, rel=1e-6)
    same = torch.tensor(x)
    assert gaussian_mmd(same, same).item() == pytest.approx(0.0, abs=1e-7)


# ---------------------------------------------------------------------------- mixing
def test_masked_softmax_and_equal_mixing():
    w = masked_softmax(torch.zeros(3, 3), torch.tensor([[1, 1, 1], [1, 0, 1], [0, 0, 0.0]]))
    torch.testing.assert_close(w[0], torch.full((3,), 1 / 3))
    torch.testing.assert_close(w[1], torch.tensor([0.5, 0.0, 0.5]))
    torch.testing.assert_close(w[2], torch.full((3,), 1 / 3))  # no modality: finite
    means = torch.stack([torch.zeros(1, 2), torch.ones(1, 2)])
    variances = torch.stack([torch.full((1, 2), 1.0), torch.full((1, 2), 3.0)])
    mean, var = mix_posteriors(means, variances, torch.tensor([[0.5, 0.5]]))
    torch.testing.assert_close(mean, torch.full((1, 2), 0.5))
    torch.testing.assert_close(var, torch.full((1, 2), 4.0 / 2**0.5))  # scvi's sqrt rule


@pytest.mark.parametrize("weights", ["equal", "universal", "cell"])
def test_missing_modality_gets_the_other_posterior(weights):
    spec = make_spec(("rna", "atac"))
    model = MultiVI(spec, modality_weights=weights, n_cells=16).eval()
    with torch.no_grad():  # make learned weights non-trivial
        model.module.weight_logits.normal_()
    batch = drop(make_batch(spec), "atac", slice(0, 5))
    with torch.no_grad():
        means, variances = model.module.encode(batch)
        mean, var, _ = model.module.joint(batch, means, variances)
    torch.testing.assert_close(mean[:5], means["rna"][:5])
    torch.testing.assert_close(var[:5], variances["rna"][:5])
    # cells with both are a mix, not either posterior
    assert not torch.allclose(mean[5:], means["rna"][5:])
    # learned weights get finite gradients despite the missing modality
    model.train().module.loss(batch).loss.backward()
    if weights != "equal":
        assert torch.isfinite(model.module.weight_logits.grad).all()


def test_missing_modality_has_no_reconstruction_or_penalty():
    spec = make_spec()
    model = MultiVI(spec).eval()
    batch = drop(make_batch(spec), "atac", slice(0, 4))
    out = model.module.loss(batch)
    assert torch.all(out.terms["reconstruction_atac"][:4] == 0)
    assert torch.all(out.terms["reconstruction_atac"][4:] > 0)
    # the Jeffreys term of a cell only counts pairs it has: drop atac and ephys for 0..3
    batch2 = drop(batch, "ephys", slice(0, 4))
    means, variances = model.module.encode(batch2)
    per_cell, _ = model.module.penalty(means, variances, model.module.masks(batch2))
    assert torch.all(per_cell[:4] == 0) and torch.all(per_cell[4:] > 0)
    assert torch.isfinite(model.module.loss(batch2).loss)


# ---------------------------------------------------------------------------- decoders
def test_translate_uses_only_the_source():
    spec = make_spec(("rna", "atac", "ephys", "adt"))
    model = MultiVI(spec, protein_mixture=True).eval()
    batch = make_batch(spec)
    other = make_batch(spec, seed=1)
    for src, dst in zip(spec.modalities, spec.modalities[1:] + spec.modalities[:1], strict=True):
        mixed = {k: v for k, v in other.items() if k != src}
        mixed[src] = batch[src]  # only the source input is shared
        mixed[keys.BATCH] = batch[keys.BATCH]
        a = model.translate(batch, src, dst)
        b = model.translate(mixed, src, dst)
        torch.testing.assert_close(a, b)
        assert a.shape == (16, spec.n_features[dst])
    atac = model.translate(batch, "ephys", "atac")
    assert atac.min() >= 0 and atac.max() <= 1
    rna = model.translate(batch, "atac", "rna")
    torch.testing.assert_close(torch.expm1(rna).sum(1), torch.full((16,), 1e4))
    adt = model.translate(batch, "rna", "adt")
    torch.testing.assert_close(adt.mean(1), torch.zeros(16), atol=1e-5, rtol=0)
    joint = model.predict_from_joint(batch, "ephys")
    assert joint.shape == (16, 6)


@pytest.mark.parametrize(
    "kw", [{"gene_likelihood": "zinb", "library": "learned"}, {"modality_penalty": "mmd"}]
)
def test_options_give_finite_gradients(kw):
    spec = make_spec(("rna", "atac", "ephys", "adt"))
    model = MultiVI(spec, protein_mixture=True, **kw)
    out = model.module.loss(make_batch(spec), kl_weight=0.5)
    out.loss.backward()
    grads = [p.grad for p in model.module.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_default_sizes_follow_scvi_rules():
    kinds = {"rna": "counts", "atac": "binary"}
    tr = {"rna": "lognorm", "atac": "binarize"}
    assert default_sizes(kinds, {"rna": 1000, "atac": 2000}, tr, None, None) == (44, 6)
    assert default_sizes(kinds, {"rna": 1000, "atac": 50000}, tr, None, None) == (128, 11)
    assert default_sizes({"rna": "counts"}, {"rna": 400}, tr, None, None) == (20, 4)
    assert default_sizes(kinds, {"rna": 1000, "atac": 2000}, tr, 64, 10) == (64, 10)


# ---------------------------------------------------------------------------- adversary
def test_adversary_off_with_one_batch():
    model = MultiVI(make_spec(n_batches=1))
    assert model.adversary is None
    assert len(model.configure_optimizers()) == 1
    on = MultiVI(make_spec(n_batches=2))
    assert on.adversary is not None and len(on.configure_optimizers()) == 2
    assert not set(map(id, on.adversary.parameters())) & set(map(id, on.module.parameters()))


def test_adversary_losses_by_hand():
    adv = BatchAdversary(n_latent=3, n_batches=3).eval()
    z = torch.randn(5, 3)
    codes = torch.tensor([0, 1, 2, 0, 1])
    log_p = torch.log_softmax(adv.net(z), -1)
    true = -log_p[torch.arange(5), codes].mean()
    others = torch.ones(5, 3)
    others[torch.arange(5), codes] = 0
    fool = -(log_p * others / 2).sum(1).mean()
    torch.testing.assert_close(adv.loss(z, codes, fool=False), true)
    torch.testing.assert_close(adv.loss(z, codes, fool=True), fool)


def test_kl_warmup_is_linear_from_zero():
    assert [kl_warmup(e, 4) for e in (0, 1, 4, 9)] == [0.0, 0.25, 1.0, 1.0]
    assert kl_warmup(0, 0) == 1.0
    assert MultiVI(make_spec(), n_epochs_kl_warmup=4).kl_weight() == 0.0  # epoch 0


# ---------------------------------------------------------------------------- fit
def _trainer(**kw) -> L.Trainer:
    return L.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        **kw,
    )


def test_one_epoch_fit_and_checkpoint_round_trip(tiny_dm, tmp_path):
    model = build_model("multivi", tiny_dm.spec, modality_weights="cell", gradient_clip_val=10.0)
    # sized from the spec when built: a fit changes no hyper-parameter
    hparams = dict(model.hparams)
    assert hparams["n_cells"] == tiny_dm.data.n_cells
    before = model.module.encoders["rna"].mean.weight.detach().clone()
    adv_before = [p.detach().clone() for p in model.adversary.parameters()]
    trainer = _trainer()
    trainer.fit(model, datamodule=tiny_dm)
    assert not torch.equal(before, model.module.encoders["rna"].mean.weight)
    assert any(
        not torch.equal(a, p) for a, p in zip(adv_before, model.adversary.parameters(), strict=True)
    )
    assert np.isfinite(trainer.callback_metrics["val/loss"].item())
    assert "train/adversary" in trainer.callback_metrics
    assert model.module.weight_logits.shape == (tiny_dm.data.n_cells, 3)
    assert dict(model.hparams) == hparams

    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    # the data module's fitted transforms (numpy arrays) ride in the checkpoint
    loaded = MultiVI.load_from_checkpoint(path, weights_only=False).eval()
    model.eval()
    batch = tiny_dm.batch(tiny_dm.cells("test"))
    with torch.no_grad():
        torch.testing.assert_close(loaded.joint_latent(batch), model.joint_latent(batch))
        torch.testing.assert_close(
            loaded.translate(batch, "rna", "atac"), model.translate(batch, "rna", "atac")
        )
        z = model.latents(batch)
    assert set(z) == {"rna", "atac", "ephys"}
    assert z["rna"].shape == (len(batch[keys.INDEX]), model.module.n_latent)
    # a checkpoint from before the protein-rate flag loads as a trained model
    ckpt = torch.load(path, weights_only=False)
    del ckpt["state_dict"]["protein_rates_initialised"]
    torch.save(ckpt, tmp_path / "old.ckpt")
    old = MultiVI.load_from_checkpoint(tmp_path / "old.ckpt", weights_only=False)
    assert bool(old.protein_rates_initialised)


def test_config_lists_every_constructor_argument():
    path = Path(__file__).parents[2] / "mmint" / "conf" / "model" / "multivi.yaml"
    cfg = yaml.safe_load(path.read_text())
    assert cfg["name"] == MultiVI.name and {"max_epochs", "batch_size"} <= set(cfg)
    params = inspect.signature(MultiVI.__init__).parameters
    rest = {k: v for k, v in cfg.items() if k not in ("name", "max_epochs", "batch_size")}
    assert set(rest) == set(params) - {"self", "spec"}
    model = build_model("multivi", make_spec(), **rest)
    assert model.hparams["lr"] == cfg["lr"]


def test_protein_rates_start_at_the_training_mean_once():
    from mmint.data.spec import train_count_means
    from mmint.models.multivi.module import ProteinDecoder

    rng = np.random.default_rng(0)
    counts = rng.poisson(rng.uniform(5, 500, size=8), size=(30, 8)).astype(np.float32)
    counts[:10] = 1e6  # not training cells: must not enter the mean
    masks = np.ones(30, dtype=np.float32)
    masks[25:] = 0  # cells without adt: not in the mean either
    counts[25:] = 0
    spec = make_spec(("rna", "adt"), n_batches=1)
    spec.count_means = train_count_means({"adt": counts}, {"adt": masks}, np.arange(10, 30))
    model = MultiVI(spec, protein_mixture=True)
    model.setup("fit")
    dec = model.module.decoders["adt"]
    assert isinstance(dec, ProteinDecoder)
    expected = np.log(counts[10:25].mean(0))
    np.testing.assert_allclose(dec.log_rate.bias.detach().numpy(), expected, rtol=1e-5)
    assert bool(model.protein_rates_initialised)
    # the means are data, not hyper-parameters: checkpoints stay small
    assert model.hparams["spec"]["count_means"] == {}
    # a second fit of the trained model keeps its rates
    with torch.no_grad():
        dec.log_rate.bias.zero_()
    model.setup("fit")
    assert float(dec.log_rate.bias.abs().max()) == 0.0


def test_held_out_batch_gets_the_seen_batches_mix():
    spec = DataSpec(**{**make_spec().to_dict(), "train_batch_counts": [9, 0]})
    model = MultiVI(spec)
    cov = model.module.covariates({keys.BATCH: torch.tensor([0, 1])}, 2, torch.device("cpu"))
    torch.testing.assert_close(cov, torch.tensor([[1.0, 0.0], [1.0, 0.0]]))


def test_cell_weights_need_the_number_of_cells():
    from mmint.errors import InputError

    with pytest.raises(InputError, match="model.n_cells"):
        MultiVI(make_spec(), modality_weights="cell")
    assert MultiVI(make_spec(), modality_weights="cell", n_cells=7).module.weight_logits.shape == (
        7,
        3,
    )

"""Tests of the CVQVAE-style model: losses, codebooks, missing modalities, fit, checkpoints."""

from __future__ import annotations

import inspect
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from mmint.data.spec import DataSpec
from mmint.keys import BATCH, INDEX, LABEL, mask_key
from mmint.models import build_model
from mmint.models.cvqvae import CVQVAE, CVQVAEModule, InputProjection
from mmint.models.cvqvae.config import Networks

MODS = {"rna": ("counts", 12), "atac": ("binary", 15), "ephys": ("continuous", 4)}
SMALL = {"hidden": [16], "n_latent": 4, "n_codes": 32}
CONFIG = Path(__file__).resolve().parents[2] / "mmint" / "conf" / "model" / "cvqvae.yaml"


def make_spec(mods: dict = MODS) -> DataSpec:
    return DataSpec(
        modalities=list(mods),
        kinds={m: k for m, (k, _) in mods.items()},
        n_features={m: p for m, (_, p) in mods.items()},
        transforms={m: "none" for m in mods},
        n_batches=2,
        input_variance={m: 0.5 + i for i, m in enumerate(mods)},
    )


def make_batch(spec: DataSpec, n: int = 16, seed: int = 0, missing: dict | None = None) -> dict:
    """A hand-made batch; ``missing = {modality: row indices lacking it}`` (rows zeroed)."""
    g = torch.Generator().manual_seed(seed)
    batch = {INDEX: torch.arange(n), BATCH: torch.arange(n) % 2, LABEL: torch.zeros(n).long()}
    for m in spec.modalities:
        p = spec.n_features[m]
        x = torch.rand(n, p, generator=g)
        batch[m] = (x > 0.5).float() if spec.kinds[m] == "binary" else x * 3
        batch[mask_key(m)] = torch.ones(n)
    for m, rows in (missing or {}).items():
        batch[m][rows] = 0.0
        batch[mask_key(m)][rows] = 0.0
    return batch


def split(batch: dict, spec: DataSpec) -> tuple[dict, dict]:
    return {m: batch[m] for m in spec.modalities}, {m: batch[mask_key(m)] for m in spec.modalities}


def trainer(**kw) -> L.Trainer:
    return L.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        **kw,
    )


def _group(out, group: str) -> dict:
    """``{name without the group prefix: term}`` of one group of a CVQVAE loss."""
    prefix = f"{group}_"
    return {k[len(prefix) :]: v for k, v in out.terms.items() if k.startswith(prefix)}


# ---------------------------------------------------------------------- losses and gradients
def test_every_encoder_and_decoder_gets_gradient_with_three_modalities():
    torch.manual_seed(0)
    spec = make_spec()
    module = CVQVAEModule(
        Networks(spec.modalities, spec.n_features, spec.kinds, {}, **SMALL)
    ).train()
    out = module.loss_of_inputs(*split(make_batch(spec), spec))
    mods = spec.modalities
    assert set(_group(out, "recon")) == {f"{s}_to_{d}" for s in mods for d in mods if s != d}
    assert set(_group(out, "align")) == {"rna_atac", "rna_ephys", "atac_ephys"}
    out.loss.backward()
    for part in ("encoders", "decoders"):
        for m, net in getattr(module, part).items():
            grads = [p.grad for p in net.parameters()]
            assert all(g is not None for g in grads), (part, m)
            assert sum(float(g.abs().sum()) for g in grads) > 0, (part, m)


def test_each_direction_uses_the_decoder_of_its_target():
    # the original decoded both directions with one decoder; here src -> dst uses decoders[dst]
    torch.manual_seed(0)
    spec = make_spec({"rna": ("counts", 6), "atac": ("binary", 5)})
    module = CVQVAEModule(
        Networks(spec.modalities, spec.n_features, spec.kinds, {}, **SMALL)
    ).train()
    out = module.loss_of_inputs(*split(make_batch(spec), spec))
    out.terms["recon_rna_to_atac"].backward()
    assert all(p.grad is not None for p in module.decoders["atac"].parameters())
    assert all(p.grad is None for p in module.decoders["rna"].parameters())
    assert module.decoders["atac"].net[-2].out_features == 5


def test_total_loss_is_recon_plus_commitment_plus_weighted_alignment():
    torch.manual_seed(0)
    spec = make_spec()
    module = CVQVAEModule(
        Networks(spec.modalities, spec.n_features, spec.kinds, spec.input_variance, **SMALL)
    )
    module.eval()
    x, masks = split(make_batch(spec), spec)
    with torch.no_grad():
        out = module.loss_of_inputs(x, masks)
        z = {m: module.encoders[m](x[m]) for m in spec.modalities}
        codes = {m: module.quantizers[m].codebook[module.quantizers[m].nearest(z[m])] for m in z}
    manual = F.mse_loss(module.decoders["atac"](codes["rna"]), x["atac"]) / 1.5
    assert out.terms["recon_rna_to_atac"].item() == pytest.approx(manual.item(), rel=1e-5)
    commit = 0.25 * F.mse_loss(z["ephys"], codes["ephys"])
    assert out.terms["commitment_ephys"].item() == pytest.approx(commit.item(), rel=1e-5)
    assert out.terms["align_rna_ephys"].item() == pytest.approx(
        F.mse_loss(z["rna"], z["ephys"]).item(), rel=1e-5
    )
    recon, commitment = _group(out, "recon"), _group(out, "commitment")
    expected = sum(recon.values()) + sum(commitment.values())
    expected = expected + 10.0 * sum(_group(out, "align").values())
    assert out.loss.item() == pytest.approx(float(expected), rel=1e-6)
    # the logged group sums are the unweighted sums of their terms
    assert out.extras["recon"].item() == pytest.approx(float(sum(recon.values())), rel=1e-6)
    assert set(out.extras) == {"recon", "align", "commitment"} | {
        f"perplexity_{m}" for m in spec.modalities
    }


def test_codebooks_move_by_ema_in_training_only():
    torch.manual_seed(0)
    spec = make_spec()
    model = CVQVAE(spec, **SMALL)
    batch = make_batch(spec)
    assert all(list(q.parameters()) == [] for q in model.module.quantizers.values())
    model.eval()
    before = model.module.quantizers["rna"].codebook.clone()
    model.module.loss_of_inputs(*split(batch, spec))
    model.translate(batch, "rna", "atac")
    assert torch.equal(model.module.quantizers["rna"].codebook, before)
    model.train()
    model.module.loss_of_inputs(*split(batch, spec))
    assert int(model.module.quantizers["rna"].ema_steps) == 1
    assert not torch.equal(model.module.quantizers["rna"].codebook, before)


def test_self_recon_adds_the_diagonal_pairs():
    spec = make_spec()
    module = CVQVAEModule(
        Networks(spec.modalities, spec.n_features, spec.kinds, {}, self_recon=True, **SMALL)
    )
    out = module.train().loss_of_inputs(*split(make_batch(spec), spec))
    assert len(_group(out, "recon")) == 9 and "atac_to_atac" in _group(out, "recon")


def test_vq_false_is_the_cvae_ablation():
    torch.manual_seed(0)
    spec = make_spec()
    model = CVQVAE(spec, vq=False, **SMALL).eval()
    batch = make_batch(spec)
    out = model.module.loss_of_inputs(*split(batch, spec))
    assert len(model.module.quantizers) == 0 and _group(out, "commitment") == {}
    assert not any(k.startswith("perplexity") for k in out.extras)
    with torch.no_grad():
        z = model.latents(batch)["rna"]
        direct = model.module.decoders["ephys"](z)
        assert torch.allclose(model.translate(batch, "rna", "ephys"), direct)


def test_bce_option_uses_logits_for_binary_targets():
    torch.manual_seed(0)
    spec = make_spec()
    model = CVQVAE(spec, recon_loss="bce", **SMALL).eval()
    batch = make_batch(spec)
    x, masks = split(batch, spec)
    with torch.no_grad():
        out = model.module.loss_of_inputs(x, masks)
        code = model.module.code("rna", model.latents(batch)["rna"], update=False)[0]
        logits = model.module.decoders["atac"](code)
        pred = model.translate(batch, "rna", "atac")
    bce = F.binary_cross_entropy_with_logits(logits, x["atac"])
    assert out.terms["recon_rna_to_atac"].item() == pytest.approx(bce.item(), rel=1e-5)
    assert torch.allclose(pred, torch.sigmoid(logits))
    with pytest.raises(ValueError, match="bce"):
        CVQVAE(spec, recon_loss="bce", input_rep="pca")


# -------------------------------------------------------------------------- missing modalities
def test_missing_modality_is_skipped_by_encoder_codebook_and_losses():
    torch.manual_seed(0)
    spec = make_spec()
    model = CVQVAE(spec, **SMALL)
    lack = [0, 1, 2, 3, 4]
    batch = make_batch(spec, missing={"atac": lack})
    noisy = {k: v.clone() for k, v in batch.items()}
    noisy["atac"][lack] = torch.rand(len(lack), 15)  # garbage in rows that lack atac

    model.eval()
    with torch.no_grad():
        z = model.latents(batch)
        assert torch.equal(z["atac"][lack], torch.zeros(len(lack), 4))
        assert torch.allclose(z["atac"], model.latents(noisy)["atac"])
        joint = model.joint_latent(batch)
        assert torch.allclose(joint[lack], (z["rna"][lack] + z["ephys"][lack]) / 2, atol=1e-6)
        assert torch.allclose(joint[5:], (z["rna"] + z["atac"] + z["ephys"])[5:] / 3, atol=1e-6)
        loss, loss_noisy = (
            model.module.loss_of_inputs(*split(batch, spec)),
            model.module.loss_of_inputs(*split(noisy, spec)),
        )
        assert loss.loss.item() == pytest.approx(loss_noisy.loss.item(), rel=1e-6)
        both = torch.arange(5, 16)
        manual = F.mse_loss(z["rna"][both], z["atac"][both])
        assert loss.terms["align_rna_atac"].item() == pytest.approx(manual.item(), rel=1e-5)

    model.train()
    model.module.loss_of_inputs(*split(batch, spec))
    # first EMA step: bias-corrected cluster sizes are the counts of the observed rows only
    assert model.module.quantizers["atac"].cluster_size.sum().item() == pytest.approx(11.0)
    assert model.module.quantizers["rna"].cluster_size.sum().item() == pytest.approx(16.0)


def test_batch_without_a_modality_drops_its_terms():
    torch.manual_seed(0)
    spec = make_spec()
    model = CVQVAE(spec, **SMALL).train()
    batch = make_batch(spec, missing={"atac": list(range(16))})
    out = model.module.loss_of_inputs(*split(batch, spec))
    assert all("atac" not in name for name in out.terms)
    out.loss.backward()
    assert all(p.grad is None for p in model.module.encoders["atac"].parameters())
    # a modality seen in one cell only is dropped in training (BatchNorm needs two rows)
    one = make_batch(spec, missing={"atac": list(range(1, 16))})
    assert "commitment_atac" not in model.module.loss_of_inputs(*split(one, spec)).terms


# ------------------------------------------------------------------------------- interface
def test_interface_shapes_and_ranges():
    torch.manual_seed(0)
    spec = make_spec()
    model = CVQVAE(spec, **SMALL).eval()
    batch = make_batch(spec)
    with torch.no_grad():
        assert {m: z.shape for m, z in model.latents(batch).items()} == {
            m: torch.Size([16, 4]) for m in spec.modalities
        }
        assert model.joint_latent(batch).shape == (16, 4)
        for src in spec.modalities:
            for dst in spec.modalities:
                pred = model.translate(batch, src, dst)
                assert pred.shape == (16, spec.n_features[dst])
                if dst == "atac":
                    assert pred.min() >= 0 and pred.max() <= 1
        hook = model.translator("rna", "ephys")
        assert torch.allclose(hook(batch["rna"]), model.translate(batch, "rna", "ephys"))
        cond = CVQVAE(spec, decoder_batch=True, **SMALL).eval()
        batch[BATCH] = torch.ones(16).long()
        hook = cond.translator("atac", "rna", batch_code=1)
        assert torch.allclose(hook(batch["atac"]), cond.translate(batch, "atac", "rna"))
        # batch 1 without training cells: decoded as the seen batch 0
        held = DataSpec(**{**spec.to_dict(), "n_batches": 2, "train_batch_counts": [9, 0]})
        cond = CVQVAE(held, decoder_batch=True, **SMALL).eval()
        as_seen = cond.translator("atac", "rna", batch_code=0)
        assert torch.allclose(as_seen(batch["atac"]), cond.translate(batch, "atac", "rna"))
    assert build_model("cvqvae", spec, **SMALL).name == "cvqvae"


def test_input_projection_matches_numpy_pca():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 8)) @ rng.normal(size=(8, 8))
    proj = InputProjection(8, 3)
    proj.fit(torch.tensor(x, dtype=torch.float32))
    xc = x - x.mean(0)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    comp = proj.components.double().numpy()
    assert np.allclose(np.abs(comp.T @ vt[:3].T), np.eye(3), atol=1e-4)
    scores = proj(torch.tensor(x, dtype=torch.float32)).double().numpy()
    assert np.allclose(scores.var(0, ddof=1), s[:3] ** 2 / 59, rtol=1e-3)
    assert proj.variance.item() == pytest.approx((scores**2).mean(), rel=1e-4)
    full = InputProjection(8, 8)
    full.fit(torch.tensor(x, dtype=torch.float32))
    back = full.inverse(full(torch.tensor(x, dtype=torch.float32)))
    assert np.allclose(back.numpy(), x, atol=1e-3)


def test_config_lists_every_constructor_argument():
    cfg = yaml.safe_load(CONFIG.read_text())
    assert cfg.pop("name") == "cvqvae"
    assert isinstance(cfg.pop("max_epochs"), int) and isinstance(cfg.pop("batch_size"), int)
    params = inspect.signature(CVQVAE.__init__).parameters
    assert set(cfg) == {k for k in params if k not in ("self", "spec")}
    model = build_model("cvqvae", make_spec(), **cfg)
    assert model.hparams.input_rep == cfg["input_rep"] and model.hparams.lr == cfg["lr"]


# --------------------------------------------------------------------------- fit and reload
@pytest.mark.parametrize("vq", [True, False])
def test_one_epoch_fit_on_tiny_data(tiny_dm, vq):
    L.seed_everything(0, verbose=False)
    model = CVQVAE(tiny_dm.spec, vq=vq, **SMALL)
    tr = trainer()
    tr.fit(model, datamodule=tiny_dm)
    logged = tr.callback_metrics
    assert np.isfinite(float(logged["val/loss"])) and np.isfinite(float(logged["train/loss"]))
    for m in tiny_dm.modalities:
        assert (f"train/perplexity_{m}" in logged) is vq
        assert (f"train/dead_codes_{m}" in logged) is vq
    if vq:
        assert 1.0 <= float(logged["train/perplexity_rna"]) <= 32.0


def test_pca_input_is_fitted_at_fit_start(tiny_dm):
    L.seed_everything(0, verbose=False)
    model = CVQVAE(tiny_dm.spec, input_rep="pca", n_pca=5, **SMALL)
    trainer().fit(model, datamodule=tiny_dm)
    assert all(bool(p.fitted) for p in model.module.projections.values())
    assert model.module.encoders["atac"].net[0].in_features == 5
    batch = tiny_dm.batch(tiny_dm.cells("test"))
    model.eval()
    with torch.no_grad():
        pred = model.translate(batch, "rna", "atac")
    assert pred.shape == (len(tiny_dm.cells("test")), tiny_dm.spec.n_features["atac"])
    assert pred.min() >= 0 and pred.max() <= 1


def test_checkpoint_round_trip(tiny_dm, tmp_path):
    L.seed_everything(0, verbose=False)
    model = CVQVAE(tiny_dm.spec, input_rep="pca", n_pca=5, decoder_batch=True, **SMALL)
    tr = trainer()
    tr.fit(model, datamodule=tiny_dm)
    path = tmp_path / "m.ckpt"
    tr.save_checkpoint(path)
    loaded = CVQVAE.load_from_checkpoint(path).eval()
    model.eval()
    batch = tiny_dm.batch(tiny_dm.cells("test"))
    with torch.no_grad():
        assert torch.equal(loaded.joint_latent(batch), model.joint_latent(batch))
        assert torch.equal(
            loaded.translate(batch, "atac", "rna"), model.translate(batch, "atac", "rna")
        )
    q, q2 = model.module.quantizers["rna"], loaded.module.quantizers["rna"]
    assert torch.equal(q.codebook, q2.codebook) and int(q2.ema_steps) == int(q.ema_steps) > 0
    assert loaded.hparams.decoder_batch is True and loaded.spec == tiny_dm.spec.__class__.from_any(
        tiny_dm.spec.to_dict()
    )

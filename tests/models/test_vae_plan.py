"""The VAE-style models share one plan (:mod:`mmint.models.vae_plan`) and one module
signature, ``module.loss(batch, **kw) -> LossOutput``."""

from __future__ import annotations

import inspect

import pytest
import torch

from mmint.models import build_model
from mmint.models.inputs import step_inputs
from mmint.models.loss_output import LossOutput
from mmint.models.vae_plan import VAEPlan

from .test_multivi import make_batch, make_spec


@pytest.mark.parametrize("name", ["multivi", "cvqvae"])
def test_both_models_run_on_the_shared_plan_with_one_loss_signature(name):
    model = build_model(name, make_spec())
    assert isinstance(model, VAEPlan)
    params = inspect.signature(model.module.loss).parameters
    assert list(params)[0] == "batch" and any(p.kind is p.VAR_KEYWORD for p in params.values())
    torch.manual_seed(0)
    out = model.module.train().loss(make_batch(model.spec))
    assert isinstance(out, LossOutput) and out.loss.ndim == 0 and out.loss.requires_grad


def test_cvqvae_loss_of_a_batch_is_the_loss_of_its_inputs():
    model = build_model("cvqvae", make_spec(), n_latent=4, hidden=[8], n_codes=8).eval()
    batch = make_batch(model.spec)
    x, masks = step_inputs(batch, model.modalities)
    with torch.no_grad():
        got = model.module.loss(batch)
        want = model.module.loss_of_inputs(x, masks, batch["batch"])
    assert torch.equal(got.loss, want.loss) and sorted(got.terms) == sorted(want.terms)


def test_the_multivi_kl_weight_is_warmed_up_in_training_and_one_in_validation():
    model = build_model("multivi", make_spec(), n_epochs_kl_warmup=4)
    assert model.loss_kwargs("val") == {"kl_weight": 1.0}
    assert model.loss_kwargs("train") == {"kl_weight": 0.0}  # epoch 0 of 4
    assert build_model("cvqvae", make_spec()).loss_kwargs("train") == {}

"""The pieces every trainable model shares: loss output, step inputs, batch adversary,
hyper-parameters, the manual step."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from mmint import keys
from mmint.models.adversary import classifier_loss, fool_loss
from mmint.models.hparams import constructor_args
from mmint.models.inputs import batch_size, step_inputs
from mmint.models.loss_output import LossOutput
from mmint.nn.batch import BatchAdversary

from .test_multivi import make_spec

ROOT = Path(__file__).resolve().parents[2]


def test_loss_output_logs_the_total_term_means_and_extras():
    out = LossOutput(
        torch.tensor(3.0),
        {"reconstruction": torch.tensor([1.0, 2.0, 6.0]), "penalty": torch.tensor(0.5)},
        {"perplexity": torch.tensor(7.0)},
        {"z": torch.zeros(3, 2)},
    )
    logged = out.logged()
    assert {k: float(v) for k, v in logged.items()} == {
        "loss": 3.0,
        "reconstruction": 3.0,
        "penalty": 0.5,
        "perplexity": 7.0,
    }
    assert "loss" not in out.logged(total=False) and "z" not in logged


def test_step_inputs_densify_and_fill_missing_masks():
    x = torch.tensor([[0.0, 2.0], [1.0, 0.0], [0.0, 0.0]])
    batch = {
        "a": x.to_sparse_csr(),
        "b": x.double(),
        keys.mask_key("b"): torch.tensor([1, 0, 1], dtype=torch.int64),
        keys.INDEX: torch.arange(3),
    }
    inputs, masks = step_inputs(batch, ["a", "b"])
    assert inputs["a"].layout == torch.strided and torch.equal(inputs["a"], x)
    assert inputs["b"].dtype == torch.float32
    assert masks["a"].tolist() == [1.0, 1.0, 1.0] and masks["b"].tolist() == [1.0, 0.0, 1.0]
    assert masks["b"].dtype == torch.float32
    kept, _ = step_inputs(batch, ["a"], keep_sparse=True)
    assert kept["a"].layout == torch.sparse_csr
    wide, wide_masks = step_inputs(batch, ["b"], dtype=torch.float64)
    assert wide["b"].dtype == torch.float64 == wide_masks["b"].dtype
    assert batch_size(batch, ["a"]) == 3 and batch_size({"a": x}, ["a"]) == 3


def test_adversary_losses_against_a_hand_computation():
    torch.manual_seed(0)
    adv = BatchAdversary(4, 3).eval()
    z = {"a": torch.randn(6, 4), "b": torch.randn(6, 4)}
    codes = torch.tensor([0, 1, 2, 0, 1, 2])
    masks = {"a": torch.ones(6), "b": torch.tensor([1.0, 1, 0, 0, 0, 0])}

    def hand(rows, c, fool):
        logp = torch.log_softmax(adv.net(rows), 1)
        target = torch.nn.functional.one_hot(c, 3).float()
        target = (1 - target) / 2 if fool else target
        return -(logp * target).sum(1).mean()

    obs = masks["b"] > 0
    want = (hand(z["a"], codes, True) + hand(z["b"][obs], codes[obs], True)) / 2
    torch.testing.assert_close(fool_loss(adv, z, codes, masks), want)
    rows = torch.cat([z["a"], z["b"][obs]])
    want = hand(rows, torch.cat([codes, codes[obs]]), False)
    torch.testing.assert_close(classifier_loss(adv, z, codes, masks), want)
    # one latent tensor: the plain losses; too few rows: no loss
    torch.testing.assert_close(fool_loss(adv, z["a"], codes), hand(z["a"], codes, True))
    assert fool_loss(adv, z["a"][:1], codes[:1]) is None
    assert classifier_loss(adv, z["a"][:1], codes[:1]) is None
    # the classifier's loss never reaches the latents
    za = z["a"].clone().requires_grad_()
    classifier_loss(adv, za, codes).backward()
    assert za.grad is None


def test_constructor_args_take_the_signature_in_order():
    class Model:
        def __init__(self, spec, b: int = 1, a: int = 2) -> None:
            pass

    assert list(constructor_args(Model, {"a": 5, "b": 6, "spec": 0, "x": 1})) == ["b", "a"]


@pytest.mark.parametrize("name", ["multivi", "cvqvae", "unitednet"])
def test_every_trainable_model_saves_spec_and_constructor_args_the_same_way(name):
    from mmint.models import model_class

    cls = model_class(name)
    model = cls(make_spec(), **({"n_groups": 3} if name == "unitednet" else {}))
    args = constructor_args(cls, {k: None for k in model.hparams})
    assert list(model.hparams) == ["spec", *args]
    assert model.hparams["spec"]["modalities"] == ["rna", "atac", "ephys"]


def test_scripts_do_not_patch_model_or_data_module_internals():
    target = r"\w+\.(hparams|transforms)(\[[^]]+\]|\.\w+)?"
    pattern = re.compile(target + r"\s*=(?!=)")
    offenders = [
        f"{path.relative_to(ROOT)}:{i}"
        for folder in ("experiments", "benchmarks")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line.split("#")[0])
    ]
    assert offenders == []


@pytest.mark.parametrize(
    "name",
    ["pca", "knn_transfer", "wnn", "mofa", "svd_ridge", "scvi_multivi", "scvi_totalvi"],
)
def test_models_fitted_outside_lightning_record_their_constructor_args(name):
    from mmint.models import model_class

    cls = model_class(name)
    model = cls(make_spec(), seed=3)
    assert list(model.hparams) == list(constructor_args(cls, {k: 0 for k in model.hparams}))
    assert model.hparams["seed"] == 3
    # the saved form rebuilds the same model
    assert cls(model.spec, **model.hparams).hparams == model.hparams

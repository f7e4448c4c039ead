"""Walk ``docs/architecture.md``'s "Adding a model" checklist once with a toy model defined
here (a linear encoder and decoder per modality), so that the checklist stays true: each step
below names the checklist item it follows, and the model then fits through ``mmint fit``,
reloads from its checkpoint, answers the explain hooks and refuses a bad setting."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import yaml
from torch import Tensor, nn

from mmint import keys
from mmint.config import SHIPPED
from mmint.data.spec import DataSpec
from mmint.errors import InputError
from mmint.explain.subnets import translator
from mmint.fit import run_fit
from mmint.models import MODELS, build_model, model_class
from mmint.models.base import Batch, IntegratorModule
from mmint.models.hparams import constructor_args, save_hparams
from mmint.models.inputs import batch_size, step_inputs
from mmint.models.loss_output import LossOutput, log_loss_output
from mmint.models.stepping import manual_step

from .configs import model_config
from .contract import TRI
from .test_model_configs import drifts


# 1. the pure network, the plan (an IntegratorModule logging val/loss) and the interface
class Toy(IntegratorModule):
    """A linear autoencoder per modality; the joint latent is the mean over observed ones.

    Parameters
    ----------
    spec
        The data the model is built for.
    latent_dim
        Width of every latent.
    lr
        Adam learning rate (positive).
    """

    name = "toy"

    def __init__(self, spec: DataSpec | dict, latent_dim: int = 4, lr: float = 0.01) -> None:
        super().__init__(spec)
        if lr <= 0:  # 5. a bad setting is an InputError
            raise InputError(f"lr must be positive, got {lr}", "model.lr", "set model.lr > 0")
        save_hparams(self, constructor_args(Toy, locals()))  # 4.
        n = self.spec.n_features
        self.encoders = nn.ModuleDict({m: nn.Linear(n[m], latent_dim) for m in self.modalities})
        self.decoders = nn.ModuleDict({m: nn.Linear(latent_dim, n[m]) for m in self.modalities})

    def loss(self, batch: Batch) -> LossOutput:
        """Mean squared error of every ``src -> dst`` path on the cells that have both."""
        x, masks = step_inputs(batch, self.modalities, dtype=self.dtype)
        terms = {}
        for s in self.modalities:
            z = self.encoders[s](x[s])
            for d in self.modalities:
                both = masks[s] * masks[d]
                err = ((self.decoders[d](z) - x[d]) ** 2).mean(1)
                terms[f"{s}_to_{d}"] = (err * both).sum() / both.sum().clamp_min(1)
        return LossOutput(sum(terms.values()), terms)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams["lr"])

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        out = self.loss(batch)
        manual_step(self, self.optimizers(), out.loss)
        log_loss_output(self, "train", out, batch_size(batch, self.modalities))
        return out.loss.detach()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        log_loss_output(self, "val", self.loss(batch), batch_size(batch, self.modalities))

    def latents(self, batch: Batch) -> dict[str, Tensor]:
        x, _ = step_inputs(batch, self.modalities, dtype=self.dtype)
        return {m: self.encoders[m](x[m]) for m in self.modalities}

    def joint_latent(self, batch: Batch) -> Tensor:
        _, masks = step_inputs(batch, self.modalities, dtype=self.dtype)
        z, w = self.latents(batch), torch.stack([masks[m] for m in self.modalities], 1)
        stacked = torch.stack([z[m] for m in self.modalities], 1)
        return (stacked * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp_min(1)

    def translate(self, batch: Batch, src: str, dst: str) -> Tensor:
        x, _ = step_inputs(batch, [src], dtype=self.dtype)
        return self.decoders[dst](self.encoders[src](x[src]))

    def translator(self, src: str, dst: str, batch_code: int = 0) -> nn.Module:
        return nn.Sequential(self.encoders[src], self.decoders[dst])


@pytest.fixture
def toy_registered(monkeypatch, tmp_path):
    """2. registered in MODELS; 3. its YAML in a copy of the config tree."""
    monkeypatch.setitem(MODELS, "toy", f"{__name__}:Toy")
    conf = tmp_path / "conf"
    shutil.copytree(SHIPPED, conf)
    cfg = {"name": "toy", "max_epochs": 3, "batch_size": 64, "latent_dim": 4, "lr": 0.01}
    (conf / "model" / "toy.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    monkeypatch.setenv("MMINT_CONFIG_DIR", str(conf))
    return conf


def test_the_checklist_holds_for_a_toy_model(toy_registered, tmp_path):
    assert model_class("toy") is Toy
    # 3. every constructor argument in the YAML with its default (the registry's check)
    assert drifts("toy", model_config("toy")) == []
    assert drifts("toy", {**model_config("toy"), "lr": 0.1}) == ["lr: YAML 0.1 != default 0.01"]
    # 6. one fit through `mmint fit`, writing the run directory of the contracts
    run = tmp_path / "run"
    metrics = run_fit(model_config_fit(), run)
    for name in ("config.yaml", "split.json", "metrics.json", "outputs.h5mu", "curves.csv"):
        assert (run / name).exists(), name
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["status"] == "ok" and saved["model"] == "toy" and saved["epochs"] == 3
    assert set(saved["r2"]) == {"rna", "atac", "ephys"} and np.isfinite(metrics["ari"])
    # 4. the checkpoint rebuilds the model without the data
    best = Toy.load_from_checkpoint(run / "checkpoints" / "best.ckpt", map_location="cpu")
    assert best.hparams["latent_dim"] == 4 and best.spec.modalities == ["rna", "atac", "ephys"]
    # the explain hook is the model's own translate, through mmint.explain
    g = torch.Generator().manual_seed(0)
    batch = {m: torch.randn(5, best.spec.n_features[m], generator=g) for m in best.modalities}
    with torch.no_grad():
        got = translator(best, "rna", "ephys")(batch["rna"])
        torch.testing.assert_close(got, best.translate(batch, "rna", "ephys"))
    assert best.group_network() is None and best.group_count() is None


def model_config_fit() -> dict:
    from mmint.cli import compose

    return compose("fit", ["model=toy", *TRI])


def test_the_toy_refuses_a_bad_setting(toy_registered):
    spec = DataSpec(
        modalities=["a", "b"],
        kinds={"a": "continuous", "b": "continuous"},
        n_features={"a": 3, "b": 2},
        transforms={"a": "standardize", "b": "standardize"},
    )
    with pytest.raises(
        InputError, match=r"^lr must be positive, got 0.0 \(model.lr\) - set model.lr > 0$"
    ):
        build_model("toy", spec, lr=0.0)
    batch = {"a": torch.ones(2, 3), "b": torch.zeros(2, 2), keys.mask_key("b"): torch.ones(2)}
    assert build_model("toy", spec).joint_latent(batch).shape == (2, 4)

"""Tiny specs, batches, a trainer and a Trainer-free step harness for the UnitedNet tests."""

from __future__ import annotations

import lightning as L
import torch

from mmint import keys
from mmint.data.spec import DataSpec
from mmint.models.unitednet import UnitedNet

N_FEATURES = {"rna": 12, "atac": 10, "ephys": 6}


def _spec(labels: bool = True) -> DataSpec:
    return DataSpec(
        modalities=["rna", "atac", "ephys"],
        kinds={"rna": "counts", "atac": "binary", "ephys": "continuous"},
        n_features=dict(N_FEATURES),
        transforms={"rna": "lognorm", "atac": "binarize", "ephys": "standardize"},
        n_batches=2,
        label_names=["a", "b", "c"] if labels else [],
        train_label_counts=[10, 5, 5] if labels else [],
        n_train=20,
    )


def _batch(n: int = 16, seed: int = 0, labels: list[int] | None = None) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {
        "rna": torch.log1p(torch.poisson(torch.full((n, 12), 2.0), generator=g)),
        "atac": (torch.rand(n, 10, generator=g) > 0.7).float(),
        "ephys": torch.randn(n, 6, generator=g),
        keys.INDEX: torch.arange(n),
        keys.BATCH: torch.zeros(n, dtype=torch.long),
        keys.LABEL: torch.tensor(labels) if labels is not None else torch.arange(n) % 3,
    }
    for m in N_FEATURES:
        out[keys.mask_key(m)] = torch.ones(n)
    return out


def _detached(model: UnitedNet) -> UnitedNet:
    """Run the plan's steps without a Trainer (plain backward, real norm clipping)."""
    opts = model.configure_optimizers()
    model.optimizers = lambda: opts  # type: ignore[method-assign]
    model.manual_backward = lambda loss: loss.backward()  # type: ignore[method-assign]

    def clip(opt, gradient_clip_val, gradient_clip_algorithm):
        params = [p for group in opt.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)

    model.clip_gradients = clip  # type: ignore[method-assign]
    model.log = lambda *a, **k: None  # type: ignore[method-assign]
    model.train()
    return model


def _trainer(**kw) -> L.Trainer:
    args = dict(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    return L.Trainer(**{**args, **kw})

"""One training step through sparse batches (sparse first layers, sparse Bernoulli targets,
sparse PCA projection) gives the dense path's gradients within 1e-5, and the trained model's
outputs on sparse batches are its outputs on dense ones within 1e-5.

Outputs are compared on one model: after an Adam step, two models whose gradients agree to
float rounding may still differ by up to twice the learning rate in a bias whose gradient is
zero up to rounding (a bias before a normalisation): Adam divides the gradient by its own size.

In float64 the paths agree to 1e-9 of the tolerance (the same arithmetic, summed in another
order); in float32 (how models train) the MultiVI-style step's gradients differ by up to
1.3e-5 relative (sums with cancellation in the count decoder), so the float32 check allows
1e-4 relative.
"""

from __future__ import annotations

import lightning as L
import pytest
import torch

from mmint.models import build_model

from .golden.step_reference import MODELS, datamodule, train_one_step

CASES = {
    "multivi": MODELS["multivi"],
    "cvqvae_features": MODELS["cvqvae"],
    "cvqvae_pca": dict(MODELS["cvqvae"], input_rep="pca", n_pca=5),
}


def _step(name: str, sparse: bool, precision: str = "32-true"):
    """The gradients of one training step, the trained model and its data module."""
    torch.set_num_threads(1)
    L.seed_everything(0, verbose=False)
    dm = datamodule()
    dm.sparse_batches, dm.sparse_min_features = sparse, 1  # every sparse modality sparse
    model = build_model(name.split("_")[0], dm.spec, **CASES[name])
    return train_one_step(model, dm, precision), model, dm


def _outputs(model, dm, sparse: bool) -> dict[str, torch.Tensor]:
    """Latents and translations of the val cells, their batch sparse or dense."""
    model.eval()
    batch = dm.batch(dm.cells("val"), sparse)
    batch = {k: v.to(model.dtype) if v.is_floating_point() else v for k, v in batch.items()}
    assert batch["atac"].layout == (torch.sparse_csr if sparse else torch.strided)
    out = {}
    with torch.no_grad():
        out["joint"] = model.joint_latent(batch)
        for m, z in model.latents(batch).items():
            out[f"latent/{m}"] = z
        out["translate/rna->ephys"] = model.translate(batch, "rna", "ephys")
        out["translate/ephys->atac"] = model.translate(batch, "ephys", "atac")
    return out


#: (precision, relative tolerance of the gradients)
PRECISIONS = {"64-true": 1e-5, "32-true": 1e-4}


@pytest.mark.parametrize("precision", sorted(PRECISIONS))
@pytest.mark.parametrize("name", sorted(CASES))
def test_sparse_step_matches_dense(name, precision):
    dense, model, dm = _step(name, False, precision)
    sparse, _, _ = _step(name, True, precision)
    assert sorted(sparse) == sorted(dense) and len(dense) > 4
    rtol = PRECISIONS[precision]
    for key, value in dense.items():
        assert value.dtype == (torch.float64 if precision == "64-true" else torch.float32)
        torch.testing.assert_close(sparse[key], value, rtol=rtol, atol=1e-5, msg=key)
    want, got = _outputs(model, dm, False), _outputs(model, dm, True)
    assert sorted(got) == sorted(want)
    for key, value in want.items():
        torch.testing.assert_close(got[key], value, rtol=1e-5, atol=1e-5, msg=key)

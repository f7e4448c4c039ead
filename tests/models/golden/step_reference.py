"""One training step of every trainable model on fixed tiny data: gradients and outputs.

``python tests/models/golden/step_reference.py`` writes ``steps.json`` (text: dtype, shape and
values of each tensor) beside this file from the code as it is;
``tests/models/test_step_golden.py`` recomputes the same step and compares, so that refactors
and speed work that must not change results are checked.

The step runs in float64: the model is built with float64 as the default dtype (so that its
initial weights are drawn in float64), trained with Lightning's ``64-true`` precision (inputs
and optimiser state in float64) and evaluated on float64 inputs. In float32 the reference was
tied to one CPU: torch's vectorised kernels (random number transforms for the initial weights,
reductions, matrix products) round differently per instruction set, and one step moved outputs
by up to 8e-5. In float64 the same differences are ~1e-11 (see the test's docstring).
Hyper-parameters are given explicitly so that a deliberate change of a default does not
count as a change of the step.
"""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import torch

from mmint import keys
from mmint.data import PairedData, PairedDataModule
from mmint.data.simulate import simulate
from mmint.models import build_model

HERE = Path(__file__).resolve().parent
MODALITIES = {"rna": ("counts", 30), "atac": ("binary", 40), "ephys": ("continuous", 8)}
#: explicit hyper-parameters per model (the settings whose step is pinned)
MODELS = {
    "unitednet": dict(
        task="supervised",
        alternation="batch",
        n_head=2,
        latent_dim=8,
        encoder_hidden=[16],
        discriminator_hidden=[8],
        projector_dim=12,
        batch_correction="covariate",
        contrastive_per_head=False,
        ddc_sum_over_heads=False,
        shared_discriminator_optimizer=False,
        gradient_clip_val=25.0,
        best_head_rule="val_argmin",
        noise_at_inference=False,
        head_reinit="kaiming_normal",
        constant_discriminator=False,
        noise_level=0.0,
    ),
    "unitednet_unsupervised": dict(
        task="unsupervised",
        alternation="batch",
        n_head=2,
        latent_dim=8,
        n_groups=3,
        encoder_hidden=[16],
        discriminator_hidden=[8],
        projector_dim=12,
        batch_correction="none",
        compat="original",
        noise_level={"ephys": 0.1},
    ),
    "multivi": dict(n_latent=6, n_hidden=16),
    "cvqvae": dict(n_latent=6, hidden=[16], n_codes=16, input_rep="features"),
}


def datamodule() -> PairedDataModule:
    """48 cells of the simulator (seed 4: every cell has every modality), one batch of 48 per step."""
    sim = simulate(
        n_cells=60, n_types=3, n_major=3, n_batches=2, modalities=MODALITIES, n_links=2, seed=4
    )
    data = PairedData.from_anndatas(sim.adatas, sim.kinds, label_key="cell_type", batch_key="batch")
    dm = PairedDataModule(
        data, split={"kind": "random", "fractions": [0.8, 0.1, 0.1]}, seed=0, batch_size=48
    )
    dm.setup()
    return dm


class _Capture(L.Callback):
    """Gradients of every optimizer step, keyed ``<step>/<param name>``."""

    def __init__(self) -> None:
        self.grads: dict[str, torch.Tensor] = {}
        self.steps = 0

    def on_train_start(self, trainer, pl_module) -> None:
        names = {id(p): n for n, p in pl_module.named_parameters()}
        for opt in trainer.optimizers:

            def hook(o, args, kwargs, names=names):
                for group in o.param_groups:
                    for p in group["params"]:
                        if p.grad is not None:
                            self.grads[f"{self.steps}/{names[id(p)]}"] = p.grad.detach().clone()
                self.steps += 1

            opt.register_step_pre_hook(hook)


def train_one_step(model, dm, precision: str = "32-true") -> dict[str, torch.Tensor]:
    """Fit ``model`` for one training step on ``dm`` (no validation); its gradients."""
    capture = _Capture()
    trainer = L.Trainer(
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        precision=precision,
        limit_val_batches=0,
        callbacks=[capture],
    )
    trainer.fit(model, datamodule=dm)
    return dict(capture.grads)


def one_step(name: str) -> dict[str, torch.Tensor]:
    """Gradients of the first training batch's steps and outputs on the val cells after it,
    computed in float64 (model, inputs and optimiser state), on ``$MMINT_GOLDEN_THREADS``
    threads (default 1)."""
    torch.set_num_threads(int(os.environ.get("MMINT_GOLDEN_THREADS", "1")))
    L.seed_everything(0, verbose=False)
    dm = datamodule()
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # initial weights drawn in float64 too
    try:
        model = build_model(name.split("_")[0], dm.spec, **MODELS[name])
    finally:
        torch.set_default_dtype(default)
    grads = train_one_step(model, dm, precision="64-true")
    model.eval()
    batch = {
        k: v.to(model.dtype) if v.is_floating_point() else v
        for k, v in dm.batch(dm.cells("val")).items()
    }
    out = {f"grad/{k}": v for k, v in grads.items()}
    with torch.no_grad():
        out["joint"] = model.joint_latent(batch)
        for m, z in model.latents(batch).items():
            out[f"latent/{m}"] = z
        out["translate/rna->ephys"] = model.translate(batch, "rna", "ephys")
        out["translate/ephys->atac"] = model.translate(batch, "ephys", "atac")
    assert keys.INDEX in batch
    return out


#: the recorded reference (text, so that no binary tensor file is tracked)
REFERENCE = HERE / "steps.json"


def write_reference(steps: dict[str, dict[str, torch.Tensor]]) -> None:
    """Write ``{model: {key: tensor}}`` as JSON (9 significant digits: float32 round-trips)."""
    import json

    data = {
        name: {
            key: {
                "dtype": str(t.dtype).removeprefix("torch."),
                "shape": list(t.shape),
                "values": [float(f"{x:.9g}") for x in t.double().flatten().tolist()],
            }
            for key, t in out.items()
        }
        for name, out in steps.items()
    }
    REFERENCE.write_text(json.dumps(data, separators=(",", ":")))


def load_reference() -> dict[str, dict[str, torch.Tensor]]:
    """The tensors written by :func:`write_reference`."""
    import json

    data = json.loads(REFERENCE.read_text())
    return {
        name: {
            key: torch.tensor(v["values"], dtype=getattr(torch, v["dtype"])).reshape(v["shape"])
            for key, v in out.items()
        }
        for name, out in data.items()
    }


if __name__ == "__main__":
    write_reference({name: one_step(name) for name in MODELS})
    print(f"wrote {REFERENCE}")

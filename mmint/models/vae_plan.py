"""The training plan the VAE-style models share (MultiVI-style and CVQVAE-style).

What they have in common lives here once: the KL warm-up, the optional batch adversary (the
VAE fools it; it learns on the latent with its own optimizer), the manual step (a zero step
under DDP when a batch has nothing to learn), the logging of the :class:`LossOutput` and the
validation loss logged as ``val/loss``. A model built on it provides ``self.module``, an
``nn.Module`` with ``loss(batch, **kw) -> LossOutput`` (the latent the adversary reads in
``outputs["z"]``), ``self.adversary`` (a :class:`~mmint.nn.batch.BatchAdversary` or ``None``)
and :meth:`VAEPlan.vae_optimizer`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mmint import keys
from mmint.models.adversary import classifier_loss, fool_loss
from mmint.models.base import Batch, IntegratorModule
from mmint.models.inputs import batch_size
from mmint.models.loss_output import LossOutput, log_loss_output
from mmint.models.stepping import manual_step, zero_loss
from mmint.nn.batch import BatchAdversary
from mmint.nn.optim import adam


def kl_warmup(epoch: int, n_epochs: int) -> float:
    """Linear KL warm-up: ``min(1, epoch / n_epochs)`` (1 when ``n_epochs`` is 0)."""
    return 1.0 if n_epochs <= 0 else min(1.0, epoch / n_epochs)


class VAEPlan(IntegratorModule):
    """Manual optimisation of a VAE-style module, with an optional batch adversary.

    Hyper-parameters read: ``gradient_clip_val`` (VAE gradients, ``None``: off),
    ``n_epochs_kl_warmup`` (absent or 0: no warm-up) and, with an adversary,
    ``adversary_kappa``, ``adversary_lr``, ``adversary_eps``.
    """

    #: the batch classifier on the latent (``None``: no adversary); set in ``__init__`` (a
    #: class default would hide the registered module)
    adversary: BatchAdversary | None

    def vae_optimizer(self) -> torch.optim.Optimizer:
        """The optimizer of ``self.module``."""
        raise NotImplementedError

    def loss_kwargs(self, stage: str) -> dict[str, Any]:
        """Keyword arguments of ``self.module.loss`` in ``stage`` (``train`` or ``val``)."""
        return {}

    def step_extras(self, out: LossOutput) -> None:
        """Add values to log after the training step (``out.extras``)."""

    def kl_weight(self) -> float:
        """KL weight of the current epoch (:func:`kl_warmup`)."""
        return kl_warmup(self.current_epoch, int(self.hparams.get("n_epochs_kl_warmup", 0)))

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """The VAE's optimizer; Adam for the batch classifier when there is one."""
        opts = [self.vae_optimizer()]
        if self.adversary is not None:
            h = self.hparams
            opts.append(
                adam(self.adversary.parameters(), lr=h["adversary_lr"], eps=h["adversary_eps"])
            )
        return opts

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        """One VAE step (loss + fool loss), then one classifier step on the detached latent."""
        opts = self.optimizers()
        opts = opts if isinstance(opts, list) else [opts]
        out = self.module.loss(batch, **self.loss_kwargs("train"))
        loss, codes, fool = out.loss, batch.get(keys.BATCH), None
        kappa = self.hparams.get("adversary_kappa", 1.0)
        if self.adversary is not None:
            fool = fool_loss(self.adversary, out.outputs["z"], codes)
        if fool is not None:
            loss = loss + kappa * fool
            out.extras["fool"] = fool
        # under DDP every process must take part in every gradient all-reduce: a batch with
        # nothing to learn steps with a zero loss instead of skipping the step
        step = loss if loss.requires_grad else zero_loss(self, self.module.parameters())
        if step is not None and step.requires_grad:
            manual_step(self, opts[0], step, self.hparams["gradient_clip_val"])
        adv = None if fool is None else classifier_loss(self.adversary, out.outputs["z"], codes)
        if adv is not None:
            manual_step(self, opts[1], kappa * adv)
            out.extras["adversary"] = kappa * adv
        self.step_extras(out)
        log_loss_output(self, "train", out, batch_size(batch, self.modalities))
        return loss.detach()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        """The module's loss as ``val/loss`` (and its terms as ``val/<name>``)."""
        out = self.module.loss(batch, **self.loss_kwargs("val"))
        log_loss_output(self, "val", out, batch_size(batch, self.modalities))

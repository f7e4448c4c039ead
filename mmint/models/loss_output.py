"""The one shape every model's loss computation returns, and the one way it is logged.

As scvi-tools' ``LossOutput``: the optimised scalar, the named terms it is made of and named
extras that are only logged. A plan logs it with :func:`log_loss_output`, so that the same
term has the same metric name (``<stage>/<name>``) whatever the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import lightning as L
from torch import Tensor


@dataclass
class LossOutput:
    """One batch's loss.

    Attributes
    ----------
    loss
        The optimised scalar.
    terms
        Named loss terms the loss is made of (scalars, or per-cell ``(n,)`` tensors that are
        logged as their mean), unweighted.
    extras
        Named quantities that are logged but not optimised (codebook perplexity, group sums).
    outputs
        Tensors a later step of the same batch needs (the latent for a batch adversary,
        detached reconstructions for a discriminator); never logged.
    """

    loss: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict)
    extras: dict[str, Tensor] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)

    def logged(self, total: bool = True) -> dict[str, Tensor]:
        """``{name: detached scalar}``: ``loss`` (unless ``total`` is false), every term's
        mean and every extra."""
        values = {"loss": self.loss} if total else {}
        values.update(self.terms)
        values.update(self.extras)
        return {k: v.detach().mean() for k, v in values.items()}


def log_loss_output(
    module: L.LightningModule, stage: str, out: LossOutput, n: int, total: bool = True
) -> None:
    """Log ``out`` as epoch means under ``<stage>/<name>`` (``val/loss`` on the progress bar).

    Parameters
    ----------
    module
        The LightningModule that logs.
    stage
        ``"train"`` or ``"val"``.
    out
        The batch's loss.
    n
        Cells in the batch (the weight of its values in the epoch means).
    total
        Also log ``out.loss`` as ``<stage>/loss`` (off for a model whose steps optimise
        different losses in turn, where one ``loss`` per epoch would mix them).
    """
    log_terms(module, stage, out.logged(total), n)


def log_terms(module: L.LightningModule, stage: str, terms: Mapping[str, Tensor], n: int) -> None:
    """Log named values (each as its mean) as epoch means under ``<stage>/<name>``."""
    for name, value in terms.items():
        module.log(
            f"{stage}/{name}",
            value.detach().mean(),
            prog_bar=stage == "val" and name == "loss",
            on_step=False,
            on_epoch=True,
            batch_size=n,
        )

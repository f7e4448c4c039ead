"""One optimizer step under manual optimisation, the same way in every model."""

from __future__ import annotations

from collections.abc import Iterable

import lightning as L
import torch
from torch import Tensor

from mmint.nn.balancing import Balancer


def manual_step(
    module: L.LightningModule, opt: torch.optim.Optimizer, loss: Tensor, clip: float | None = None
) -> None:
    """``zero_grad``, backward of ``loss``, gradient-norm clipping at ``clip`` (off when
    ``None`` or 0), ``step``."""
    opt.zero_grad()
    module.manual_backward(loss)
    if clip:
        module.clip_gradients(opt, gradient_clip_val=clip, gradient_clip_algorithm="norm")
    opt.step()


def balanced_step(
    module: L.LightningModule,
    opt: torch.optim.Optimizer,
    balancer: Balancer,
    terms: dict[str, Tensor],
    clip: float | None = None,
    unbalanced: Tensor | None = None,
) -> Tensor:
    """:func:`manual_step` with the gradients of ``terms`` combined by ``balancer``
    (:mod:`mmint.nn.balancing`) over the parameters ``opt`` steps, plus those of
    ``unbalanced`` (a loss the balancer must not reweigh or project, e.g. an adversary's own
    objective sharing the optimizer); then the balancer's own update. Returns the detached
    total of the balanced terms."""
    opt.zero_grad()
    if unbalanced is not None:
        module.manual_backward(unbalanced)  # gradients accumulate with the balancer's
    total = balancer.backward(terms, optimizer_params(opt), module.manual_backward)
    if clip:
        module.clip_gradients(opt, gradient_clip_val=clip, gradient_clip_algorithm="norm")
    opt.step()
    balancer.after_step()
    return total


def zero_loss(module: L.LightningModule, params: Iterable[torch.nn.Parameter]) -> Tensor | None:
    """Under DDP, a zero loss over ``params`` that steps in place of a skipped step (every
    process must join every gradient all-reduce); ``None`` in a single process."""
    trainer = getattr(module, "_trainer", None)
    if trainer is None or trainer.world_size < 2:
        return None
    return sum(p.sum() * 0.0 for p in params)


def optimizer_params(opt: torch.optim.Optimizer) -> list[torch.nn.Parameter]:
    """Every parameter ``opt`` steps."""
    return [p for group in opt.param_groups for p in group["params"]]

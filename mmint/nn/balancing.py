"""Loss balancing: how a training step's named loss terms become parameter gradients.

A step of a multi-task model sums weighted loss terms (UnitedNet's translation, contrastive,
adversarial, DDC, ...). With fixed weights one term can drown the others. The balancers here
replace the fixed sum, each as published:

- ``fixed``: the terms' plain sum (the weights are the model's own, applied before).
- ``uncertainty`` (Kendall, Gal and Cipolla 2018): a learned log-variance ``s_k`` per term,
  ``sum_k 0.5 exp(-s_k) L_k + 0.5 s_k``; effective weight ``0.5 exp(-s_k)``.
- ``gradnorm`` (Chen et al. 2018): learned weights ``w_k`` whose gradient norms on the shared
  parameters are pulled towards ``mean_k G_k * r_k^alpha`` (``r_k`` the term's loss ratio to
  its first value, relative to the mean ratio); weights renormalised to sum to the number of
  terms after every update.
- ``pcgrad`` (Yu et al. 2020): per-term gradients; each is projected off the others' where
  they conflict (negative inner product), in random order, and the projections are summed.
- ``dwa`` (dynamic weight averaging, Liu, Johns and Davison 2019): per epoch,
  ``w_k = K softmax_k(r_k / T)`` with ``r_k`` the ratio of the term's last two epoch means.

Each balancer is a :class:`torch.nn.Module`: its learned state (log-variances, weights, loss
history and its own small optimiser) is in its ``state_dict`` and so in checkpoints. Learned
weights are updated by the balancer itself (Adam, ``lr``), not by the model's optimisers, so a
model's per-phase optimisers are unchanged. A model keeps one balancer per phase (the terms
of a phase are optimised together).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from mmint.errors import InputError

METHODS = ("fixed", "uncertainty", "gradnorm", "pcgrad", "dwa")
Backward = Callable[[Tensor], None]


class Balancer(nn.Module):
    """Combine a step's named loss terms into gradients; the base class is ``fixed``.

    Parameters
    ----------
    names
        The terms this balancer sees, in a fixed order.
    """

    def __init__(self, names: Sequence[str]) -> None:
        super().__init__()
        self.names = list(names)
        self.register_buffer("epoch_sums", torch.zeros(len(self.names), dtype=torch.float64))
        self.register_buffer("epoch_count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("epoch_counts", torch.zeros(len(self.names), dtype=torch.float64))
        self.present = torch.ones(len(self.names), dtype=torch.bool)

    def weights(self) -> dict[str, float]:
        """The effective weight of each term (what multiplies its loss in the total)."""
        return dict.fromkeys(self.names, 1.0)

    def _stack(self, terms: dict[str, Tensor]) -> Tensor:
        unknown = set(terms) - set(self.names)
        if unknown:
            raise KeyError(f"terms {sorted(unknown)} are not among {self.names}")
        ref = next(iter(terms.values()))
        #: which terms this step has (an absent one, e.g. a loss that a batch cannot form,
        #: is 0 and neither moves its learned weight nor counts in its epoch mean)
        self.present = torch.tensor([k in terms for k in self.names], device=ref.device)
        return torch.stack([terms[k] if k in terms else ref.new_zeros(()) for k in self.names])

    def _track(self, losses: Tensor) -> None:
        self.epoch_sums += losses.detach().double()
        self.epoch_counts += self.present.to(self.epoch_counts.dtype)
        self.epoch_count += 1

    def total(self, losses: Tensor) -> Tensor:
        """The optimised scalar from the stacked terms ``(K,)``."""
        return losses.sum()

    def backward(
        self, terms: dict[str, Tensor], params: Sequence[nn.Parameter], backward: Backward
    ) -> Tensor:
        """Accumulate gradients of ``terms`` into ``params`` (``backward(loss)`` is the
        trainer's backward, e.g. ``LightningModule.manual_backward``); the total, detached."""
        losses = self._stack(terms)
        self._track(losses)
        total = self.total(losses)
        backward(total)
        return total.detach()

    def after_step(self) -> None:
        """Called after the model's optimiser step."""

    def end_epoch(self) -> None:
        """Called once per training epoch, after its last step."""
        self.epoch_sums.zero_()
        self.epoch_count.zero_()
        self.epoch_counts.zero_()


class Uncertainty(Balancer):
    """Kendall et al. (2018): ``sum_k 0.5 exp(-s_k) L_k + 0.5 s_k`` with learned ``s_k``.

    ``s_k`` is clamped to ``[-clamp, clamp]`` so a term that can reach zero cannot drive its
    weight to infinity.
    """

    def __init__(self, names: Sequence[str], lr: float = 1e-2, clamp: float = 10.0) -> None:
        super().__init__(names)
        self.log_vars = nn.Parameter(torch.zeros(len(self.names)))
        self.clamp = clamp
        self.opt = torch.optim.Adam([self.log_vars], lr=lr)

    def weights(self) -> dict[str, float]:
        w = 0.5 * torch.exp(-self.log_vars.detach())
        return dict(zip(self.names, w.tolist(), strict=True))

    def total(self, losses: Tensor) -> Tensor:
        s = self.log_vars.to(losses.dtype)
        per_term = 0.5 * torch.exp(-s) * losses + 0.5 * s
        return per_term[self.present.to(per_term.device)].sum()

    def backward(self, terms, params, backward) -> Tensor:
        self.opt.zero_grad(set_to_none=True)
        return super().backward(terms, params, backward)

    def after_step(self) -> None:
        if self.log_vars.grad is not None:
            self.opt.step()
        with torch.no_grad():
            self.log_vars.clamp_(-self.clamp, self.clamp)

    def get_extra_state(self) -> dict:
        return {"opt": self.opt.state_dict()}

    def set_extra_state(self, state: dict) -> None:
        self.opt.load_state_dict(state["opt"])


class GradNorm(Balancer):
    """Chen et al. (2018): learned weights whose gradient norms on the ``shared`` parameters
    follow each term's relative training rate.

    Parameters
    ----------
    names
        The terms.
    shared
        The shared parameters whose gradient norms are balanced (the paper: the last shared
        layer).
    alpha
        The restoring force's strength.
    lr
        Adam's learning rate for the weights.
    """

    def __init__(
        self,
        names: Sequence[str],
        shared: Sequence[nn.Parameter],
        alpha: float = 1.5,
        lr: float = 1e-2,
    ) -> None:
        super().__init__(names)
        self.loss_weights = nn.Parameter(torch.ones(len(self.names)))
        self.register_buffer("initial", torch.full((len(self.names),), float("nan")))
        self.alpha = alpha
        self._shared = list(shared)
        self.opt = torch.optim.Adam([self.loss_weights], lr=lr)

    def weights(self) -> dict[str, float]:
        return dict(zip(self.names, self.loss_weights.detach().tolist(), strict=True))

    def backward(self, terms, params, backward) -> Tensor:
        losses = self._stack(terms)
        self._track(losses)
        present = self.present.to(losses.device)
        start = ~torch.isfinite(self.initial) & present
        self.initial[start] = losses.detach()[start].to(self.initial.dtype)
        w = self.loss_weights.to(losses.dtype)
        # G_k = ||grad(w_k L_k)|| = w_k ||grad L_k|| (w_k > 0): the norms of the unweighted
        # terms' gradients are constants of the weights' loss, so no second derivative (which
        # some losses' operations, e.g. cdist, do not have) is needed
        norms = losses.new_zeros(len(self.names))
        active = torch.zeros(len(self.names), dtype=torch.bool, device=losses.device)
        for k in range(len(self.names)):
            if not (present[k] and losses[k].requires_grad):
                continue
            grads = torch.autograd.grad(
                losses[k], self._shared, retain_graph=True, allow_unused=True
            )
            flat = [g.reshape(-1) for g in grads if g is not None]
            if flat:
                norms[k] = torch.cat(flat).norm()
                active[k] = True
        # the balance is over the terms this step has a gradient for
        total = (w.detach() * losses).sum()
        if not bool(active.any()):
            backward(total)
            self.opt.zero_grad(set_to_none=True)
            return total.detach()
        g = w[active] * norms[active]
        ratio = losses.detach()[active] / self.initial.to(losses.dtype)[active].clamp_min(1e-12)
        rate = ratio / ratio.mean().clamp_min(1e-12)
        target = (g.mean() * rate**self.alpha).detach()
        grad_w = torch.autograd.grad((g - target).abs().sum(), self.loss_weights)
        backward(total)
        self.opt.zero_grad(set_to_none=True)
        self.loss_weights.grad = grad_w[0]
        return total.detach()

    def after_step(self) -> None:
        if self.loss_weights.grad is not None:
            self.opt.step()
        with torch.no_grad():
            w = self.loss_weights.clamp_(min=1e-4)
            w.mul_(len(self.names) / w.sum())

    def get_extra_state(self) -> dict:
        return {"opt": self.opt.state_dict()}

    def set_extra_state(self, state: dict) -> None:
        self.opt.load_state_dict(state["opt"])


class PCGrad(Balancer):
    """Yu et al. (2020): project each term's gradient off every other term's gradient it
    conflicts with (in random order), then sum.

    The projection uses the other terms' original gradients, as in the paper's algorithm.
    The random order comes from torch's global generator (seeded by the run's seed).
    """

    def backward(self, terms, params, backward) -> Tensor:
        losses = self._stack(terms)
        self._track(losses)
        params = [p for p in params if p.requires_grad]
        flat = []
        for k in range(len(self.names)):
            if not losses[k].requires_grad:
                continue
            grads = torch.autograd.grad(losses[k], params, retain_graph=True, allow_unused=True)
            flat.append(
                torch.cat(
                    [
                        (torch.zeros_like(p) if g is None else g).reshape(-1)
                        for p, g in zip(params, grads, strict=True)
                    ]
                )
            )
        if flat:
            combined = project_conflicts(torch.stack(flat)).sum(0)
            offset = 0
            for p in params:
                n = p.numel()
                g = combined[offset : offset + n].view_as(p)
                p.grad = g.clone() if p.grad is None else p.grad + g
                offset += n
        return losses.sum().detach()


def project_conflicts(grads: Tensor, order: Sequence[Sequence[int]] | None = None) -> Tensor:
    """PCGrad's projection of each row of ``grads`` ``(K, P)`` off the conflicting rows.

    Parameters
    ----------
    grads
        One flattened gradient per term.
    order
        For each term, the order in which the other terms are visited; default a random
        permutation per term.

    Returns
    -------
    The projected gradients ``(K, P)``.
    """
    out = grads.clone()
    k = grads.shape[0]
    for i in range(k):
        others = (
            list(order[i])
            if order is not None
            else [j for j in torch.randperm(k).tolist() if j != i]
        )
        for j in others:
            dot = out[i] @ grads[j]
            if dot < 0:
                out[i] -= dot / (grads[j] @ grads[j]).clamp_min(1e-20) * grads[j]
    return out


class DWA(Balancer):
    """Liu, Johns and Davison (2019): per epoch ``w_k = K exp(r_k / T) / sum_j exp(r_j / T)``
    with ``r_k = L_k(t-1) / L_k(t-2)`` (epoch means); weights 1 for the first two epochs."""

    def __init__(self, names: Sequence[str], temperature: float = 2.0) -> None:
        super().__init__(names)
        self.temperature = temperature
        self.register_buffer("history", torch.full((2, len(self.names)), float("nan")))
        self.register_buffer("current", torch.ones(len(self.names)))

    def weights(self) -> dict[str, float]:
        return dict(zip(self.names, self.current.tolist(), strict=True))

    def total(self, losses: Tensor) -> Tensor:
        return (self.current.to(losses.dtype) * losses).sum()

    def end_epoch(self) -> None:
        if self.epoch_count > 0:
            means = (self.epoch_sums / self.epoch_counts.clamp_min(1)).to(self.history.dtype)
            self.history[0] = self.history[1]
            self.history[1] = means
            if torch.isfinite(self.history).all():
                self.current.copy_(dwa_weights(self.history[0], self.history[1], self.temperature))
        super().end_epoch()


def dwa_weights(before: Tensor, last: Tensor, temperature: float) -> Tensor:
    """DWA's weights from the epoch means two epochs ago (``before``) and last epoch."""
    rate = last / before.clamp_min(1e-12)
    return len(rate) * torch.softmax(rate / temperature, dim=0)


def make_balancer(
    method: str, names: Sequence[str], shared: Sequence[nn.Parameter] = (), **options: float
) -> Balancer:
    """The balancer ``method`` (one of :data:`METHODS`) over the terms ``names``.

    Raises
    ------
    mmint.errors.InputError
        For an unknown method, or ``gradnorm`` without shared parameters.
    """
    if method == "fixed":
        return Balancer(names)
    if method == "uncertainty":
        return Uncertainty(names, **options)
    if method == "gradnorm":
        if not shared:
            raise InputError(
                "gradnorm needs the shared parameters", "model.loss_balancing", "use another method"
            )
        return GradNorm(names, shared, **options)
    if method == "pcgrad":
        return PCGrad(names)
    if method == "dwa":
        return DWA(names, **options)
    raise InputError(
        f"unknown loss balancing '{method}'", "model.loss_balancing", f"use one of {list(METHODS)}"
    )


__all__ = ["METHODS", "Balancer", "make_balancer", "project_conflicts", "dwa_weights"]

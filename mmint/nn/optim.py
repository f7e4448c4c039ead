"""Optimisers built the same way for every model.

Adam and AdamW use torch's fused implementation (one kernel over all parameters): about five
times cheaper per step than the default per-tensor loop on a CPU for the Patch-seq UnitedNet
(9.5M parameters: 22 against 110 ms per step, one thread), with the same update up to float
rounding (``benchmarks/results/profile.md``; the one-step golden test pins it at 1e-5).

The fused kernel copies a non-contiguous parameter to a contiguous one and back; a
feature-major weight (:func:`mmint.nn.sparse.feature_major_`, the first layer of a sparse
input) is instead handed to it as its transposed view, which is contiguous: the update is
element-wise, so it is the same.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor


def _transposed_views(*lists: list[Tensor]) -> None:
    """Replace, position by position, tensors that are all transposed-contiguous 2-d tensors
    (a parameter, its gradient and moments share its strides) by their contiguous ``.t()``."""
    for i in range(len(lists[0])):
        group = [lst[i] for lst in lists if i < len(lst)]
        if all(t.dim() == 2 and not t.is_contiguous() and t.t().is_contiguous() for t in group):
            for lst in lists:
                if i < len(lst):
                    lst[i] = lst[i].t()


class _FeatureMajorMixin:
    """Adam's parameter gathering, then transposed views of feature-major tensors."""

    def _init_group(self, group, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps):
        has_complex = super()._init_group(  # type: ignore[misc]
            group, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps
        )
        moments = [exp_avgs, exp_avg_sqs] + ([max_exp_avg_sqs] if group["amsgrad"] else [])
        _transposed_views(params, grads, *moments)
        return has_complex


class Adam(_FeatureMajorMixin, torch.optim.Adam):
    """``torch.optim.Adam`` that gives the fused kernel feature-major weights as views."""


class AdamW(_FeatureMajorMixin, torch.optim.AdamW):
    """``torch.optim.AdamW`` that gives the fused kernel feature-major weights as views."""


def adam(
    params: Iterable[torch.nn.Parameter], decoupled: bool = False, **kwargs
) -> torch.optim.Optimizer:
    """``torch.optim.Adam`` (``AdamW`` when ``decoupled``), fused.

    Parameters
    ----------
    params
        Parameters to optimise (all on one device).
    decoupled
        Decoupled weight decay (AdamW) instead of L2 in the gradient (Adam).
    **kwargs
        ``lr``, ``betas``, ``eps``, ``weight_decay`` as torch's.
    """
    cls = AdamW if decoupled else Adam
    return cls(list(params), fused=True, **kwargs)

"""Optimisers built the same way for every model.

Adam and AdamW use torch's fused implementation (one kernel over all parameters): about five
times cheaper per step than the default per-tensor loop on a CPU for the Patch-seq UnitedNet
(9.5M parameters: 22 against 110 ms per step, one thread), with the same update up to float
rounding (``benchmarks/results/profile.md``; the one-step golden test pins it at 1e-5).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


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
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    return cls(list(params), fused=True, **kwargs)

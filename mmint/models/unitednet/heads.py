"""Best-head selection: per-head loss sums over a pass, and the two selection rules.

``val_argmin`` (mmint): the head with the lowest selection loss over the validation cells of
the epoch (ties to the lowest index). ``vote`` (the original): after every pass that has group
losses, the argmin of that pass wins a vote; once a head has won ``threshold`` votes, the head
with most votes is used (the first on ties).
"""

from __future__ import annotations

import torch
from torch import Tensor


class HeadStats:
    """Weighted sums of a per-head loss over the batches of one pass."""

    def __init__(self) -> None:
        self.sums: Tensor | None = None
        self.weights: Tensor | None = None

    def reset(self) -> None:
        """Forget every batch."""
        self.sums, self.weights = None, None

    def add(self, values: Tensor, weight: float) -> None:
        """Add one batch's per-head losses ``(H,)`` with weight ``weight`` (its cells)."""
        value = values.detach().cpu() * weight
        w = torch.full_like(value, weight)
        if self.sums is None or self.weights is None:
            self.sums, self.weights = value, w
        else:
            self.sums, self.weights = self.sums + value, self.weights + w

    def means(self) -> Tensor | None:
        """Per-head mean loss, ``None`` before any batch with weight."""
        if self.sums is None or self.weights is None or float(self.weights.max()) <= 0:
            return None
        return self.sums / self.weights.clamp_min(1e-12)

    def argmin(self) -> int | None:
        """The head with the lowest mean (the first on ties), ``None`` when empty."""
        means = self.means()
        return None if means is None else int(torch.argmin(means))


def vote(votes: Tensor, winner: int | None, threshold: int) -> int | None:
    """Record ``winner``'s vote in ``votes`` (in place) and return the head to use.

    The most-voted head once some head has ``threshold`` votes, else ``winner`` (``None``
    when there is no winner and no head has reached the threshold).
    """
    if winner is not None:
        votes[winner] += 1
    if int(votes.sum()) > 0 and int(votes.max()) >= max(threshold, 1):
        return int(torch.argmax(votes))
    return winner

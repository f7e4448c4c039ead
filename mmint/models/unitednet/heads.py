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


class HeadSelector:
    """The best-head choice of one model across passes, epochs and stages.

    Parameters
    ----------
    best, votes
        The module's ``best_head`` buffer (a 0-d long tensor) and ``head_votes`` buffer
        (``(H,)`` long): both are written in place, so they live in checkpoints.
    rule
        ``val_argmin`` or ``vote`` (see the module docstring).
    """

    def __init__(self, best: Tensor, votes: Tensor, rule: str) -> None:
        self.best, self.votes, self.rule = best, votes, rule
        self.reset()

    def reset(self) -> None:
        """A new epoch (or new heads): forget the statistics, keep the votes."""
        self.epoch, self.pass_, self.val = HeadStats(), HeadStats(), HeadStats()
        self.chosen_on_val = False

    def track(self, values: Tensor, weight: float, train: bool) -> None:
        """One batch's per-head selection losses (training pass or validation)."""
        for stats in (self.epoch, self.pass_) if train else (self.val,):
            stats.add(values, weight)

    def end_pass(self, threshold: int) -> None:
        """End a training pass: under ``vote`` its argmin wins a vote."""
        if self.rule == "vote" and self.pass_.means() is not None:
            self._set(vote(self.votes, self.pass_.argmin(), threshold))
        self.pass_.reset()

    def end_validation(self, threshold: int, group_losses_count: bool) -> None:
        """Choose on the validation pass. ``group_losses_count``: whether the original's
        validation pass would have group losses (its epoch's last schedule is a group one)."""
        if self.rule == "vote":
            self._set(
                vote(self.votes, self.val.argmin() if group_losses_count else None, threshold)
            )
        else:
            self._set(self.val.argmin())
        self.chosen_on_val = self.val.means() is not None

    def end_epoch(self) -> None:
        """Without validation (``val_argmin``): choose on the epoch's training losses."""
        if not self.chosen_on_val and self.rule == "val_argmin":
            self._set(self.epoch.argmin())

    def selection_loss(self) -> Tensor | None:
        """The best head's mean validation loss (``None`` without validation losses)."""
        means = self.val.means()
        return None if means is None else means[int(self.best)]

    def _set(self, head: int | None) -> None:
        if head is not None:
            self.best.fill_(head)

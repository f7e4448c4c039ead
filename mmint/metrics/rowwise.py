"""Per-cell Pearson r and AUROC of a chunk of cells, and a chunk of observations that may be
sparse (never densified), for :class:`mmint.metrics.prediction.PredictionAccumulator`."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def dense64(x) -> np.ndarray:
    """Return ``x`` (numpy or scipy sparse) as a dense 2-d float64 array."""
    if sp.issparse(x):
        x = x.toarray()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-dimensional matrix, got shape {x.shape}")
    return x


def _per_cell_pearson(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Pearson r of each row of ``t`` with the same row of ``p``; nan where a row is constant."""
    valid = (t.max(axis=1) > t.min(axis=1)) & (p.max(axis=1) > p.min(axis=1))
    out = np.full(t.shape[0], np.nan)
    if valid.any():
        tc = t[valid] - t[valid].mean(axis=1, keepdims=True)
        pc = p[valid] - p[valid].mean(axis=1, keepdims=True)
        num = np.einsum("ij,ij->i", tc, pc)
        den = np.sqrt(np.einsum("ij,ij->i", tc, tc) * np.einsum("ij,ij->i", pc, pc))
        out[valid] = np.clip(num / den, -1.0, 1.0)
    return out


def per_cell_auroc(positive: np.ndarray, p: np.ndarray) -> np.ndarray:
    """ROC AUC of each row of ``p`` against the boolean ``positive``; nan where the row has
    one class only.

    Mann-Whitney form with average ranks for ties: ``(R_pos - n_pos (n_pos + 1) / 2) /
    (n_pos n_neg)``, with ``R_pos`` the sum of the positives' ranks. A positive's average
    rank is found in its sorted row by binary search (``(below + up_to + 1) / 2``), so only the
    row is sorted: no rank matrix the size of the chunk (wide targets: 100,000 peaks a row).
    """
    n_pos = positive.sum(axis=1).astype(np.float64)
    n_neg = positive.shape[1] - n_pos
    out = np.full(positive.shape[0], np.nan)
    for i in np.flatnonzero((n_pos > 0) & (n_neg > 0)):
        row = np.asarray(p[i], dtype=np.float64)
        ordered = np.sort(row)
        scores = row[positive[i]]
        below = np.searchsorted(ordered, scores, side="left")
        up_to = np.searchsorted(ordered, scores, side="right")
        rank_sum = float(((below + up_to + 1) / 2.0).sum())  # half-integers: exact
        out[i] = (rank_sum - n_pos[i] * (n_pos[i] + 1) / 2) / (n_pos[i] * n_neg[i])
    return out


class Chunk:
    """A chunk of observed values, dense (float64) or sparse CSR (float64, never densified).

    Gives what :class:`PredictionAccumulator` needs of it with the same definitions either
    way: per-feature moments, the residual against a dense prediction, per-cell Pearson r and
    the positive mask.
    """

    def __init__(self, x) -> None:
        if sp.issparse(x):
            x = sp.csr_matrix(x, dtype=np.float64)
            x.sum_duplicates()
            self.sparse, self.x = True, x
            # row of each stored entry
            self.rows = np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))
        else:
            self.sparse, self.x = False, dense64(x)
        self.shape = self.x.shape

    def column_moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature mean and centred sum of squares (unstored entries count as 0)."""
        x, n = self.x, self.shape[0]
        if not self.sparse:
            mean = x.mean(axis=0)
            return mean, np.square(x - mean).sum(axis=0)
        p = self.shape[1]
        mean = np.bincount(x.indices, weights=x.data, minlength=p) / n
        stored = np.bincount(x.indices, minlength=p)
        dev = np.bincount(x.indices, weights=np.square(x.data - mean[x.indices]), minlength=p)
        return mean, dev + (n - stored) * np.square(mean)

    def residual(self, p: np.ndarray) -> np.ndarray:
        """``p - x`` (dense)."""
        if not self.sparse:
            return p - self.x
        out = p.copy()
        out[self.rows, self.x.indices] -= self.x.data
        return out

    def pearson(self, p: np.ndarray) -> np.ndarray:
        """Per-cell Pearson r with ``p``; nan where a row of either is constant."""
        if not self.sparse:
            return _per_cell_pearson(self.x, p)
        x, n_feat = self.x, self.shape[1]
        mean = np.asarray(x.sum(axis=1)).ravel() / n_feat
        stored = np.diff(x.indptr)
        dev = np.bincount(
            self.rows, weights=np.square(x.data - mean[self.rows]), minlength=x.shape[0]
        )
        tt = dev + (n_feat - stored) * np.square(mean)
        pc = p - p.mean(axis=1, keepdims=True)
        # sum_j (x_ij - mean_i) pc_ij over stored entries, minus mean_i sum_j pc_ij
        num = np.bincount(
            self.rows, weights=x.data * pc[self.rows, x.indices], minlength=x.shape[0]
        )
        num = num.astype(np.float64) - mean * pc.sum(axis=1)  # bincount of nothing: int
        pp = np.einsum("ij,ij->i", pc, pc)
        valid = (tt > 0) & (p.max(axis=1) > p.min(axis=1))
        out = np.full(x.shape[0], np.nan)
        out[valid] = np.clip(num[valid] / np.sqrt(tt[valid] * pp[valid]), -1.0, 1.0)
        return out

    def positive(self) -> np.ndarray:
        """Boolean ``x > 0``."""
        if not self.sparse:
            return self.x > 0
        out = np.zeros(self.shape, dtype=bool)
        out[self.rows, self.x.indices] = self.x.data > 0
        return out

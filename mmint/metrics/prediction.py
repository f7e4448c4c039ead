"""Prediction metrics (reconstruction and cross-modal translation): R2, Pearson, AUROC.

Everything is accumulated in float64 over chunks of cells, so a large (sparse) ATAC matrix is
never densified whole: :class:`PredictionAccumulator` takes ``(x_true_chunk, x_pred_chunk)``
pairs, and the functions :func:`r2`, :func:`degenerate_features`, :func:`pearson_per_cell` and
:func:`auroc` feed it row chunks of whole matrices. ``x_true`` (and ``x_pred``) may be numpy
arrays or scipy sparse matrices; only one chunk is dense at a time.

Definitions (the contracts' ``r2``, ``r2_variance_weighted``, ``r2_excluded_features``,
``pearson`` and ``auroc``):

- a feature is *degenerate* when its variance among the scored cells (population variance,
  ``ddof=0``, of ``x_true``) is ``<= 1e-8``; degenerate features are left out of both R2s;
- uniform R2 = mean over non-degenerate features j of ``1 - SSE_j / SST_j`` with
  ``SSE_j = sum_i (x_true_ij - x_pred_ij)^2`` and ``SST_j = sum_i (x_true_ij - mean_j)^2``
  (identical to :func:`sklearn.metrics.r2_score` with ``multioutput="uniform_average"`` on
  those columns);
- variance-weighted R2 = ``1 - sum_j SSE_j / sum_j SST_j`` over non-degenerate features
  (sklearn's ``"variance_weighted"`` on those columns);
- Pearson = mean over cells of the Pearson correlation between the cell's true and predicted
  feature vectors (all features); cells whose true or predicted vector is constant are skipped;
- AUROC = mean over cells of the ROC AUC of the predicted values against ``x_true > 0``
  (all features); cells whose true vector is all 0 or all 1 are skipped. Ties get average
  ranks, as in :func:`sklearn.metrics.roc_auc_score`.

When nothing can be scored (no cells, every feature degenerate, every cell skipped) the result
is ``nan``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Literal

import numpy as np
import scipy.sparse as sp

from mmint.metrics.rowwise import Chunk, dense64, per_cell_auroc

#: Features whose variance among the scored cells is at most this are excluded from R2.
VARIANCE_EPS: float = 1e-8

#: Target number of matrix entries in one dense chunk (float64: 32 MiB per array).
CHUNK_ENTRIES: int = 2**22

Weighting = Literal["uniform", "variance"]


def _row_sliceable(x):
    """Return ``x`` in a form whose row slices are cheap (CSR for sparse input)."""
    if sp.issparse(x) and x.format != "csr":
        return sp.csr_matrix(x)
    if not sp.issparse(x):
        return np.asarray(x)
    return x


def _default_chunk_size(n_features: int) -> int:
    return max(1, CHUNK_ENTRIES // max(1, n_features))


def iter_row_chunks(n_rows: int, chunk_size: int) -> Iterator[slice]:
    """Yield consecutive row slices of at most ``chunk_size`` rows covering ``range(n_rows)``.

    Parameters
    ----------
    n_rows
        Number of rows.
    chunk_size
        Rows per chunk (at least 1).

    Yields
    ------
    slice
        ``slice(start, stop)`` of each chunk.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    for start in range(0, n_rows, chunk_size):
        yield slice(start, min(start + chunk_size, n_rows))


class PredictionAccumulator:
    """Streaming float64 sums for R2, per-cell Pearson and per-cell AUROC.

    Feed it chunks of cells with :meth:`update`; the results equal those computed on the
    concatenation of all chunks (up to float64 rounding). Per feature it keeps the number of
    cells, the mean and the centred sum of squares of ``x_true`` (merged across chunks with
    Chan et al.'s parallel update, which stays accurate for near-constant features) and the sum
    of squared errors; per cell it keeps running sums of the Pearson r and AUROC values.

    Parameters
    ----------
    compute_auroc
        Also accumulate per-cell AUROC (for binary targets; ``x_true > 0`` is the positive
        class). Off by default because it ranks every chunk.

    Examples
    --------
    >>> acc = PredictionAccumulator()
    >>> for rows in iter_row_chunks(x_true.shape[0], 512):  # doctest: +SKIP
    ...     acc.update(x_true[rows], x_pred[rows])
    >>> acc.r2()  # doctest: +SKIP
    """

    def __init__(self, compute_auroc: bool = False) -> None:
        self.compute_auroc = compute_auroc
        self.n_cells = 0
        self.n_features: int | None = None
        self._mean: np.ndarray | None = None
        self._m2: np.ndarray | None = None
        self._sse: np.ndarray | None = None
        self._has_all_predictions = True
        self._pearson_sum = 0.0
        self._pearson_n = 0
        self._auroc_sum = 0.0
        self._auroc_n = 0

    def update(self, x_true, x_pred=None) -> None:
        """Add a chunk of cells.

        Parameters
        ----------
        x_true
            Observed values of shape (n_chunk, n_features); numpy or scipy sparse (a sparse
            chunk is never densified: its moments come from the stored entries, the
            residuals from the dense prediction minus the stored entries).
        x_pred
            Predicted values of the same shape; numpy or scipy sparse. ``None`` accumulates
            only the feature moments (enough for :meth:`n_degenerate`); R2, Pearson and AUROC
            then raise.
        """
        rows = _default_chunk_size(x_true.shape[1]) if np.ndim(x_true) == 2 else 0
        if rows and x_true.shape[0] > rows:
            # wide chunks (1,024 cells x 25,734 peaks) are split: a few float64 copies of a
            # whole chunk would cost gigabytes
            for part in iter_row_chunks(x_true.shape[0], rows):
                self.update(x_true[part], None if x_pred is None else x_pred[part])
            return
        t = Chunk(x_true)
        if self.n_features is None:
            self.n_features = t.shape[1]
            self._mean = np.zeros(self.n_features)
            self._m2 = np.zeros(self.n_features)
            self._sse = np.zeros(self.n_features)
        if t.shape[1] != self.n_features:
            raise ValueError(f"chunk has {t.shape[1]} features, expected {self.n_features}")
        n_b = t.shape[0]
        if n_b == 0:
            return

        # Chan et al. merge of (n, mean, M2).
        mean_b, m2_b = t.column_moments()
        n_a = self.n_cells
        n = n_a + n_b
        delta = mean_b - self._mean
        self._mean = self._mean + delta * (n_b / n)
        self._m2 = self._m2 + m2_b + np.square(delta) * (n_a * n_b / n)
        self.n_cells = n

        if x_pred is None:
            self._has_all_predictions = False
            return
        p = dense64(x_pred)
        if p.shape != t.shape:
            raise ValueError(f"x_pred has shape {p.shape}, x_true has {t.shape}")
        self._sse += np.square(t.residual(p)).sum(axis=0)
        r = t.pearson(p)
        self._pearson_sum += float(np.nansum(r))
        self._pearson_n += int(np.count_nonzero(~np.isnan(r)))
        if self.compute_auroc:
            a = per_cell_auroc(t.positive(), p)
            self._auroc_sum += float(np.nansum(a))
            self._auroc_n += int(np.count_nonzero(~np.isnan(a)))

    def _require_predictions(self) -> None:
        if not self._has_all_predictions:
            raise RuntimeError("some chunks were added without x_pred")

    def feature_variance(self) -> np.ndarray:
        """Population variance (``ddof=0``) of each feature of ``x_true`` over all cells seen."""
        if self.n_cells == 0 or self._m2 is None:
            return np.zeros(0 if self.n_features is None else self.n_features)
        return self._m2 / self.n_cells

    def degenerate_mask(self) -> np.ndarray:
        """Boolean mask of the features whose variance is ``<= VARIANCE_EPS``."""
        return self.feature_variance() <= VARIANCE_EPS

    def n_degenerate(self) -> int:
        """Number of degenerate features (the contracts' ``r2_excluded_features``)."""
        return int(self.degenerate_mask().sum())

    def r2(self, weighting: Weighting = "uniform") -> float:
        """R2 over the non-degenerate features.

        Parameters
        ----------
        weighting
            ``"uniform"``: mean of the per-feature R2; ``"variance"``:
            ``1 - sum SSE / sum SST``.

        Returns
        -------
        float
            The R2 (float64), ``nan`` when no feature is left.
        """
        self._require_predictions()
        if weighting not in ("uniform", "variance"):
            raise ValueError(f"weighting must be 'uniform' or 'variance', got {weighting!r}")
        if self.n_cells == 0:
            return float("nan")
        keep = ~self.degenerate_mask()
        if not keep.any():
            return float("nan")
        sse, sst = self._sse[keep], self._m2[keep]
        if weighting == "uniform":
            return float(np.mean(1.0 - sse / sst))
        return float(1.0 - sse.sum() / sst.sum())

    def pearson(self) -> float:
        """Mean per-cell Pearson r over the cells with non-constant true and predicted vectors."""
        self._require_predictions()
        return self._pearson_sum / self._pearson_n if self._pearson_n else float("nan")

    def auroc(self) -> float:
        """Mean per-cell AUROC over the cells whose true vector has both classes."""
        self._require_predictions()
        if not self.compute_auroc:
            raise RuntimeError("the accumulator was created with compute_auroc=False")
        return self._auroc_sum / self._auroc_n if self._auroc_n else float("nan")

    def result(self) -> dict[str, float | int]:
        """All accumulated metrics.

        Returns
        -------
        dict
            ``{"r2", "r2_variance_weighted", "r2_excluded_features", "pearson"}`` plus
            ``"auroc"`` when ``compute_auroc`` is on.
        """
        out: dict[str, float | int] = {
            "r2": self.r2("uniform"),
            "r2_variance_weighted": self.r2("variance"),
            "r2_excluded_features": self.n_degenerate(),
            "pearson": self.pearson(),
        }
        if self.compute_auroc:
            out["auroc"] = self.auroc()
        return out


def accumulate(
    x_true, x_pred=None, compute_auroc: bool = False, chunk_size: int | None = None
) -> PredictionAccumulator:
    """Run a :class:`PredictionAccumulator` over whole matrices, chunk by chunk.

    Parameters
    ----------
    x_true
        Observed matrix (n_cells, n_features); numpy or scipy sparse.
    x_pred
        Predicted matrix of the same shape, or ``None`` (moments only).
    compute_auroc
        Also accumulate per-cell AUROC.
    chunk_size
        Cells per chunk; default: about 4M entries per chunk.

    Returns
    -------
    PredictionAccumulator
        The filled accumulator.
    """
    x_true = _row_sliceable(x_true)
    if x_true.ndim != 2:
        raise ValueError(f"x_true must be 2-dimensional, got shape {x_true.shape}")
    if x_pred is not None:
        x_pred = _row_sliceable(x_pred)
        if x_pred.shape != x_true.shape:
            raise ValueError(f"x_pred has shape {x_pred.shape}, x_true has {x_true.shape}")
    n_cells, n_features = x_true.shape
    acc = PredictionAccumulator(compute_auroc=compute_auroc)
    if n_cells == 0:
        acc.n_features = n_features
        return acc
    for rows in iter_row_chunks(n_cells, chunk_size or _default_chunk_size(n_features)):
        acc.update(x_true[rows], None if x_pred is None else x_pred[rows])
    return acc


def r2(x_true, x_pred, weighting: Weighting = "uniform", chunk_size: int | None = None) -> float:
    """Coefficient of determination over the non-degenerate features (float64).

    Parameters
    ----------
    x_true
        Observed matrix (n_cells, n_features); numpy or scipy sparse.
    x_pred
        Predicted matrix of the same shape.
    weighting
        ``"uniform"`` (mean of per-feature R2) or ``"variance"`` (``1 - sum SSE / sum SST``).
    chunk_size
        Cells per chunk (memory bound only; the value does not depend on it).

    Returns
    -------
    float
        R2 over the features whose variance among these cells exceeds ``1e-8``; ``nan`` if none.
    """
    return accumulate(x_true, x_pred, chunk_size=chunk_size).r2(weighting)


def r2_of_rows(
    x_true,
    predict: Callable[[slice], np.ndarray],
    weighting: Weighting = "uniform",
    chunk_size: int | None = None,
) -> float:
    """:func:`r2` of a prediction made chunk by chunk, so that the whole predicted matrix
    never exists (equal to ``r2(x_true, prediction)``: the same chunks, the same sums).

    Parameters
    ----------
    x_true
        Observed matrix (n_cells, n_features); numpy or scipy sparse.
    predict
        ``predict(rows)``: the dense prediction of the cells ``rows`` (a slice).
    weighting, chunk_size
        As in :func:`r2`.

    Returns
    -------
    float
        The R2.
    """
    x_true = _row_sliceable(x_true)
    n_cells, n_features = x_true.shape
    acc = PredictionAccumulator()
    for rows in iter_row_chunks(n_cells, chunk_size or _default_chunk_size(n_features)):
        acc.update(x_true[rows], predict(rows))
    return acc.r2(weighting) if n_cells else float("nan")


def degenerate_features(x_true, chunk_size: int | None = None) -> int:
    """Number of features whose variance (``ddof=0``) among the cells is ``<= 1e-8``.

    Parameters
    ----------
    x_true
        Observed matrix (n_cells, n_features); numpy or scipy sparse.
    chunk_size
        Cells per chunk.

    Returns
    -------
    int
        The number of features that :func:`r2` leaves out.
    """
    return accumulate(x_true, None, chunk_size=chunk_size).n_degenerate()


def pearson_per_cell(x_true, x_pred, chunk_size: int | None = None) -> float:
    """Mean over cells of the Pearson correlation between true and predicted feature vectors.

    Parameters
    ----------
    x_true
        Observed matrix (n_cells, n_features); numpy or scipy sparse.
    x_pred
        Predicted matrix of the same shape.
    chunk_size
        Cells per chunk.

    Returns
    -------
    float
        Mean Pearson r over the cells whose true and predicted vectors are both non-constant;
        ``nan`` if there is none.
    """
    return accumulate(x_true, x_pred, chunk_size=chunk_size).pearson()


def auroc(x_true_binary, x_pred, chunk_size: int | None = None) -> float:
    """Mean per-cell AUROC of predicted values against binary observations.

    For each cell, the ROC AUC ranking its features by ``x_pred`` against ``x_true > 0``
    (equal to :func:`sklearn.metrics.roc_auc_score` of that row).

    Parameters
    ----------
    x_true_binary
        Observed matrix (n_cells, n_features); entries ``> 0`` are positives. Numpy or scipy
        sparse.
    x_pred
        Predicted scores (probabilities or logits) of the same shape.
    chunk_size
        Cells per chunk.

    Returns
    -------
    float
        Mean AUROC over the cells that have both positive and negative features; ``nan`` if
        there is none.
    """
    return accumulate(x_true_binary, x_pred, compute_auroc=True, chunk_size=chunk_size).auroc()

"""Modality kinds and their model-input transforms, fitted on training cells only.

A :class:`FittedTransform` holds everything learned from the training split (selected
features, scaler statistics, IDF weights) so that val/test cells and checkpoints reuse it:
the original UnitedNet fitted a separate scaler on the test fold, mmint never does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from mmint.data.spec import KINDS
from mmint.errors import InputError
from mmint.nn.sparse import SPARSE_MIN_FEATURES

#: transform names and the kinds they may be applied to
TRANSFORMS: dict[str, tuple[str, ...]] = {
    "lognorm": ("counts",),
    "clr": ("counts",),
    "binarize": ("binary", "counts"),
    "tfidf": ("binary", "counts"),
    "standardize": ("continuous", "counts"),
    "none": KINDS,
}
DEFAULT_TRANSFORM = {"counts": "lognorm", "binary": "binarize", "continuous": "standardize"}
TARGET_SUM = 1e4
_MIN_STD = 1e-8
#: transforms whose values are dense by definition, and those that keep a sparse input sparse
DENSE_TRANSFORMS = ("clr", "standardize")
SPARSE_TRANSFORMS = ("lognorm", "tfidf", "binarize", "none")
#: matrix entries per row block of the blockwise transforms and statistics
BLOCK_ENTRIES = 2**24

Matrix = np.ndarray | sp.csr_matrix


def check_transform(modality: str, kind: str, name: str | None) -> str:
    """Return the transform for ``modality`` (default by kind) or raise a clear error."""
    if kind not in KINDS:
        raise InputError(
            f"unknown modality kind '{kind}'", f"modality '{modality}'", f"use one of {list(KINDS)}"
        )
    name = name or DEFAULT_TRANSFORM[kind]
    if name not in TRANSFORMS:
        raise InputError(
            f"unknown transform '{name}'",
            f"data.transforms.{modality}",
            f"use one of {list(TRANSFORMS)}",
        )
    if kind not in TRANSFORMS[name]:
        raise InputError(
            f"transform '{name}' does not apply to a '{kind}' modality",
            f"data.transforms.{modality}",
            f"use one of {[t for t, k in TRANSFORMS.items() if kind in k]}",
        )
    return name


@dataclass
class FittedTransform:
    """A modality's feature selection and input transform, fitted on training cells.

    Parameters
    ----------
    name
        Transform name (see :data:`TRANSFORMS`).
    features
        Indices of the kept features in the raw matrix.
    params
        Fitted arrays (``mean``/``std`` for ``standardize``, ``idf`` for ``tfidf``).
    """

    name: str
    features: np.ndarray
    params: dict[str, np.ndarray] = field(default_factory=dict)

    def select(self, x: Matrix) -> Matrix:
        """Keep the selected features of a raw matrix."""
        if len(self.features) == x.shape[1] and np.array_equal(
            self.features, np.arange(x.shape[1])
        ):
            return x
        return x[:, self.features]

    def apply(self, x: Matrix) -> Matrix:
        """Selected raw values -> float32 model input.

        A sparse input stays sparse (``lognorm``, ``tfidf``, ``binarize``, ``none``): the new
        values are computed in row blocks and the result shares the input's index arrays, so
        no dense copy and no second copy of the indices is made. ``clr`` and ``standardize``
        give dense values by definition; they are computed in row blocks (a wide sparse
        modality is refused before, see :func:`check_dense_width`).
        """
        x = _as_float32(x)
        if self.name == "none":
            return x
        if self.name == "binarize":
            return _binarize(x)
        if self.name == "lognorm":
            return _scaled_log1p(x, TARGET_SUM / _row_sums(x))
        if self.name == "tfidf":
            return _scaled_log1p(x, 1.0 / _row_sums(x), self.params["idf"] * TARGET_SUM)
        if self.name == "clr":
            return _dense_rows(x, _clr)
        if self.name == "standardize":
            mean, std = self.params["mean"], self.params["std"]
            return _dense_rows(x, lambda d: (d - mean) / std)
        raise AssertionError(self.name)

    def state(self) -> dict[str, Any]:
        """Plain-dict state for checkpoints."""
        return {"name": self.name, "features": self.features, "params": dict(self.params)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> FittedTransform:
        """Rebuild from :meth:`state`."""
        params = {k: np.asarray(v) for k, v in state["params"].items()}
        return cls(state["name"], np.asarray(state["features"]), params)


def fit_transform(
    x_train: Matrix,
    kind: str,
    name: str,
    n_top_features: int | None = None,
    rows: np.ndarray | None = None,
) -> FittedTransform:
    """Fit feature selection and the input transform on raw training values.

    Feature selection (when ``n_top_features`` is below the feature count): counts -> the
    most variable genes after log-normalisation (Seurat's dispersion rule, via scanpy);
    binary -> the most frequently open peaks; continuous -> the most variable features.

    ``rows``: the training rows of ``x_train`` (default: all of them). Statistics are
    accumulated over row blocks, so the training cells of a large matrix are never copied
    whole (only the highly-variable-gene selection copies them, for scanpy).
    """
    n_features = x_train.shape[1]
    rows = np.arange(x_train.shape[0]) if rows is None else np.asarray(rows)
    features = np.arange(n_features)
    if n_top_features is not None and n_top_features < n_features:
        features = _select_features(x_train, rows, kind, n_top_features)
    sel = features if len(features) < n_features else None
    params: dict[str, np.ndarray] = {}
    if name == "standardize":
        mean, var = column_moments(x_train, rows, sel)
        std = np.sqrt(var)
        params = {
            "mean": mean.astype(np.float32),
            # constant training features are centred, not blown up
            "std": np.where(std > _MIN_STD, std, 1.0).astype(np.float32),
        }
    elif name == "tfidf":
        col = _positive_counts(x_train, rows, sel)
        params = {"idf": (len(rows) / (1.0 + col)).astype(np.float32)}
    return FittedTransform(name, features, params)


def check_dense_width(
    modality: str, n_cells: int, sparse: bool, transform: str, width: int
) -> None:
    """A wide sparse modality (``width`` >= :data:`SPARSE_MIN_FEATURES` model-input features)
    is never made dense: ``clr`` and ``standardize`` (dense by definition) are refused there
    with the way out."""
    if transform in DENSE_TRANSFORMS and sparse and width >= SPARSE_MIN_FEATURES:
        gb = n_cells * width * 4 / 1e9
        raise InputError(
            f"transform '{transform}' would make the sparse modality '{modality}' dense "
            f"({n_cells} cells x {width} features, {gb:.1f} GB)",
            f"data.transforms.{modality}",
            f"use a sparse transform ({', '.join(SPARSE_TRANSFORMS)}), or keep fewer than "
            f"{SPARSE_MIN_FEATURES} features (data.n_top_features.{modality})",
        )


def _select_features(x: Matrix, rows: np.ndarray, kind: str, n_top: int) -> np.ndarray:
    if kind == "counts":
        import anndata as ad
        import scanpy as sc

        # float64: float32 log1p differs per CPU (see _scaled_log1p) and could flip a tie
        adata = ad.AnnData(x[rows].astype(np.float64))
        sc.pp.normalize_total(adata, target_sum=TARGET_SUM)
        sc.pp.log1p(adata)
        sc.pp.highly_variable_genes(adata, n_top_genes=n_top, flavor="seurat")
        score = adata.var["dispersions_norm"].fillna(-np.inf).to_numpy()
    elif kind == "binary":
        score = _positive_counts(x, rows, None).astype(float)
    else:
        score = column_moments(x, rows, None)[1]
    # stable order: best first, ties by index; then keep original feature order
    order = np.lexsort((np.arange(len(score)), -score))[:n_top]
    return np.sort(order)


def row_blocks(x: Any, rows: np.ndarray, n_entries: int = BLOCK_ENTRIES) -> Iterator[Any]:
    """``x[rows]`` in consecutive blocks of about ``n_entries`` matrix entries (at least one
    row each), so that a statistic over many rows never copies them all at once."""
    size = max(1, n_entries // max(1, x.shape[1]))
    for i in range(0, len(rows), size):
        yield x[rows[i : i + size]]


def column_moments(
    x: Matrix, rows: np.ndarray, features: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Float64 mean and population variance of each column of ``x[rows]`` (two passes over
    row blocks; sparse blocks are read through their stored entries)."""
    n = max(1, len(rows))
    total = None
    for block in row_blocks(x, rows):
        block = _select_cols(block, features)
        block = block.astype(np.float64) if sp.issparse(block) else np.asarray(block, np.float64)
        s = np.asarray(block.sum(axis=0)).ravel()
        total = s if total is None else total + s
    width = x.shape[1] if features is None else len(features)
    mean = (total if total is not None else np.zeros(width)) / n
    dev = np.zeros(width)
    for block in row_blocks(x, rows):
        block = _select_cols(block, features)
        if sp.issparse(block):
            b = sp.csr_matrix(block, dtype=np.float64)
            stored = np.bincount(b.indices, minlength=width)
            dev += np.bincount(b.indices, np.square(b.data - mean[b.indices]), minlength=width)
            dev += (b.shape[0] - stored) * np.square(mean)
        else:
            dev += np.square(np.asarray(block, dtype=np.float64) - mean).sum(axis=0)
    return mean, dev / n


def pooled_variance(x: Any, rows: np.ndarray) -> float:
    """Variance of all entries of ``x[rows]`` (every feature pooled), from row blocks merged
    with Chan et al.'s update (one block: the direct formula)."""
    n_all, mean_all, m2_all = 0, 0.0, 0.0
    for block in row_blocks(x, rows):
        n = block.shape[0] * block.shape[1]
        if n == 0:
            continue
        if sp.issparse(block):
            mean = block.sum() / n
            var = float(block.multiply(block).sum() / n - mean**2)
        else:
            mean, var = np.mean(block, dtype=np.float64), float(np.var(block, dtype=np.float64))
        total = n_all + n
        delta = float(mean) - mean_all
        m2_all += var * n + delta**2 * n_all * n / total
        mean_all += delta * n / total
        n_all = total
    return m2_all / n_all if n_all else 0.0


def _positive_counts(x: Matrix, rows: np.ndarray, features: np.ndarray | None) -> np.ndarray:
    """Per column, the number of rows of ``x[rows]`` with a value above 0."""
    out = None
    for block in row_blocks(x, rows):
        block = _select_cols(block, features)
        c = np.asarray(_binarize(_as_float32(block)).sum(axis=0), dtype=np.float64).ravel()
        out = c if out is None else out + c
    width = x.shape[1] if features is None else len(features)
    return out if out is not None else np.zeros(width)


def _select_cols(x: Matrix, features: np.ndarray | None) -> Matrix:
    return x if features is None else x[:, features]


def _as_float32(x: Matrix) -> Matrix:
    if sp.issparse(x):
        x = sp.csr_matrix(x)
        return x.astype(np.float32) if x.dtype != np.float32 else x
    return np.asarray(x, dtype=np.float32)


def _row_sums(x: Matrix) -> np.ndarray:
    s = np.asarray(x.sum(axis=1), dtype=np.float64).ravel()
    return np.where(s > 0, s, 1.0)  # empty rows (absent modality) stay zero


def _scaled_log1p(
    x: Matrix, row_factor: np.ndarray, col_factor: np.ndarray | None = None
) -> Matrix:
    """``log1p(x * row_factor[:, None] * col_factor[None, :])``, computed in float64 and
    stored as float32.

    float64 because numpy's float32 ``log1p`` is vectorised differently per instruction set
    (AVX-512 against AVX2 results differ in the last bit), so the same file gave other model
    inputs on another CPU; float64 results rounded to float32 agree. On a sparse ``x`` only the
    stored entries are computed, in row blocks, and the result shares ``x``'s index arrays (no
    second copy of the indices).
    """
    row_factor = np.asarray(row_factor, dtype=np.float64)
    col = None if col_factor is None else np.asarray(col_factor, dtype=np.float64)
    if not sp.issparse(x):
        y = np.asarray(x, dtype=np.float64) * row_factor[:, None]
        if col is not None:
            y *= col[None, :]
        return np.log1p(y).astype(np.float32)
    data = np.empty(x.data.shape, dtype=np.float32)
    size = max(1, BLOCK_ENTRIES // max(1, x.shape[1]))
    for r0 in range(0, x.shape[0], size):
        r1 = min(r0 + size, x.shape[0])
        a, b = x.indptr[r0], x.indptr[r1]
        v = x.data[a:b].astype(np.float64)
        v *= np.repeat(row_factor[r0:r1], np.diff(x.indptr[r0 : r1 + 1]))
        if col is not None:
            v *= col[x.indices[a:b]]
        data[a:b] = np.log1p(v)
    return sp.csr_matrix((data, x.indices, x.indptr), shape=x.shape, copy=False)


def _dense_rows(x: Matrix, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``fn`` on dense row blocks of ``x`` into one float32 array (a dense-valued transform)."""
    if not sp.issparse(x):
        return fn(x).astype(np.float32)
    out = np.empty(x.shape, dtype=np.float32)
    size = max(1, BLOCK_ENTRIES // max(1, x.shape[1]))
    for r0 in range(0, x.shape[0], size):
        out[r0 : r0 + size] = fn(x[r0 : r0 + size].toarray())
    return out


def _clr(x: np.ndarray) -> np.ndarray:
    dense = np.log1p(np.asarray(x, dtype=np.float64))  # float64: see _scaled_log1p
    return dense - dense.mean(axis=1, keepdims=True)


def _binarize(x: Matrix) -> Matrix:
    if sp.issparse(x):
        x = sp.csr_matrix(x)
        if (x.data > 0).all():  # the usual case: same entries, index arrays shared
            ones = np.ones(x.data.shape, dtype=np.float32)
            return sp.csr_matrix((ones, x.indices, x.indptr), shape=x.shape, copy=False)
        x = sp.csr_matrix(x, copy=True)
        x.data = (x.data > 0).astype(np.float32)
        x.eliminate_zeros()
        return x
    return (x > 0).astype(np.float32)

"""Modality kinds and their model-input transforms, fitted on training cells only.

A :class:`FittedTransform` holds everything learned from the training split (selected
features, scaler statistics, IDF weights) so that val/test cells and checkpoints reuse it:
the original UnitedNet fitted a separate scaler on the test fold, mmint never does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from mmint.data.spec import KINDS
from mmint.errors import InputError

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
        """Selected raw values -> float32 model input (sparse stays sparse where it can)."""
        x = _as_float32(x)
        if self.name == "none":
            return x
        if self.name == "binarize":
            return _binarize(x)
        if self.name == "lognorm":
            return _log1p(_scale_rows(x, TARGET_SUM / _row_sums(x)))
        if self.name == "tfidf":
            tf = _scale_rows(x, 1.0 / _row_sums(x))
            return _log1p(_scale_cols(tf, self.params["idf"] * TARGET_SUM))
        if self.name == "clr":
            dense = np.log1p(_dense(x))
            return (dense - dense.mean(axis=1, keepdims=True)).astype(np.float32)
        if self.name == "standardize":
            return ((_dense(x) - self.params["mean"]) / self.params["std"]).astype(np.float32)
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
    x_train: Matrix, kind: str, name: str, n_top_features: int | None = None
) -> FittedTransform:
    """Fit feature selection and the input transform on raw training values.

    Feature selection (when ``n_top_features`` is below the feature count): counts -> the
    most variable genes after log-normalisation (Seurat's dispersion rule, via scanpy);
    binary -> the most frequently open peaks; continuous -> the most variable features.
    """
    n_features = x_train.shape[1]
    features = np.arange(n_features)
    if n_top_features is not None and n_top_features < n_features:
        features = _select_features(x_train, kind, n_top_features)
    x_sel = x_train[:, features] if len(features) < n_features else x_train
    params: dict[str, np.ndarray] = {}
    if name == "standardize":
        dense = _dense(_as_float32(x_sel)).astype(np.float64)
        std = dense.std(axis=0)
        params = {
            "mean": dense.mean(axis=0).astype(np.float32),
            # constant training features are centred, not blown up
            "std": np.where(std > _MIN_STD, std, 1.0).astype(np.float32),
        }
    elif name == "tfidf":
        col = np.asarray((_binarize(_as_float32(x_sel))).sum(axis=0)).ravel()
        params = {"idf": (x_sel.shape[0] / (1.0 + col)).astype(np.float32)}
    return FittedTransform(name, features, params)


def _select_features(x: Matrix, kind: str, n_top: int) -> np.ndarray:
    if kind == "counts":
        import anndata as ad
        import scanpy as sc

        adata = ad.AnnData(_as_float32(x).copy())
        sc.pp.normalize_total(adata, target_sum=TARGET_SUM)
        sc.pp.log1p(adata)
        sc.pp.highly_variable_genes(adata, n_top_genes=n_top, flavor="seurat")
        score = adata.var["dispersions_norm"].fillna(-np.inf).to_numpy()
    elif kind == "binary":
        score = np.asarray((_binarize(_as_float32(x))).sum(axis=0)).ravel().astype(float)
    else:
        score = _dense(x).astype(np.float64).var(axis=0)
    # stable order: best first, ties by index; then keep original feature order
    order = np.lexsort((np.arange(len(score)), -score))[:n_top]
    return np.sort(order)


def _as_float32(x: Matrix) -> Matrix:
    if sp.issparse(x):
        x = sp.csr_matrix(x)
        return x.astype(np.float32) if x.dtype != np.float32 else x
    return np.asarray(x, dtype=np.float32)


def _dense(x: Matrix) -> np.ndarray:
    return x.toarray() if sp.issparse(x) else np.asarray(x)


def _row_sums(x: Matrix) -> np.ndarray:
    s = np.asarray(x.sum(axis=1), dtype=np.float64).ravel()
    return np.where(s > 0, s, 1.0)  # empty rows (absent modality) stay zero


def _scale_rows(x: Matrix, factors: np.ndarray) -> Matrix:
    if sp.issparse(x):
        return sp.csr_matrix(sp.diags(factors.astype(np.float32)) @ x)
    return (x * factors[:, None]).astype(np.float32)


def _scale_cols(x: Matrix, factors: np.ndarray) -> Matrix:
    if sp.issparse(x):
        return sp.csr_matrix(x @ sp.diags(factors.astype(np.float32)))
    return (x * factors[None, :]).astype(np.float32)


def _log1p(x: Matrix) -> Matrix:
    if sp.issparse(x):
        x = x.copy()
        x.data = np.log1p(x.data).astype(np.float32)
        return x
    return np.log1p(x).astype(np.float32)


def _binarize(x: Matrix) -> Matrix:
    if sp.issparse(x):
        x = sp.csr_matrix(x, copy=True)
        x.data = (x.data > 0).astype(np.float32)
        x.eliminate_zeros()
        return x
    return (x > 0).astype(np.float32)

"""Input reduction (``data.reduce``): a modality replaced by K components fitted on training cells.

``data.reduce: {<modality>: {method: svd | lsi, n_components: K}}`` turns any modality into a
K-column ``continuous`` model input, for every model: the deep models' first and last layers
then have K columns instead of the modality's width (a wide sparse modality read as dense
values makes them huge, slow and, measured in ``benchmarks/results/speed.md``, no better than
chance).

- ``svd``: truncated SVD (uncentred, as :class:`sklearn.decomposition.TruncatedSVD`) of the
  modality's model input as its transform gives it (``data.transforms``, default by kind;
  a reduced ``continuous`` modality defaults to ``none``: standardising a wide sparse matrix
  would make it dense).
- ``lsi``: the project's TF-IDF (``tfidf``: term frequency x inverse document frequency,
  log1p, idf from training cells) then the same SVD; values must not be negative.

The axes come from a randomised SVD of the training cells' rows (Halko et al.;
:func:`mmint.nn.projection.centred_svd_lowrank` with a zero mean, the code behind the
CVQVAE-style ``pca`` input and the PCA floor), through sparse products only: the wide matrix
is never made dense. Every cell is then projected (``x @ V``, row blocks) and each component
is standardised with the training cells' mean and standard deviation, as any ``continuous``
modality is: the components' raw scales span orders of magnitude (the first LSI component
follows sequencing depth), and standardised they weigh alike in the models' Gaussian / MSE
losses, the same as Signac's default (``scale.embeddings``). (L2-normalising each cell was not
chosen: it changes every cell's scale differently, so the input is no longer a linear map of
the modality.)

Cross-modal prediction metrics (``r2``, ``pearson``) to a reduced modality are computed on its
standardised components, not on its original features; ``metrics.json`` records the reduction
under ``reduction``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from mmint.data.modality import check_transform, column_moments, row_blocks
from mmint.errors import InputError

METHODS = ("svd", "lsi")
_KEYS = {"method", "n_components"}
_MIN_STD = 1e-8
#: oversampling and power iterations of the randomised SVD (sklearn's TruncatedSVD: 10 and 5)
OVERSAMPLE, N_ITER = 10, 7


def check_reduce(
    cfg: Mapping[str, Any] | None, widths: Mapping[str, int], transforms: Mapping[str, Any]
) -> dict[str, tuple[str, int]]:
    """``{modality: (method, n_components)}`` from ``data.reduce``, or a one-line
    :class:`InputError`.

    Parameters
    ----------
    cfg
        ``data.reduce`` (``None``: no reduction).
    widths
        Features per modality after feature selection (``data.n_top_features``).
    transforms
        ``data.transforms`` as given (``lsi`` computes its own TF-IDF).
    """
    out = {}
    for m, entry in dict(cfg or {}).items():
        where = f"data.reduce.{m}"
        if m not in widths:
            raise InputError(
                f"data.reduce names modality '{m}', which the data does not have",
                where,
                f"use one of: {', '.join(widths)}",
            )
        entry = dict(entry or {})
        if set(entry) - _KEYS or "n_components" not in entry:
            raise InputError(
                f"data.reduce.{m} needs exactly method and n_components, got {sorted(entry)}",
                where,
                f"e.g. 'data.reduce={{{m}: {{method: svd, n_components: 50}}}}'",
            )
        method = str(entry.get("method") or "svd")
        if method not in METHODS:
            raise InputError(
                f"unknown reduction method '{method}'", f"{where}.method", "use svd or lsi"
            )
        k, width = entry["n_components"], int(widths[m])
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k < width:
            raise InputError(
                f"n_components {k!r} must be a whole number from 1 to below the {width} "
                f"features of '{m}'",
                f"{where}.n_components",
                f"use 1 to {width - 1} (typically 30-100)",
            )
        if method == "lsi" and (transforms or {}).get(m):
            raise InputError(
                f"method lsi computes its own TF-IDF, but data.transforms.{m} is also given",
                f"data.transforms.{m}",
                f"drop data.transforms.{m}, or use method svd",
            )
        out[str(m)] = (method, int(k))
    return out


def input_transforms(
    kinds: Mapping[str, str], reduce: Mapping[str, tuple[str, int]], given: Mapping[str, Any]
) -> dict[str, str]:
    """Each modality's input transform (checked): ``data.transforms``, else the kind's default,
    except for a reduced modality: ``tfidf`` under ``lsi`` (for any kind: TF-IDF applies to
    any non-negative values), and ``none`` by default for a ``continuous`` one under ``svd``."""
    out = {}
    for m, kind in kinds.items():
        method = reduce[m][0] if m in reduce else None
        if method == "lsi":
            out[m] = "tfidf"
            continue
        name = given.get(m) or ("none" if method == "svd" and kind == "continuous" else None)
        out[m] = check_transform(m, kind, name)
    return out


@dataclass
class FittedReduction:
    """A modality's reduction, fitted on training cells (see the module docstring).

    Parameters
    ----------
    method
        ``svd`` or ``lsi``.
    components
        Right singular vectors ``(n_features, K)``, each signed so its largest loading is
        positive.
    mean, std
        Training mean and standard deviation of each component's scores (the
        standardisation).
    explained_variance_ratio
        Per component: variance of its training scores over the total variance of the
        training input (sklearn's ``TruncatedSVD.explained_variance_ratio_``).
    n_train
        Training cells it was fitted on.
    """

    method: str
    components: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    explained_variance_ratio: np.ndarray
    n_train: int

    def scores(self, x: Any) -> np.ndarray:
        """Unstandardised scores ``x @ components`` (float64), sparse rows never densified."""
        out = np.empty((x.shape[0], self.components.shape[1]))
        i = 0
        for block in row_blocks(x, np.arange(x.shape[0])):
            out[i : i + block.shape[0]] = np.asarray(block @ self.components)
            i += block.shape[0]
        return out

    def apply(self, x: Any) -> np.ndarray:
        """The model input: standardised scores, float32 ``(n_cells, K)``."""
        return ((self.scores(x) - self.mean) / self.std).astype(np.float32)

    def record(self) -> dict[str, Any]:
        """What ``metrics.json`` records under ``reduction.<modality>``."""
        return {
            "method": self.method,
            "n_components": int(self.components.shape[1]),
            "explained_variance_ratio_sum": float(self.explained_variance_ratio.sum()),
            "fitted_on_train_cells": int(self.n_train),
            "scale": "standardized components",
        }

    def feature_names(self, modality: str) -> list[str]:
        """Names of the K input features (``<modality>_<method>1``, ...)."""
        return [f"{modality}_{self.method}{i + 1}" for i in range(self.components.shape[1])]

    def state(self) -> dict[str, Any]:
        """Plain-dict state for checkpoints."""
        return {
            "method": self.method,
            "components": self.components,
            "mean": self.mean,
            "std": self.std,
            "explained_variance_ratio": self.explained_variance_ratio,
            "n_train": self.n_train,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> FittedReduction:
        """Rebuild from :meth:`state`."""
        arrays = {
            k: np.asarray(state[k], dtype=np.float64)
            for k in ("components", "mean", "std", "explained_variance_ratio")
        }
        return cls(str(state["method"]), n_train=int(state["n_train"]), **arrays)


def fit_reduction(x: Any, rows: np.ndarray, method: str, k: int) -> FittedReduction:
    """Fit the reduction on the training ``rows`` of the model input ``x`` (dense, CSR or
    backed rows; ``lsi``: ``x`` is already TF-IDF).

    The randomised SVD runs in float64 under a fixed seed (the same axes for every run seed),
    on the training rows only; a sparse ``x`` stays sparse throughout.
    """
    from mmint.nn.projection import centred_svd_lowrank
    from mmint.nn.sparse import csr_tensor

    rows = np.asarray(rows)
    if len(rows) <= k:
        raise InputError(
            f"data.reduce asks for {k} components from {len(rows)} training cells",
            "data.reduce",
            f"use n_components below {len(rows)}",
        )
    train = x[rows]
    sparse = sp.issparse(train)
    train = sp.csr_matrix(train, dtype=np.float64) if sparse else np.asarray(train, np.float64)
    q = min(k + OVERSAMPLE, *train.shape)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if sparse:  # torch.svd_lowrank step for step on sparse products (no mean to remove)
            zero = torch.zeros(train.shape[1], dtype=torch.float64)
            xt = csr_tensor(train).to(torch.float64)
            axes = centred_svd_lowrank(xt, zero, q=q, niter=N_ITER)
        else:
            axes = torch.svd_lowrank(torch.from_numpy(train), q=q, niter=N_ITER)[2]
    axes = axes[:, :k].numpy()
    sign = np.sign(axes[np.abs(axes).argmax(0), np.arange(axes.shape[1])])
    axes = axes * np.where(sign == 0, 1.0, sign)
    scores = np.asarray(train @ axes)
    total = column_moments(x, rows)[1].sum()
    std = scores.std(axis=0)
    return FittedReduction(
        method=method,
        components=axes,
        mean=scores.mean(axis=0),
        std=np.where(std > _MIN_STD, std, 1.0),
        explained_variance_ratio=scores.var(axis=0) / max(total, _MIN_STD),
        n_train=len(rows),
    )


def check_lsi_values(modality: str, x: Any) -> None:
    """``lsi`` (TF-IDF) reads non-negative values: a one-line error otherwise."""
    for block in row_blocks(x, np.arange(x.shape[0])):
        values = block.data if sp.issparse(block) else np.asarray(block)
        if values.size and values.min() < 0:
            raise InputError(
                f"method lsi (TF-IDF) needs non-negative values, and '{modality}' has negative ones",
                f"data.reduce.{modality}.method",
                "use method svd",
            )

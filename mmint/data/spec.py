"""What a model needs to know about the data it is built for, as one serialisable object."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

KINDS = ("counts", "binary", "continuous")


@dataclass
class DataSpec:
    """Shapes and facts of a prepared dataset that models are sized from.

    Produced by :meth:`mmint.data.PairedDataModule.spec` after ``setup``; stored in model
    hyper-parameters (as a dict) so checkpoints reload without the data.

    Parameters
    ----------
    modalities
        Modality names, in a fixed order.
    kinds
        ``{modality: "counts" | "binary" | "continuous"}``.
    n_features
        ``{modality: number of model-input features}`` (after feature selection).
    transforms
        ``{modality: transform name}`` of the model input (``lognorm``, ``clr``, ``binarize``,
        ``tfidf``, ``standardize``, ``none``).
    n_batches
        Number of distinct batches (1 when the data has none).
    label_names
        Label categories (empty when there are no labels).
    train_label_counts
        Number of labelled training cells per label category (for class weights).
    train_batch_counts
        Number of training cells per batch code (empty: unknown, every batch counts as seen).
    input_variance
        ``{modality: variance of the model input over training cells}`` (all entries pooled).
    n_train
        Number of training cells.
    feature_names
        ``{modality: feature names}`` of the model input.
    n_cells
        Number of cells of the dataset (``batch["index"]`` is below it; 0: unknown).
    count_means
        ``{counts modality: mean raw count per feature over the training cells that have
        it}`` (left out of :meth:`to_dict` by default, as the feature names).
    """

    modalities: list[str]
    kinds: dict[str, str]
    n_features: dict[str, int]
    transforms: dict[str, str]
    n_batches: int = 1
    label_names: list[str] = field(default_factory=list)
    train_label_counts: list[int] = field(default_factory=list)
    train_batch_counts: list[int] = field(default_factory=list)
    input_variance: dict[str, float] = field(default_factory=dict)
    n_train: int = 0
    feature_names: dict[str, list[str]] = field(default_factory=dict)
    n_cells: int = 0
    count_means: dict[str, list[float]] = field(default_factory=dict)

    @property
    def n_labels(self) -> int:
        """Number of label categories."""
        return len(self.label_names)

    def class_weights(self) -> list[float]:
        """Balanced class weights ``n / (C * n_c)`` over training labels (sklearn's rule).

        Categories absent from training get weight 0.
        """
        counts = self.train_label_counts
        present = [c for c in counts if c > 0]
        n, n_classes = sum(present), len(present)
        return [n / (n_classes * c) if c > 0 else 0.0 for c in counts]

    def seen_batches(self) -> list[bool]:
        """Per batch code, whether training cells have it (all true when not recorded)."""
        counts = self.train_batch_counts
        if len(counts) != self.n_batches:
            return [True] * self.n_batches
        return [c > 0 for c in counts]

    def to_dict(self, with_feature_names: bool = False) -> dict[str, Any]:
        """Plain-dict form (feature names and count means left out by default to keep
        checkpoints small)."""
        out = asdict(self)
        if not with_feature_names:
            out["feature_names"] = {}
            out["count_means"] = {}
        return out

    @classmethod
    def from_any(cls, spec: DataSpec | dict[str, Any]) -> DataSpec:
        """Accept a :class:`DataSpec` or its dict form (as stored in hyper-parameters)."""
        return spec if isinstance(spec, DataSpec) else cls(**dict(spec))


def train_count_means(
    counts: Mapping[str, Any], masks: Mapping[str, np.ndarray], train: np.ndarray
) -> dict[str, list[float]]:
    """``{modality: mean raw count per feature}`` over the training cells that have the
    modality (float32, as the counts; modalities without such cells are left out).

    Parameters
    ----------
    counts
        Raw counts per modality, dense or sparse ``(n_cells, p)``.
    masks
        0/1 mask per modality ``(n_cells,)``.
    train
        Indices of the training cells.
    """
    out = {}
    for m, x in counts.items():
        rows = train[masks[m][train] > 0]
        if len(rows):
            size = max(1, 2**24 // max(1, x.shape[1]))
            if len(rows) <= size:
                mean = np.asarray(x[rows].mean(axis=0), dtype=np.float32).ravel()
            else:  # summed over row blocks: the training rows are never copied whole
                total = sum(
                    np.asarray(x[rows[i : i + size]].sum(axis=0), dtype=np.float64).ravel()
                    for i in range(0, len(rows), size)
                )
                mean = (total / len(rows)).astype(np.float32)
            out[m] = mean.tolist()
    return out

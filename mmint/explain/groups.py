"""What is explained: the groups of cells (model groups or labels) and their inputs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from mmint.errors import InputError


def dense_rows(dm: Any, modality: str, idx: np.ndarray) -> np.ndarray:
    """Model inputs of ``modality`` for cells ``idx`` as a dense float32 array."""
    x = dm.inputs[modality][np.asarray(idx, dtype=np.int64)]
    return np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float32)


def feature_names(dm: Any, modality: str) -> list[str]:
    """Names of the model-input features of ``modality``."""
    return dm.input_features(modality)


def observed(dm: Any, modalities: Sequence[str], idx: np.ndarray) -> np.ndarray:
    """The cells of ``idx`` that have every one of ``modalities``."""
    keep = np.ones(len(idx), dtype=bool)
    for m in modalities:
        keep &= dm.masks[m][idx] > 0
    return np.asarray(idx)[keep]


def explain_cells(
    dm: Any, groups: Groups, name: str, modalities: Sequence[str], cells: str = "all"
) -> np.ndarray:
    """Cells of group ``name`` among ``cells`` (``all``, ``train``, ...) that have every one of
    ``modalities``."""
    pool = observed(dm, modalities, dm.cells(cells))
    return pool[groups.codes[pool] == groups.names.index(name)]


def sample_cells(idx: np.ndarray, n: int | None, rng: np.random.Generator) -> np.ndarray:
    """``n`` of the cells ``idx`` drawn without replacement (all of them when fewer), sorted."""
    idx = np.asarray(idx)
    if n is None or len(idx) <= n:
        return np.sort(idx)
    return np.sort(rng.choice(idx, size=n, replace=False))


@dataclass
class Groups:
    """A grouping of all cells: ``codes`` (``-1``: no group) and group ``names``."""

    codes: np.ndarray
    names: list[str]
    source: str
    column: dict[str, int] = field(default_factory=dict)  # group name -> model output column

    def cells(self, name: str) -> np.ndarray:
        """Indices of the cells of group ``name``."""
        return np.flatnonzero(self.codes == self.names.index(name))


@torch.no_grad()
def model_groups(model: Any, dm: Any) -> np.ndarray | None:
    """The model's group code of every cell (``None`` without a group head)."""
    if hasattr(model, "eval"):
        model.eval()
    out = []
    for batch in dm.iter_batches(dm.cells("all")):
        g = model.predict_groups(batch)
        if g is None:
            return None
        out.append(g.cpu().numpy())
    return np.concatenate(out).astype(np.int64)


def make_groups(model: Any, dm: Any, by: str = "auto") -> Groups:
    """Cell groups for explaining.

    Parameters
    ----------
    by
        ``model`` (the model's group head; named by label for a classification head), ``label`` (``label_key``), ``class``
        (``class_key``), ``all`` (one group), an ``obs`` column name, or ``auto`` (``model``
        when the model has a group head, else ``label`` when the data has labels, else ``all``).
    """
    n = dm.data.n_cells
    if by in ("auto", "model"):
        codes = model_groups(model, dm)
        if codes is not None:
            k = model.group_count() or int(codes.max() + 1)
            names = [str(g) for g in range(k)]
            labels = list(model.spec.label_names)
            if model.groups_are_labels and len(labels) == k:
                names = labels  # a classification head: its groups are the label categories
            return Groups(codes, names, "model", {nm: i for i, nm in enumerate(names)})
        if by == "model":
            raise InputError(
                f"model '{model.name}' has no group head",
                "explain.groups",
                "use explain.groups=label, class, all or an obs column",
            )
        by = "label" if dm.data.label_key else "all"
    if by == "all":
        return Groups(np.zeros(n, dtype=np.int64), ["all"], "all")
    column = {"label": dm.data.label_key, "class": dm.data.class_key}.get(by, by)
    if column is None or column not in dm.data.obs.columns:
        known = ["model", "label", "class", "all", *map(str, dm.data.obs.columns)]
        raise InputError(
            f"no cell grouping '{by}' in this dataset", "explain.groups", f"use one of {known}"
        )
    col = dm.data.obs[column]
    valid = col.notna().to_numpy()
    values = col.astype(str).to_numpy()
    names = sorted(set(values[valid]))
    lookup = {v: i for i, v in enumerate(names)}
    codes = np.array([lookup[v] if ok else -1 for v, ok in zip(values, valid, strict=True)])
    return Groups(codes.astype(np.int64), names, by)


def group_composition(groups: Groups, dm: Any) -> pd.DataFrame:
    """Cells per (group, annotation value) for the label and class columns (tidy)."""
    rows = []
    obs = dm.data.obs
    for key in ("label_key", "class_key"):
        column = getattr(dm.data, key)
        if column is None:
            continue
        values = obs[column].astype(str).to_numpy()
        for gi, name in enumerate(groups.names):
            members = values[groups.codes == gi]
            if len(members) == 0:
                continue
            counts = pd.Series(members).value_counts()
            for value, count in counts.items():
                rows.append((name, column, value, int(count), count / len(members)))
    cols = ["group", "annotation", "value", "n_cells", "fraction"]
    return pd.DataFrame(rows, columns=cols)

"""Train / val / test splits: ``random``, ``kfold`` and ``holdout_batch``, deterministic by seed."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mmint.errors import InputError

SPLIT_KINDS = ("random", "kfold", "holdout_batch")
SETS = ("train", "val", "test")
_GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0


def strata(labels: np.ndarray, min_count: int) -> np.ndarray:
    """Stratum per cell: its label, with labels rarer than ``min_count`` (and -1) merged into one."""
    values, counts = np.unique(labels, return_counts=True)
    rare = set(values[(counts < min_count) | (values < 0)].tolist())
    return np.where(np.isin(labels, list(rare)), -2, labels)


def _stratified_assign(
    cells: np.ndarray, labels: np.ndarray, fractions: Sequence[float], rng: np.random.Generator
) -> list[np.ndarray]:
    """Assign ``cells`` to len(fractions) sets, stratified by ``labels``.

    Cells are ordered by stratum (random order inside) and walked with a low-discrepancy
    sequence, so every stratum and the whole get their fraction to within a cell or two.
    """
    frac = np.asarray(fractions, dtype=float)
    cum = np.cumsum(frac / frac.sum())
    order = np.lexsort((rng.random(len(cells)), labels))
    u = (rng.random() + np.arange(len(cells)) * _GOLDEN) % 1.0
    which = np.minimum(np.searchsorted(cum, u, side="right"), len(frac) - 1)
    return [np.sort(cells[order][which == i]) for i in range(len(frac))]


def make_split(
    labels: np.ndarray,
    batches: np.ndarray,
    batch_names: Sequence[str],
    kind: str = "random",
    seed: int = 0,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    k: int = 10,
    fold: int = 0,
    holdout: Sequence[str] = (),
) -> dict[str, np.ndarray]:
    """Split cells into ``train``/``val``/``test`` index arrays.

    Parameters
    ----------
    labels
        Label code per cell (-1 unknown); the split is stratified by it.
    batches, batch_names
        Batch code per cell and the code -> name table (for ``holdout_batch``).
    kind
        ``random`` (fractions), ``kfold`` (fold ``fold`` of ``k`` is test, the next fold val)
        or ``holdout_batch`` (cells of the ``holdout`` batches are the test target; the rest is
        split into train/val in proportion to the first two fractions).
    seed
        Seed: the same seed gives the same split.
    """
    labels = np.asarray(labels)
    n = len(labels)
    cells = np.arange(n)
    rng = np.random.default_rng(seed)
    if kind == "random":
        if len(fractions) != 3 or min(fractions) <= 0:
            raise InputError(
                f"bad split fractions {list(fractions)}",
                "split.fractions",
                "give three positive numbers",
            )
        parts = _stratified_assign(cells, strata(labels, 3), fractions, rng)
    elif kind == "kfold":
        if not 0 <= fold < k or k < 3:
            raise InputError(
                f"fold {fold} of k={k} is not valid",
                "split.fold / split.k",
                "use k >= 3 and 0 <= fold < k",
            )
        folds = _stratified_assign(cells, strata(labels, k), [1.0] * k, rng)
        test, val = folds[fold], folds[(fold + 1) % k]
        parts = [np.sort(np.setdiff1d(cells, np.concatenate([test, val]))), val, test]
    elif kind == "holdout_batch":
        names = [str(b) for b in batch_names]
        unknown = [h for h in holdout if str(h) not in names]
        if not holdout or unknown:
            raise InputError(
                f"holdout batches {unknown or '[]'} not found",
                "split.holdout",
                f"name one or more of the batches {names[:10]}",
            )
        codes = [names.index(str(h)) for h in holdout]
        target = np.isin(batches, codes)
        rest = cells[~target]
        train, val = _stratified_assign(rest, strata(labels[rest], 2), list(fractions[:2]), rng)
        parts = [train, val, cells[target]]
    else:
        raise InputError(
            f"unknown split kind '{kind}'", "split.kind", f"use one of {list(SPLIT_KINDS)}"
        )
    split = dict(zip(SETS, parts, strict=True))
    for name, idx in split.items():
        if len(idx) == 0:
            raise InputError(
                f"split '{kind}' leaves the {name} set empty ({n} cells)",
                "split",
                "use more cells, other fractions, or other holdout batches",
            )
    return split


def check_split_sizes(
    split: dict[str, np.ndarray],
    labels: np.ndarray,
    min_test_cells: int = 10,
    min_val_cells: int = 5,
    has_labels: bool = True,
) -> None:
    """Refuse a split too small to score: fewer than ``min_test_cells`` test cells, fewer
    than ``min_val_cells`` validation cells (model selection), or, when the data has labels,
    fewer than two labels among the test cells (ARI, NMI and the scIB bio metrics need two).

    Raises
    ------
    mmint.errors.InputError
        One line naming the sizes and the fix.
    """
    sizes = ", ".join(f"{k} {len(v)}" for k, v in split.items())
    for name, minimum in (("test", min_test_cells), ("val", min_val_cells)):
        if len(split[name]) < minimum:
            raise InputError(
                f"the split leaves {len(split[name])} {name} cells ({sizes}); at least "
                f"{minimum} are needed to score",
                "split",
                "use more cells, other split.fractions (or kfold with fewer folds), or lower "
                f"split.min_{name}_cells",
            )
    if has_labels:
        test = labels[split["test"]]
        n = len(np.unique(test[test >= 0]))
        if n < 2:
            raise InputError(
                f"the test cells carry {n} distinct label(s) ({sizes}): label metrics (ARI, "
                "NMI, scIB bio) need at least two",
                "split",
                "use more cells, another split (seed, fractions, holdout batches) or data with "
                "more than one label",
            )

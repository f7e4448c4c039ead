"""The seeded, label-stratified subsample behind ``eval.scib_max_cells`` (no scib-metrics here;
its use inside the scIB scores is tested in test_scib.py)."""

import numpy as np
import pytest

from mmint.metrics.subsample import HOW_ALL, HOW_STRATIFIED, stratified_subsample


def _labels(counts: dict[str, int], seed: int = 0) -> np.ndarray:
    labels = np.concatenate([np.full(n, lab) for lab, n in counts.items()])
    return np.random.default_rng(seed).permutation(labels)


def _per_label(labels: np.ndarray, idx: np.ndarray) -> dict[str, int]:
    values, counts = np.unique(labels[idx], return_counts=True)
    return dict(zip(values.tolist(), counts.tolist(), strict=True))


def test_below_the_bound_keeps_every_cell_in_order():
    labels = _labels({"a": 30, "b": 20})
    for bound in (50, 51, None):
        idx, info = stratified_subsample(labels, bound, seed=3)
        np.testing.assert_array_equal(idx, np.arange(50))
        assert info == {
            "n_cells": 50,
            "n_cells_total": 50,
            "max_cells": bound,
            "how": HOW_ALL,
            "seed": None,
        }


@pytest.mark.parametrize(
    ("counts", "bound", "expected"),
    [
        # shares 50, 30, 15, 4.5, 0.5: floors, the rare label lifted to one cell
        ({"a": 500, "b": 300, "c": 150, "d": 45, "e": 5}, 100, [50, 30, 15, 4, 1]),
        # shares 3.5, 3.5, 3.0: the one cell left goes to the first largest remainder
        ({"a": 7, "b": 7, "c": 6}, 10, [4, 3, 3]),
        # shares 19.8, 0.1, 0.1: two rare labels lifted to one, taken back from the big one
        ({"a": 198, "b": 1, "c": 1}, 20, [18, 1, 1]),
    ],
)
def test_stratified_by_label_hand_computed(counts, bound, expected):
    labels = _labels(counts)
    idx, info = stratified_subsample(labels, bound, seed=0)
    assert _per_label(labels, idx) == dict(zip(counts, expected, strict=True))
    assert info == {
        "n_cells": bound,
        "n_cells_total": sum(counts.values()),
        "max_cells": bound,
        "how": HOW_STRATIFIED,
        "seed": 0,
    }
    assert idx.size == bound and np.all(np.diff(idx) > 0)  # sorted, no repeats


def test_seeded_same_seed_same_cells():
    labels = _labels({"a": 600, "b": 300, "c": 100})
    first, _ = stratified_subsample(labels, 200, seed=7)
    again, _ = stratified_subsample(labels, 200, seed=7)
    other, info = stratified_subsample(labels, 200, seed=8)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert info["seed"] == 8
    # a different seed changes which cells, not how many of each label
    assert _per_label(labels, first) == _per_label(labels, other) == {"a": 120, "b": 60, "c": 20}


def test_bound_below_the_number_of_labels_is_an_error():
    with pytest.raises(ValueError, match="below the 3 labels"):
        stratified_subsample(_labels({"a": 5, "b": 5, "c": 5}), 2)

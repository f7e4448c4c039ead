"""Ambiguous inputs are one clear error each: duplicate feature names, annotation columns that
disagree between the files of the same cells; missing labels are counted; a split too small to
score is refused before training."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mmint.data import PairedData
from mmint.data.splits import check_split_sizes, make_split
from mmint.errors import InputError

from .test_paired import _names, make_adata


def test_duplicate_feature_names_are_an_error_with_count_and_example():
    names = _names(0, 30)
    rna = make_adata(names, n_features=200, prefix="g")
    rna.var_names = [f"g{j % 50}" for j in range(200)]  # 200 genes carrying 50 names
    adt = make_adata(names, n_features=4, prefix="p", seed=1)
    with pytest.raises(InputError) as err:
        PairedData.from_anndatas({"rna": rna, "adt": adt}, {"rna": "counts", "adt": "counts"})
    what, where, fix = err.value.what, err.value.where, err.value.fix
    assert "200 of 200 features of modality 'rna' share 50 names, e.g. g0, g1, g2" in what
    assert "rna" in where
    assert "var_names_make_unique" in fix


def test_one_duplicate_feature_name_is_counted_once_per_copy():
    names = _names(0, 30)
    rna = make_adata(names, n_features=5, prefix="g")
    rna.var_names = ["a", "b", "c", "a", "e"]
    adt = make_adata(names, n_features=4, prefix="p", seed=1)
    with pytest.raises(
        InputError, match=r"2 of 5 features of modality 'rna' share 1 names, e\.g\. a"
    ):
        PairedData.from_anndatas({"rna": rna, "adt": adt}, {"rna": "counts", "adt": "counts"})


@pytest.mark.parametrize("role", ["label", "batch"])
def test_disagreeing_annotations_are_an_error(role):
    names = _names(0, 30)
    rna = make_adata(names, prefix="g")
    adt = make_adata(names, prefix="p", seed=1)
    key = {"label": "cell_type", "batch": "batch"}[role]
    values = adt.obs[key].astype(str).to_numpy().copy()
    values[[4, 9]] = "other"
    adt.obs[key] = values
    with pytest.raises(InputError) as err:
        PairedData.from_anndatas(
            {"rna": rna, "adt": adt},
            {"rna": "counts", "adt": "counts"},
            label_key="cell_type",
            batch_key="batch",
        )
    assert (
        f"the {role} column '{key}' disagrees between modalities 'rna' and 'adt' for 2 of 30 "
        f"shared cells, e.g. c004: '{rna.obs[key].iloc[4]}' vs 'other'" in err.value.what
    )
    assert f"obs['{key}']" in err.value.fix


def test_annotations_missing_in_one_file_are_not_a_disagreement():
    names = _names(0, 30)
    rna = make_adata(names, prefix="g")
    adt = make_adata(names, prefix="p", seed=1)
    adt.obs["cell_type"] = adt.obs["cell_type"].astype(object).where(np.arange(30) % 2 == 0)
    data = PairedData.from_anndatas(
        {"rna": rna, "adt": adt}, {"rna": "counts", "adt": "counts"}, label_key="cell_type"
    )
    assert data.label_counts() == {"n_labels": 3, "n_unknown": 0, "n_excluded": 0}


def test_missing_labels_are_counted_and_shown():
    names = _names(0, 30)
    labels = pd.Series([f"T{i % 3}" for i in range(30)], dtype=object)
    labels[[1, 2, 5]] = np.nan
    rna = make_adata(names, prefix="g", obs={"cell_type": labels.to_numpy()})
    adt = make_adata(names, prefix="p", seed=1, obs={"cell_type": labels.to_numpy()})
    data = PairedData.from_anndatas(
        {"rna": rna, "adt": adt},
        {"rna": "counts", "adt": "counts"},
        label_key="cell_type",
        exclude_labels=["T0"],
    )
    n_t0 = sum(1 for i in range(30) if i % 3 == 0 and i not in (1, 2, 5))
    assert data.label_counts() == {"n_labels": 2, "n_unknown": 3, "n_excluded": n_t0}
    assert f"2 categories, 3 cells without a label (unknown), {n_t0} excluded" in data.summary()


def _split(n: int, n_labels: int = 3, seed: int = 0) -> tuple[dict, np.ndarray]:
    labels = np.arange(n) % n_labels
    return make_split(labels, np.zeros(n, int), ["all"], seed=seed), labels


def test_a_twelve_cell_split_is_refused_with_its_sizes():
    split, labels = _split(12)
    assert [len(split[s]) for s in ("train", "val", "test")] == [9, 2, 1]
    with pytest.raises(InputError) as err:
        check_split_sizes(split, labels)
    assert err.value.what == (
        "the split leaves 1 test cells (train 9, val 2, test 1); at least 10 are needed to score"
    )
    assert "split.min_test_cells" in err.value.fix


def test_too_few_validation_cells_are_refused():
    split, labels = _split(200)
    split["val"] = split["val"][:3]
    with pytest.raises(InputError, match="leaves 3 val cells"):
        check_split_sizes(split, labels)
    check_split_sizes(split, labels, min_val_cells=3)  # the minimum is configurable


def test_a_test_set_with_one_label_is_refused_only_with_labels():
    split, labels = _split(200)
    labels = labels.copy()
    labels[split["test"]] = 1
    with pytest.raises(InputError, match=r"the test cells carry 1 distinct label\(s\)"):
        check_split_sizes(split, labels)
    check_split_sizes(split, labels, has_labels=False)
    labels[split["test"]] = -1  # unknown labels do not count as a label
    with pytest.raises(InputError, match="carry 0 distinct"):
        check_split_sizes(split, labels)


def test_a_usable_split_passes():
    split, labels = _split(200)
    check_split_sizes(split, labels)

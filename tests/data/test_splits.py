"""Splits: partitions, determinism, stratification, k-fold and held-out batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmint import keys
from mmint.data import PairedDataModule, make_split
from mmint.data.splits import SETS, strata
from mmint.errors import InputError

torch.set_num_threads(1)

SIZES = (20, 23, 37, 55, 101, 250)  # labels with >= 20 cells


def _labels(sizes=SIZES, rare=(1, 1, 2), seed=0) -> np.ndarray:
    """Shuffled label codes: one label per entry of ``sizes`` then the rare ones."""
    codes = np.concatenate([np.full(n, i) for i, n in enumerate((*sizes, *rare))])
    return np.random.default_rng(seed).permutation(codes)


def _random(labels, seed=0, **kwargs):
    n = len(labels)
    return make_split(labels, np.zeros(n, int), ["all"], kind="random", seed=seed, **kwargs)


def _near(got: int, expected: float) -> bool:
    """Within a cell or two of the exact share (two cells from its rounded value)."""
    return abs(int(got) - round(expected)) <= 2


def _assert_partition(split: dict[str, np.ndarray], n: int) -> None:
    assert set(split) == set(SETS)
    allc = np.concatenate([split[s] for s in SETS])
    assert len(allc) == n, "a cell is in two sets or missing"
    np.testing.assert_array_equal(np.sort(allc), np.arange(n))
    for s in SETS:
        assert len(split[s]) > 0
        assert np.all(np.diff(split[s]) > 0)  # sorted, unique


# ---------------------------------------------------------------------- random
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_random_partition(seed):
    labels = _labels()
    split = _random(labels, seed)
    _assert_partition(split, len(labels))
    n = len(labels)
    assert _near(len(split["train"]), 0.8 * n)
    assert _near(len(split["val"]), 0.1 * n)
    assert _near(len(split["test"]), 0.1 * n)


def test_random_deterministic_by_seed():
    labels = _labels()
    a, b, c = _random(labels, 3), _random(labels, 3), _random(labels, 4)
    for s in SETS:
        np.testing.assert_array_equal(a[s], b[s])
    assert any(not np.array_equal(a[s], c[s]) for s in SETS)
    # no two of several seeds give the same test set
    tests = {tuple(_random(labels, seed)["test"]) for seed in range(6)}
    assert len(tests) == 6


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_random_stratified(seed):
    labels = _labels()
    split = _random(labels, seed)
    for code, n in enumerate(SIZES):
        got = {s: int(np.sum(labels[split[s]] == code)) for s in SETS}
        assert _near(got["train"], 0.8 * n), (code, n, got)
        assert _near(got["val"], 0.1 * n), (code, n, got)
        assert _near(got["test"], 0.1 * n), (code, n, got)


def test_random_stratified_many_sizes():
    for seed in range(30):
        rng = np.random.default_rng(100 + seed)
        sizes = rng.integers(20, 300, 4)
        labels = rng.permutation(np.concatenate([np.full(n, i) for i, n in enumerate(sizes)]))
        split = _random(labels, seed)
        _assert_partition(split, len(labels))
        for code, n in enumerate(sizes):
            for s, frac in zip(SETS, (0.8, 0.1, 0.1), strict=True):
                got = np.sum(labels[split[s]] == code)
                assert _near(got, frac * n), (seed, code, n, s, got)


def test_random_other_fractions():
    labels = _labels()
    split = _random(labels, 0, fractions=(0.6, 0.2, 0.2))
    n = len(labels)
    assert _near(len(split["train"]), 0.6 * n)
    assert _near(len(split["val"]), 0.2 * n)
    for code, size in enumerate(SIZES):
        assert _near(np.sum(labels[split["test"]] == code), 0.2 * size)


def test_rare_labels_merged_into_one_stratum():
    labels = np.array([0] * 10 + [1] * 2 + [2] * 1 + [-1] * 3 + [3] * 5)
    st = strata(labels, 3)
    np.testing.assert_array_equal(st[labels == 0], 0)
    np.testing.assert_array_equal(st[labels == 3], 3)
    assert len(set(st[np.isin(labels, [1, 2, -1])].tolist())) == 1  # one merged stratum
    assert not set(st[np.isin(labels, [1, 2, -1])].tolist()) & {0, 3}


def test_rare_labels_split_as_a_whole():
    """40 singleton labels form one stratum that is itself split ~80/10/10."""
    labels = np.concatenate([np.repeat([0, 1], 100), np.arange(2, 42)])
    labels = np.random.default_rng(0).permutation(labels)
    split = _random(labels, 0)
    _assert_partition(split, len(labels))
    rare = {s: int(np.sum(labels[split[s]] >= 2)) for s in SETS}
    assert _near(rare["train"], 32) and _near(rare["val"], 4) and _near(rare["test"], 4)


def test_unlabelled_cells_split_too():
    labels = np.full(100, -1)
    split = _random(labels, 0)
    _assert_partition(split, 100)
    assert _near(len(split["train"]), 80)


def test_random_bad_fractions():
    with pytest.raises(InputError, match=r"bad split fractions .*split\.fractions.* - give three"):
        _random(_labels(), 0, fractions=(0.9, 0.1, 0.0))


def test_random_too_few_cells():
    with pytest.raises(InputError) as info:
        _random(np.array([0, 0]), 0)
    assert "leaves the" in str(info.value) and "set empty (2 cells)" in str(info.value)
    assert info.value.fix


def test_unknown_split_kind():
    with pytest.raises(InputError, match=r"unknown split kind 'loo' \(split\.kind\) - use one of"):
        make_split(_labels(), np.zeros(len(_labels()), int), ["all"], kind="loo")


# ---------------------------------------------------------------------- kfold
def _kfold(labels, fold, k=5, seed=0):
    n = len(labels)
    return make_split(labels, np.zeros(n, int), ["all"], kind="kfold", k=k, fold=fold, seed=seed)


@pytest.mark.parametrize("k", [3, 5, 10])
def test_kfold_folds_partition_cells(k):
    labels = _labels()
    n = len(labels)
    splits = [_kfold(labels, f, k) for f in range(k)]
    for split in splits:
        _assert_partition(split, n)
    tests = np.concatenate([s["test"] for s in splits])
    np.testing.assert_array_equal(np.sort(tests), np.arange(n))  # every cell tested exactly once
    for f in range(k):
        # fold f's val is fold f+1 (its test set when fold=f+1)
        np.testing.assert_array_equal(splits[f]["val"], splits[(f + 1) % k]["test"])
        assert _near(len(splits[f]["test"]), n / k)
    for code, size in enumerate(SIZES):
        counts = [np.sum(labels[s["test"]] == code) for s in splits]
        assert all(_near(c, size / k) for c in counts), (code, size, counts)


def test_kfold_deterministic_by_seed():
    labels = _labels()
    a, b, c = _kfold(labels, 1, seed=5), _kfold(labels, 1, seed=5), _kfold(labels, 1, seed=6)
    for s in SETS:
        np.testing.assert_array_equal(a[s], b[s])
    assert not np.array_equal(a["test"], c["test"])


def test_kfold_too_few_cells():
    labels = np.zeros(5, int)
    errors = []
    for fold in range(10):
        try:
            _kfold(labels, fold, k=10)
        except InputError as err:
            errors.append(err)
    assert len(errors) >= 5  # 5 cells fill at most 5 of 10 folds
    for err in errors:
        assert "split 'kfold' leaves the" in err.what and "set empty (5 cells)" in err.what
        assert err.where == "split" and "more cells" in err.fix


@pytest.mark.parametrize(("k", "fold"), [(2, 0), (5, 5), (5, -1)])
def test_kfold_bad_fold(k, fold):
    with pytest.raises(InputError, match=r"is not valid \(split\.fold / split\.k\)"):
        _kfold(_labels(), fold, k=k)


# ---------------------------------------------------------------------- holdout_batch
def test_holdout_batch_make_split():
    rng = np.random.default_rng(0)
    batches = rng.integers(0, 3, 400)
    labels = rng.integers(0, 4, 400)
    split = make_split(labels, batches, ["b0", "b1", "b2"], kind="holdout_batch", holdout=["b2"])
    _assert_partition(split, 400)
    np.testing.assert_array_equal(split["test"], np.flatnonzero(batches == 2))
    rest = np.flatnonzero(batches != 2)
    assert _near(len(split["train"]), len(rest) * 8 / 9)
    two = make_split(
        labels, batches, ["b0", "b1", "b2"], kind="holdout_batch", holdout=["b0", "b2"]
    )
    np.testing.assert_array_equal(two["test"], np.flatnonzero(batches != 1))


def test_holdout_all_batches_is_an_error():
    batches = np.arange(40) % 2
    with pytest.raises(InputError) as info:
        make_split(
            np.zeros(40, int), batches, ["b0", "b1"], kind="holdout_batch", holdout=["b0", "b1"]
        )
    assert "leaves the train set empty" in info.value.what
    assert "holdout" in info.value.fix


@pytest.mark.parametrize("holdout", [[], ["b9"]])
def test_holdout_unknown_batch(holdout):
    with pytest.raises(InputError) as info:
        make_split(
            np.zeros(40, int),
            np.arange(40) % 2,
            ["b0", "b1"],
            kind="holdout_batch",
            holdout=holdout,
        )
    assert "not found" in info.value.what and info.value.where == "split.holdout"
    assert "b0" in info.value.fix and "b1" in info.value.fix


# ---------------------------------------------------------------------- through the datamodule
def _all_loader_labels(dm) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    loaders = {
        "train": dm.train_dataloader(),
        "val": dm.val_dataloader(),
        "test": dm.test_dataloader(),
        "predict": dm.predict_dataloader(),
    }
    for name, loader in loaders.items():
        batches = list(loader)
        out[name] = (
            np.concatenate([b[keys.INDEX].numpy() for b in batches]),
            np.concatenate([b[keys.LABEL].numpy() for b in batches]),
        )
    return out


def test_datamodule_split_deterministic(tiny_data):
    def split(seed):
        dm = PairedDataModule(tiny_data, split={"kind": "random"}, seed=seed)
        dm.setup()
        return dm

    a, b, c = split(0), split(0), split(1)
    for s in SETS:
        np.testing.assert_array_equal(a.split[s], b.split[s])
    assert not np.array_equal(a.split["test"], c.split["test"])
    names = a.split_names()
    assert names["kind"] == "random" and names["seed"] == 0
    assert names["test"] == [str(n) for n in tiny_data.names[a.split["test"]]]
    assert sum(len(names[s]) for s in SETS) == tiny_data.n_cells


@pytest.mark.parametrize("include_target", [False, True])
def test_holdout_batch_labels_hidden(tiny_data, include_target):
    dm = PairedDataModule(
        tiny_data, split={"kind": "holdout_batch", "holdout": ["b1"]}, seed=0, batch_size=32
    )
    dm.include_target_in_train = include_target
    dm.setup()
    bcodes, bnames = tiny_data.batches()
    target = np.flatnonzero(bcodes == bnames.index("b1"))
    np.testing.assert_array_equal(dm.split["test"], target)
    _assert_partition(dm.split, tiny_data.n_cells)
    labels = _all_loader_labels(dm)
    for name, (idx, lab) in labels.items():
        is_target = np.isin(idx, target)
        assert (lab[is_target] == keys.UNKNOWN_LABEL).all(), name
        assert (lab[~is_target] >= 0).all(), name
    train_idx = labels["train"][0]
    assert np.isin(train_idx, target).any() == include_target
    if include_target:
        assert set(target) <= set(train_idx)
    # any batch of target cells, however made, hides their labels
    assert (dm.batch(target)[keys.LABEL].numpy() == keys.UNKNOWN_LABEL).all()
    assert (dm.batch(np.arange(tiny_data.n_cells))[keys.LABEL].numpy()[target] == -1).all()
    # labels of the other cells stay known and the spec counts training labels only
    true, _ = tiny_data.labels()
    assert (true[target] >= 0).all()
    assert sum(dm.spec.train_label_counts) == len(dm.split["train"])


def test_holdout_all_batches_through_datamodule(tiny_data):
    dm = PairedDataModule(tiny_data, split={"kind": "holdout_batch", "holdout": ["b0", "b1"]})
    with pytest.raises(InputError, match="leaves the train set empty"):
        dm.setup()

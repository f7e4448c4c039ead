"""PairedDataModule: dict batches, loaders, and transforms fitted on training cells only."""

from __future__ import annotations

import io

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from mmint import keys
from mmint.data import PairedData, PairedDataModule
from mmint.data.modality import TARGET_SUM
from mmint.errors import InputError

torch.set_num_threads(1)

TOP = {"rna": 30, "atac": 50, "ephys": 8}


def _dense(x) -> np.ndarray:
    return x.toarray() if sp.issparse(x) else np.asarray(x)


def _data_from(adatas, kinds, **kwargs) -> PairedData:
    return PairedData.from_anndatas(
        adatas, kinds, label_key="cell_type", batch_key="batch", class_key="major_type", **kwargs
    )


def _with_rows_replaced(tiny_sim, rows: np.ndarray, seed: int = 99) -> PairedData:
    """The tiny data with new (valid) values in ``rows`` of every modality."""
    rng = np.random.default_rng(seed)
    adatas = {}
    for m, a in tiny_sim.adatas.items():
        x = _dense(a.X).copy()
        kind = tiny_sim.kinds[m]
        shape = (len(rows), x.shape[1])
        if kind == "counts":
            x[rows] = rng.poisson(rng.gamma(0.5, 4.0, x.shape[1]), shape)
        elif kind == "binary":
            x[rows] = rng.random(shape) < rng.random(x.shape[1])
        else:
            x[rows] = rng.normal(3.0, 5.0, shape) * rng.random(x.shape[1])
        adatas[m] = ad.AnnData(
            sp.csr_matrix(x) if sp.issparse(a.X) else x.astype(np.float32),
            obs=a.obs.copy(),
            var=a.var.copy(),
        )
    return _data_from(adatas, tiny_sim.kinds)


def _dm(data, **kwargs) -> PairedDataModule:
    kwargs.setdefault("split", {"kind": "random"})
    dm = PairedDataModule(data, **kwargs)
    dm.setup()
    return dm


def _assert_same_transforms(a: PairedDataModule, b: PairedDataModule) -> None:
    assert set(a.transforms) == set(b.transforms)
    for m in a.transforms:
        ta, tb = a.transforms[m], b.transforms[m]
        assert ta.name == tb.name
        np.testing.assert_array_equal(ta.features, tb.features)
        assert set(ta.params) == set(tb.params)
        for p in ta.params:
            np.testing.assert_array_equal(ta.params[p], tb.params[p])


# ---------------------------------------------------------------------- batches
def test_batch_keys_dtypes_and_values(tiny_dm, tiny_data):
    idx = tiny_dm.split["train"][:17]
    batch = tiny_dm.batch(idx)
    expected = {
        "rna",
        "atac",
        "ephys",
        "counts/rna",
        "mask/rna",
        "mask/atac",
        "mask/ephys",
        "index",
        "batch",
        "label",
    }
    assert set(batch) == expected
    assert {keys.INDEX, keys.BATCH, keys.LABEL} <= set(batch)
    assert {keys.counts_key("rna"), keys.mask_key("atac")} <= set(batch)
    for m in ("rna", "atac", "ephys"):
        assert batch[m].dtype == torch.float32 and batch[m].layout == torch.strided
        assert batch[m].shape == (17, tiny_dm.inputs[m].shape[1])
        np.testing.assert_array_equal(batch[m].numpy(), _dense(tiny_dm.inputs[m][idx]))
        assert batch[f"mask/{m}"].dtype == torch.float32
        assert torch.all(batch[f"mask/{m}"] == 1)
    assert batch["counts/rna"].dtype == torch.float32
    np.testing.assert_array_equal(
        batch["counts/rna"].numpy(), _dense(tiny_data.modalities["rna"].x[idx])
    )
    for k in ("index", "batch", "label"):
        assert batch[k].dtype == torch.int64 and batch[k].shape == (17,)
    np.testing.assert_array_equal(batch["index"].numpy(), idx)
    np.testing.assert_array_equal(batch["batch"].numpy(), tiny_data.batches()[0][idx])
    np.testing.assert_array_equal(batch["label"].numpy(), tiny_data.labels()[0][idx])


def test_sparse_inputs_stay_sparse(tiny_dm):
    assert sp.issparse(tiny_dm.inputs["rna"]) and sp.issparse(tiny_dm.inputs["atac"])
    assert sp.issparse(tiny_dm.counts["rna"])
    assert isinstance(tiny_dm.inputs["ephys"], np.ndarray)
    assert "atac" not in tiny_dm.counts and "ephys" not in tiny_dm.counts
    for m, x in tiny_dm.inputs.items():
        assert x.dtype == np.float32, m
    batch = next(iter(tiny_dm.train_dataloader()))
    for key in ("rna", "atac", "counts/rna"):
        assert not batch[key].is_sparse and batch[key].layout == torch.strided


def test_spec(tiny_dm):
    spec = tiny_dm.spec
    assert spec.modalities == ["rna", "atac", "ephys"]
    assert spec.kinds == {"rna": "counts", "atac": "binary", "ephys": "continuous"}
    assert spec.transforms == {"rna": "lognorm", "atac": "binarize", "ephys": "standardize"}
    assert spec.n_features == {"rna": 100, "atac": 200, "ephys": 20}
    assert spec.n_train == len(tiny_dm.split["train"])
    assert spec.n_batches == 2 and spec.n_labels == 4
    assert sum(spec.train_label_counts) == spec.n_train
    codes = tiny_dm.batch_codes[tiny_dm.split["train"]]
    assert spec.train_batch_counts == np.bincount(codes, minlength=2).tolist()
    assert spec.seen_batches() == [True, True]


def test_spec_marks_a_held_out_batch_unseen(tiny_data):
    dm = _dm(tiny_data, split={"kind": "holdout_batch", "holdout": ["b1"]})
    assert dm.spec.train_batch_counts[1] == 0 and dm.spec.train_batch_counts[0] > 0
    assert dm.spec.seen_batches() == [True, False]


# ---------------------------------------------------------------------- loaders
def _epoch(loader) -> list[np.ndarray]:
    return [b["index"].numpy() for b in loader]


def test_train_loader_covers_train_once(tiny_dm):
    loader = tiny_dm.train_dataloader()
    batches = _epoch(loader)
    assert len(batches) == len(loader) == 4  # 240 train cells / 64
    cells = np.concatenate(batches)
    assert len(cells) == len(tiny_dm.split["train"])
    np.testing.assert_array_equal(np.sort(cells), tiny_dm.split["train"])
    assert all(len(b) == 64 for b in batches[:-1])
    assert not np.array_equal(cells, np.sort(cells))  # shuffled


def test_passes_per_epoch(tiny_data):
    dm = _dm(tiny_data, seed=0, batch_size=50)
    dm.passes_per_epoch = 3
    loader = dm.train_dataloader()
    batches = _epoch(loader)
    train = dm.split["train"]
    per_pass = -(-len(train) // 50)
    assert len(batches) == len(loader) == 3 * per_pass
    passes = [np.concatenate(batches[i * per_pass : (i + 1) * per_pass]) for i in range(3)]
    for p in passes:
        np.testing.assert_array_equal(np.sort(p), train)
    assert not np.array_equal(passes[0], passes[1]) and not np.array_equal(passes[1], passes[2])


def test_batch_order_by_seed(tiny_data):
    a, b, c = _dm(tiny_data, seed=3), _dm(tiny_data, seed=3), _dm(tiny_data, seed=4)
    la, lb = a.train_dataloader(), b.train_dataloader()
    first_a, first_b = _epoch(la), _epoch(lb)
    for x, y in zip(first_a, first_b, strict=True):
        np.testing.assert_array_equal(x, y)
    second_a, second_b = _epoch(la), _epoch(lb)  # the next epoch: reshuffled, still equal
    for x, y in zip(second_a, second_b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(np.concatenate(first_a), np.concatenate(second_a))
    assert not np.array_equal(np.concatenate(first_a), np.concatenate(_epoch(c.train_dataloader())))


def test_eval_loaders_in_order(tiny_data):
    dm = _dm(tiny_data, batch_size=16, eval_batch_size=100)
    val = _epoch(dm.val_dataloader())
    assert all(len(b) <= 16 for b in val)
    np.testing.assert_array_equal(np.concatenate(val), dm.split["val"])
    np.testing.assert_array_equal(np.concatenate(_epoch(dm.test_dataloader())), dm.split["test"])
    pred = _epoch(dm.predict_dataloader())
    assert [len(b) for b in pred] == [100, 100, 100]
    np.testing.assert_array_equal(np.concatenate(pred), np.arange(tiny_data.n_cells))
    got = np.concatenate([b["index"].numpy() for b in dm.iter_batches(dm.split["test"], 7)])
    np.testing.assert_array_equal(got, dm.split["test"])


def test_train_loader_covers_train_once_with_one_cell_remainder(tiny_data):
    dm = _dm(tiny_data, seed=0)
    n_train = len(dm.split["train"])
    dm.batch_size = n_train - 1  # one full batch and a lone cell
    cells = np.concatenate(_epoch(dm.train_dataloader()))
    np.testing.assert_array_equal(np.sort(cells), dm.split["train"])


# ---------------------------------------------------------------------- transforms
def test_standardize_fitted_on_train_only(tiny_dm):
    x = tiny_dm.data.modalities["ephys"].x[tiny_dm.split["train"]].astype(np.float64)
    t = tiny_dm.transforms["ephys"]
    assert t.name == "standardize"
    np.testing.assert_allclose(t.params["mean"], x.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(t.params["std"], x.std(axis=0), rtol=1e-5)
    all_x = tiny_dm.data.modalities["ephys"].x.astype(np.float64)
    assert not np.allclose(t.params["mean"], all_x.mean(axis=0), rtol=1e-5, atol=1e-6)
    z = tiny_dm.inputs["ephys"]
    np.testing.assert_allclose(z, (all_x - x.mean(0)) / x.std(0), rtol=1e-4, atol=1e-4)
    train_z = z[tiny_dm.split["train"]]
    np.testing.assert_allclose(train_z.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(train_z.std(axis=0), 1, atol=1e-4)


def test_standardize_counts_override(tiny_data):
    dm = _dm(tiny_data, transforms={"rna": "standardize"})
    x = _dense(tiny_data.modalities["rna"].x[dm.split["train"]]).astype(np.float64)
    std = x.std(axis=0)
    np.testing.assert_allclose(dm.transforms["rna"].params["mean"], x.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        dm.transforms["rna"].params["std"], np.where(std > 1e-8, std, 1.0), rtol=1e-5
    )
    assert isinstance(dm.inputs["rna"], np.ndarray) and dm.inputs["rna"].dtype == np.float32
    assert "counts/rna" in dm.batch(np.arange(3))  # raw counts are still given


def test_standardize_constant_feature_is_centred():
    names = [f"c{i}" for i in range(40)]
    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    x[:, 1] = 5.0
    data = PairedData.from_anndatas(
        {"e": ad.AnnData(x, obs=pd.DataFrame(index=names))}, {"e": "continuous"}
    )
    dm = _dm(data)
    assert dm.transforms["e"].params["std"][1] == 1.0
    np.testing.assert_allclose(dm.inputs["e"][:, 1], 0.0)


def test_feature_selection_and_params_ignore_test_cells(tiny_sim, tiny_data):
    dm = _dm(tiny_data, n_top_features=TOP)
    for m, n in TOP.items():
        assert len(dm.transforms[m].features) == n
        assert dm.inputs[m].shape[1] == n
        assert dm.spec.n_features[m] == n
    not_train = np.concatenate([dm.split["val"], dm.split["test"]])
    other = _dm(_with_rows_replaced(tiny_sim, not_train), n_top_features=TOP)
    for s in dm.split:
        np.testing.assert_array_equal(dm.split[s], other.split[s])
    _assert_same_transforms(dm, other)
    # the comparison is sensitive: new values in training cells change the selection
    changed = _dm(_with_rows_replaced(tiny_sim, dm.split["train"]), n_top_features=TOP)
    for m in ("rna", "atac", "ephys"):
        assert not np.array_equal(dm.transforms[m].features, changed.transforms[m].features), m


def test_feature_names_follow_selection(tiny_data):
    dm = _dm(tiny_data, n_top_features={"atac": 20})
    names = dm.spec.feature_names["atac"]
    assert len(names) == 20
    assert names == [
        str(v) for v in tiny_data.modalities["atac"].var_names[dm.transforms["atac"].features]
    ]
    # top peaks = the most often open peaks among training cells
    x = _dense(tiny_data.modalities["atac"].x[dm.split["train"]]) > 0
    freq = x.sum(axis=0)
    assert freq[dm.transforms["atac"].features].min() >= np.sort(freq)[-20]


def test_lognorm_matches_direct_computation(tiny_dm, tiny_data):
    x = _dense(tiny_data.modalities["rna"].x).astype(np.float64)
    expected = np.log1p(x / x.sum(axis=1, keepdims=True) * TARGET_SUM)
    assert TARGET_SUM == 1e4
    got = _dense(tiny_dm.inputs["rna"])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_binarize(tiny_dm, tiny_data):
    np.testing.assert_array_equal(
        _dense(tiny_dm.inputs["atac"]),
        (_dense(tiny_data.modalities["atac"].x) > 0).astype(np.float32),
    )


def _small(kind: str, x: np.ndarray, name: str = "m") -> PairedData:
    names = [f"c{i}" for i in range(x.shape[0])]
    obs = pd.DataFrame({"cell_type": ["A"] * len(names)}, index=names)
    return PairedData.from_anndatas({name: ad.AnnData(x.astype(np.float32), obs=obs)}, {name: kind})


def test_tfidf_small_example():
    rng = np.random.default_rng(0)
    x = rng.poisson(0.7, (30, 6)).astype(np.float32)
    x[:, 5] = 0  # a never-open peak
    x[4] = 0  # an empty cell: it lacks 'm' (mask 0), so it is left out of the fit
    names = [f"c{i}" for i in range(x.shape[0])]
    obs = pd.DataFrame({"cell_type": ["A"] * len(names)}, index=names)
    other = ad.AnnData(rng.normal(size=(30, 2)).astype(np.float32), obs=obs)
    sparse_data = PairedData.from_anndatas(
        {"m": ad.AnnData(x, obs=obs), "e": other}, {"m": "binary", "e": "continuous"}
    )
    dm = _dm(sparse_data, transforms={"m": "tfidf"})
    empty = x.sum(axis=1) == 0
    assert empty[4] and (dm.masks["m"] == ~empty).all()
    train = dm.split["train"]
    train = train[~empty[train]]
    idf = len(train) / (1.0 + (x[train] > 0).sum(axis=0))
    rows = x.sum(axis=1, keepdims=True)
    tf = np.divide(x, rows, out=np.zeros_like(x, dtype=np.float64), where=rows > 0)
    expected = np.log1p(tf * idf * 1e4)
    np.testing.assert_allclose(dm.transforms["m"].params["idf"], idf, rtol=1e-6)
    np.testing.assert_allclose(_dense(dm.inputs["m"]), expected, rtol=1e-5, atol=1e-5)
    assert not _dense(dm.inputs["m"])[4].any()


def test_clr_small_example():
    x = np.array([[0, 1, 3, 10], [5, 5, 5, 5], [0, 0, 0, 7], [2, 0, 9, 1]] * 5, dtype=np.float32)
    dm = _dm(_small("counts", x), transforms={"m": "clr"})
    logx = np.log1p(x.astype(np.float64))
    expected = logx - logx.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(dm.inputs["m"], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dm.inputs["m"].sum(axis=1), 0, atol=1e-5)
    assert "counts/m" in dm.batch(np.arange(2))


def test_none_transform_passes_raw_values(tiny_data):
    dm = _dm(tiny_data, transforms={"rna": "none", "ephys": "none"})
    np.testing.assert_array_equal(_dense(dm.inputs["rna"]), _dense(tiny_data.modalities["rna"].x))
    np.testing.assert_array_equal(dm.inputs["ephys"], tiny_data.modalities["ephys"].x)


@pytest.mark.parametrize(
    ("transforms", "what"),
    [
        ({"ephys": "clr"}, "transform 'clr' does not apply to a 'continuous' modality"),
        ({"atac": "lognorm"}, "transform 'lognorm' does not apply to a 'binary' modality"),
        ({"rna": "zscore"}, "unknown transform 'zscore'"),
    ],
)
def test_bad_transform(tiny_data, transforms, what):
    with pytest.raises(InputError) as info:
        PairedDataModule(tiny_data, transforms=transforms)
    assert what in info.value.what
    modality = next(iter(transforms))
    assert info.value.where == f"data.transforms.{modality}"
    assert "use one of" in info.value.fix


def test_transforms_skip_missing_cells():
    """Outer join: a modality's transform is fitted on the training cells that have it."""
    rng = np.random.default_rng(1)
    names = [f"c{i:03d}" for i in range(60)]
    x = rng.normal(2.0, 3.0, (40, 4)).astype(np.float32)
    obs = pd.DataFrame({"cell_type": ["A", "B"] * 30}, index=names)
    data = PairedData.from_anndatas(
        {
            "a": ad.AnnData(rng.normal(size=(60, 3)).astype(np.float32), obs=obs),
            "b": ad.AnnData(x, obs=obs.iloc[20:]),
        },
        {"a": "continuous", "b": "continuous"},
        join="outer",
        label_key="cell_type",
    )
    dm = _dm(data)
    train = dm.split["train"]
    have = train[data.modalities["b"].present[train]]
    assert len(have) < len(train)
    xb = data.modalities["b"].x[have].astype(np.float64)
    np.testing.assert_allclose(dm.transforms["b"].params["mean"], xb.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dm.transforms["b"].params["std"], xb.std(0), rtol=1e-5)
    mask = dm.batch(np.arange(60))["mask/b"].numpy()
    np.testing.assert_array_equal(mask, (np.arange(60) >= 20).astype(np.float32))


# ---------------------------------------------------------------------- persistence
def test_state_dict_round_trip(tiny_sim, tiny_data):
    dm = _dm(tiny_data, seed=2, n_top_features=TOP, transforms={"atac": "tfidf"})
    buffer = io.BytesIO()
    torch.save(dm.state_dict(), buffer)  # as in a Lightning checkpoint
    buffer.seek(0)
    state = torch.load(buffer, weights_only=False)
    assert state["seed"] == 2
    for s in dm.split:
        np.testing.assert_array_equal(state["split"][s], dm.split[s])

    again = PairedDataModule(tiny_data, seed=2, n_top_features=TOP, transforms={"atac": "tfidf"})
    again.load_state_dict(state)
    again.setup()
    _assert_same_transforms(dm, again)
    for m in dm.inputs:
        np.testing.assert_array_equal(_dense(again.inputs[m]), _dense(dm.inputs[m]))
    idx = dm.split["test"]
    for k, v in dm.batch(idx).items():
        torch.testing.assert_close(again.batch(idx)[k], v)

    # loaded transforms are reused, not refitted, even where refitting would differ
    other = PairedDataModule(
        _with_rows_replaced(tiny_sim, dm.split["train"]), seed=2, n_top_features=TOP
    )
    other.load_state_dict(state)
    other.setup()
    _assert_same_transforms(dm, other)

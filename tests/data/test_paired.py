"""PairedData: alignment, joins, MuData input and one clear error per kind of bad input.

Every error is an :class:`mmint.errors.InputError` whose message reads
``<what> (<where>) - <how to fix>``; the tests check all three parts.
"""

from __future__ import annotations

import re

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from mmint.data import PairedData, PairedDataModule, load_dataset
from mmint.errors import InputError

torch.set_num_threads(1)

MESSAGE = re.compile(r"^.+ \(.+\) - .+$", re.S)


def _names(start: int, stop: int) -> list[str]:
    return [f"c{i:03d}" for i in range(start, stop)]


def make_adata(
    names: list[str],
    n_features: int = 6,
    kind: str = "counts",
    seed: int = 0,
    sparse: bool = False,
    prefix: str = "f",
    obs: dict | None = None,
) -> ad.AnnData:
    """A small AnnData with valid values of ``kind`` and a ``cell_type``/``batch`` obs."""
    rng = np.random.default_rng(seed)
    n = len(names)
    if kind == "counts":
        x = rng.poisson(3.0, (n, n_features)).astype(np.float32)
    elif kind == "binary":
        x = (rng.random((n, n_features)) < 0.3).astype(np.float32)
    else:
        x = rng.normal(size=(n, n_features)).astype(np.float32)
    # annotations follow the cell (its number), so files of shifted cells agree on them
    number = [int("".join(c for c in name if c.isdigit()) or i) for i, name in enumerate(names)]
    columns = {
        "cell_type": [f"T{i % 3}" for i in number],
        "batch": [f"b{i % 2}" for i in number],
    }
    columns.update(obs or {})
    frame = pd.DataFrame(columns, index=pd.Index(names))
    return ad.AnnData(
        sp.csr_matrix(x) if sparse else x,
        obs=frame,
        var=pd.DataFrame(index=[f"{prefix}{j}" for j in range(n_features)]),
    )


def pair(n: int = 12, **kwargs) -> tuple[dict[str, ad.AnnData], dict[str, str]]:
    names = _names(0, n)
    adatas = {
        "rna": make_adata(names, 8, "counts", seed=1, sparse=True, prefix="g", **kwargs),
        "adt": make_adata(names, 4, "counts", seed=2, prefix="p", **kwargs),
        "ephys": make_adata(names, 5, "continuous", seed=3, prefix="e", **kwargs),
    }
    return adatas, {"rna": "counts", "adt": "counts", "ephys": "continuous"}


def input_error(fn, *args, **kwargs) -> InputError:
    with pytest.raises(InputError) as info:
        fn(*args, **kwargs)
    err = info.value
    assert MESSAGE.match(str(err)), str(err)
    assert err.what and err.where and err.fix
    assert "\n" not in str(err)
    return err


# ---------------------------------------------------------------------- good input
def test_good_anndatas_align_and_summarise():
    adatas, kinds = pair()
    data = PairedData.from_anndatas(adatas, kinds, label_key="cell_type", batch_key="batch")
    assert data.n_cells == 12
    assert list(data.modalities) == ["rna", "adt", "ephys"]
    assert sp.issparse(data.modalities["rna"].x)
    assert data.modalities["rna"].x.dtype == np.float32
    assert isinstance(data.modalities["adt"].x, np.ndarray)
    for m, a in adatas.items():
        mod = data.modalities[m]
        assert mod.kind == kinds[m]
        assert mod.present.all()
        x = mod.x.toarray() if sp.issparse(mod.x) else mod.x
        ref = a.X.toarray() if sp.issparse(a.X) else a.X
        np.testing.assert_array_equal(x, ref)
        assert list(mod.var_names) == list(a.var_names)
    codes, names = data.labels()
    assert names == ["T0", "T1", "T2"]
    assert (codes >= 0).all()
    bcodes, bnames = data.batches()
    assert bnames == ["b0", "b1"]
    np.testing.assert_array_equal(bcodes, np.arange(12) % 2)
    summary = data.summary()
    assert "cells: 12" in summary
    assert "modality rna: kind=counts features=8 cells=12 missing=0 sparsity=" in summary
    assert "modality ephys: kind=continuous features=5" in summary
    assert (
        "labels (cell_type): 3 categories, 0 cells without a label (unknown), 0 excluded" in summary
    )
    assert "batches (batch): 2" in summary


def test_excluded_labels_are_unknown():
    adatas, kinds = pair()
    data = PairedData.from_anndatas(adatas, kinds, label_key="cell_type", exclude_labels=["T1"])
    codes, names = data.labels()
    assert names == ["T0", "T2"]
    t1 = np.asarray(adatas["rna"].obs["cell_type"]) == "T1"
    assert (codes[t1] == -1).all() and (codes[~t1] >= 0).all()
    assert f"0 cells without a label (unknown), {int(t1.sum())} excluded" in data.summary()


def test_no_labels_no_batches():
    adatas, kinds = pair()
    data = PairedData.from_anndatas(adatas, kinds)
    codes, names = data.labels()
    assert names == [] and (codes == -1).all()
    bcodes, bnames = data.batches()
    assert bnames == ["all"] and (bcodes == 0).all()
    assert "labels: none" in data.summary()


def test_h5ad_paths(tmp_path):
    adatas, kinds = pair()
    paths = {}
    for m, a in adatas.items():
        paths[m] = tmp_path / f"{m}.h5ad"
        a.write_h5ad(paths[m])
    data = PairedData.from_anndatas(
        {m: str(p) for m, p in paths.items()}, kinds, label_key="cell_type"
    )
    assert data.n_cells == 12
    assert data.modalities["rna"].where == str(paths["rna"])
    np.testing.assert_array_equal(data.modalities["adt"].x, adatas["adt"].X)


# ---------------------------------------------------------------------- joins
def _shifted() -> tuple[dict[str, ad.AnnData], dict[str, str]]:
    """rna has c000-c009, adt has c002-c011: 8 shared, 2 only in each."""
    return (
        {
            "rna": make_adata(_names(0, 10), 8, sparse=True, seed=1, prefix="g"),
            "adt": make_adata(_names(2, 12), 4, seed=2, prefix="p"),
        },
        {"rna": "counts", "adt": "counts"},
    )


def test_strict_join_cells_differ():
    adatas, kinds = _shifted()
    err = input_error(PairedData.from_anndatas, adatas, kinds)
    assert "cells differ between modalities 'rna' and 'adt'" in err.what
    assert "2 only in 'rna'" in err.what and "2 only in 'adt'" in err.what
    assert "c000" in err.what and "c001" in err.what  # examples
    assert "AnnData of modality 'rna'" in err.where and "AnnData of modality 'adt'" in err.where
    assert "data.join=inner" in err.fix and "data.join=outer" in err.fix


def test_strict_join_examples_are_capped():
    adatas = {"rna": make_adata(_names(0, 50)), "adt": make_adata(_names(100, 150))}
    err = input_error(PairedData.from_anndatas, adatas, {"rna": "counts", "adt": "counts"})
    assert "50 only in 'rna', 50 only in 'adt'" in err.what
    assert err.what.endswith("...")
    assert err.what.count("c0") + err.what.count("c1") <= 4


def test_strict_join_same_cells_other_order():
    names = _names(0, 10)
    adatas = {"rna": make_adata(names), "adt": make_adata(names[::-1])}
    err = input_error(PairedData.from_anndatas, adatas, {"rna": "counts", "adt": "counts"})
    assert "same cells in a different order" in err.what
    assert "join=inner" in err.fix


def test_inner_join_reports_dropped():
    adatas, kinds = _shifted()
    data = PairedData.from_anndatas(adatas, kinds, join="inner")
    assert list(data.names) == _names(2, 10)
    assert any("kept 8 shared cells, dropped 4" in n for n in data.notes)
    assert "dropped 4" in data.summary()
    for m, a in adatas.items():
        mod = data.modalities[m]
        assert mod.present.all()
        x = mod.x.toarray() if sp.issparse(mod.x) else mod.x
        ref = a[_names(2, 10)].X
        np.testing.assert_array_equal(x, ref.toarray() if sp.issparse(ref) else ref)


def test_inner_join_nothing_shared():
    adatas = {"rna": make_adata(_names(0, 5)), "adt": make_adata(_names(5, 10))}
    err = input_error(
        PairedData.from_anndatas, adatas, {"rna": "counts", "adt": "counts"}, join="inner"
    )
    assert "no cell is shared" in err.what


def test_outer_join_masks_missing_rows():
    adatas, kinds = _shifted()
    data = PairedData.from_anndatas(adatas, kinds, join="outer", label_key="cell_type")
    assert list(data.names) == _names(0, 12)
    assert any(
        "missing-modality counts" in n and "'rna': 2" in n and "'adt': 2" in n for n in data.notes
    )
    summary = data.summary()
    assert "modality rna: kind=counts features=8 cells=10 missing=2" in summary
    assert "modality adt: kind=counts features=4 cells=10 missing=2" in summary
    rna, adt = data.modalities["rna"], data.modalities["adt"]
    np.testing.assert_array_equal(rna.present, np.arange(12) < 10)
    np.testing.assert_array_equal(adt.present, np.arange(12) >= 2)
    assert rna.x[10:].nnz == 0
    assert not adt.x[:2].any()
    np.testing.assert_array_equal(rna.x[:10].toarray(), adatas["rna"].X.toarray())
    np.testing.assert_array_equal(adt.x[2:], adatas["adt"].X)
    # labels of cells only in adt come from adt's obs
    codes, _ = data.labels()
    assert (codes >= 0).all()
    # the datamodule gives mask 0 rows (and zero inputs) for the missing modality
    dm = PairedDataModule(data, split={"kind": "random", "fractions": [0.5, 0.25, 0.25]})
    dm.setup()
    batch = dm.batch(np.arange(12))
    np.testing.assert_array_equal(
        batch["mask/rna"].numpy(), (np.arange(12) < 10).astype(np.float32)
    )
    np.testing.assert_array_equal(
        batch["mask/adt"].numpy(), (np.arange(12) >= 2).astype(np.float32)
    )
    assert batch["mask/rna"].dtype == torch.float32
    assert torch.all(batch["rna"][10:] == 0) and torch.all(batch["counts/adt"][:2] == 0)


def test_unknown_join():
    adatas, kinds = pair()
    err = input_error(PairedData.from_anndatas, adatas, kinds, join="left")
    assert "unknown join 'left'" in err.what and err.where == "data.join"
    assert "strict" in err.fix and "outer" in err.fix


# ---------------------------------------------------------------------- MuData
def _mudata(tmp_path):
    import mudata as md

    rna = make_adata(_names(0, 10), 8, sparse=True, seed=1, prefix="g")
    adt = make_adata(_names(2, 12), 4, seed=2, prefix="p")
    adt.var_names = [f"p{j}" for j in range(adt.n_vars)]
    mdata = md.MuData({"rna": rna, "adt": adt})
    path = tmp_path / "pair.h5mu"
    mdata.write(path)
    return path, rna, adt


def test_mudata_h5mu(tmp_path):
    path, rna, adt = _mudata(tmp_path)
    kinds = {"rna": "counts", "adt": "counts"}
    data = PairedData.from_mudata(str(path), kinds, label_key="cell_type", batch_key="batch")
    assert sorted(data.names) == _names(0, 12)
    order = data.names.get_indexer(_names(0, 12))
    np.testing.assert_array_equal(data.modalities["rna"].present[order], np.arange(12) < 10)
    np.testing.assert_array_equal(data.modalities["adt"].present[order], np.arange(12) >= 2)
    x = data.modalities["adt"].x
    np.testing.assert_array_equal(x[data.names.get_indexer(_names(2, 12))], adt.X)
    assert (data.labels()[0] >= 0).all()
    assert str(path) in data.modalities["rna"].where
    # the same through the registry's custom source, with data.join=outer
    cfg = {"source": "custom", "paths": str(path), "kinds": kinds, "label_key": "cell_type"}
    same = load_dataset({**cfg, "join": "outer"})
    assert same.n_cells == 12
    assert any("missing-modality counts" in n for n in same.notes)
    # data.join=strict (the custom default) holds for a MuData too: other cells are refused
    err = input_error(load_dataset, {**cfg, "join": "strict"})
    assert "cells differ between modalities 'rna' and 'adt'" in err.what
    assert "data.join=outer" in err.fix


def test_mudata_missing_file(tmp_path):
    err = input_error(PairedData.from_mudata, str(tmp_path / "nope.h5mu"), {"rna": "counts"})
    assert err.what == "file not found" and "nope.h5mu" in err.where


def test_mudata_bad_values_name_the_modality(tmp_path):
    import mudata as md

    adt = make_adata(_names(0, 10), 4, seed=2, prefix="p")
    adt.X[3, 1] = np.nan
    path = tmp_path / "bad.h5mu"
    md.MuData({"rna": make_adata(_names(0, 10), 8, prefix="g"), "adt": adt}).write(path)
    err = input_error(PairedData.from_mudata, str(path), {"rna": "counts", "adt": "counts"})
    assert "1 cells have NaN or inf values" in err.what
    assert "modality 'adt'" in err.where and str(path) in err.where


def test_mudata_global_obs_columns(tmp_path):
    import mudata as md

    rna = make_adata(_names(0, 10), 8, prefix="g")
    adt = make_adata(_names(0, 10), 4, prefix="p")
    rna.obs = rna.obs.drop(columns=["cell_type"])
    adt.obs = adt.obs.drop(columns=["cell_type"])
    mdata = md.MuData({"rna": rna, "adt": adt})
    mdata.obs["cell_type"] = [f"T{i % 2}" for i in range(10)]
    path = tmp_path / "global.h5mu"
    mdata.write(path)
    data = PairedData.from_mudata(path, {"rna": "counts", "adt": "counts"}, label_key="cell_type")
    codes, names = data.labels()
    assert names == ["T0", "T1"]
    np.testing.assert_array_equal(codes[data.names.get_indexer(_names(0, 10))], np.arange(10) % 2)


# ---------------------------------------------------------------------- bad input
@pytest.mark.filterwarnings("ignore:Observation names are not unique")
def test_duplicate_cell_names():
    names = _names(0, 10)
    names[5] = names[2]
    names[7] = names[3]
    adatas = {"rna": make_adata(_names(0, 10)), "adt": make_adata(names)}
    err = input_error(PairedData.from_anndatas, adatas, {"rna": "counts", "adt": "counts"})
    assert "2 duplicate cell names in modality 'adt'" in err.what
    assert "c002" in err.what and "c003" in err.what
    assert "AnnData of modality 'adt'" in err.where
    assert "obs_names_make_unique" in err.fix


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf(sparse, bad):
    adatas, kinds = pair()
    x = adatas["adt"].X.copy()
    x[[1, 4, 4], [0, 0, 2]] = bad
    adatas["adt"] = ad.AnnData(sp.csr_matrix(x) if sparse else x, obs=adatas["adt"].obs)
    err = input_error(PairedData.from_anndatas, adatas, kinds)
    assert "2 cells have NaN or inf values" in err.what
    assert "c001" in err.what and "c004" in err.what
    assert "modality 'adt'" in err.where
    assert "remove or impute" in err.fix


def test_nan_in_continuous_modality():
    adatas, kinds = pair()
    adatas["ephys"].X[[0, 3, 6], 1] = np.nan
    err = input_error(PairedData.from_anndatas, adatas, kinds)
    assert "3 cells have NaN or inf values" in err.what and "modality 'ephys'" in err.where


@pytest.mark.parametrize("sparse", [False, True])
def test_negative_counts(sparse):
    adatas, kinds = pair()
    x = adatas["adt"].X.copy()
    x[2, 1] = -1
    adatas["adt"] = ad.AnnData(sp.csr_matrix(x) if sparse else x, obs=adatas["adt"].obs)
    err = input_error(PairedData.from_anndatas, adatas, kinds)
    assert "1 cells have negative values in a 'counts' modality" in err.what
    assert "c002" in err.what
    assert "modality 'adt'" in err.where
    assert "raw counts" in err.fix and "continuous" in err.fix


@pytest.mark.parametrize("sparse", [False, True])
def test_non_integer_counts(sparse):
    adatas, kinds = pair()
    x = adatas["rna"].X.toarray()
    x[[0, 5, 9], 2] += 0.5
    adatas["rna"] = ad.AnnData(sp.csr_matrix(x) if sparse else x, obs=adatas["rna"].obs)
    err = input_error(PairedData.from_anndatas, adatas, kinds)
    assert "3 cells have non-integer values in a 'counts' modality" in err.what
    assert "c000" in err.what and "c005" in err.what
    assert "modality 'rna'" in err.where
    assert "integer counts" in err.fix and "continuous" in err.fix


def test_negative_and_fractional_values_are_fine_when_continuous():
    adatas, kinds = pair()
    adatas["adt"].X = adatas["adt"].X - 2.5
    kinds["adt"] = "continuous"
    data = PairedData.from_anndatas(adatas, kinds)
    assert data.modalities["adt"].x.min() < 0


def test_zero_features():
    adatas, kinds = pair()
    adatas["adt"] = ad.AnnData(np.zeros((12, 0), np.float32), obs=adatas["adt"].obs)
    err = input_error(PairedData.from_anndatas, adatas, kinds)
    assert "modality 'adt' is empty (12 cells x 0 features)" in err.what
    assert "at least one cell and one feature" in err.fix


def test_zero_cells(tmp_path):
    adatas, kinds = pair()
    empty = ad.AnnData(np.zeros((0, 4), np.float32))
    path = tmp_path / "adt.h5ad"
    empty.write_h5ad(path)
    adatas["adt"] = str(path)
    err = input_error(PairedData.from_anndatas, adatas, kinds)
    assert "modality 'adt' is empty (0 cells x 4 features)" in err.what
    assert err.where == str(path)


@pytest.mark.parametrize("role", ["label", "batch", "class"])
def test_missing_column(role):
    adatas, kinds = pair()
    keys = {"label_key": "cell_type", f"{role}_key": "nope"}
    err = input_error(PairedData.from_anndatas, adatas, kinds, **keys)
    assert f"{role} column 'nope' is missing" in err.what
    assert "cell_type" in err.where  # the columns that are there
    assert f"data.{role}_key" in err.fix and "obs['nope']" in err.fix


def test_missing_file(tmp_path):
    adatas, kinds = pair()
    adatas["adt"] = str(tmp_path / "adt_missing.h5ad")
    err = input_error(PairedData.from_anndatas, adatas, kinds)
    assert err.what == "file not found"
    assert err.where == str(tmp_path / "adt_missing.h5ad")
    assert "modality 'adt'" in err.fix


def test_unreadable_file(tmp_path):
    adatas, kinds = pair()
    path = tmp_path / "adt.h5ad"
    path.write_text("not an h5ad")
    adatas["adt"] = str(path)
    err = input_error(PairedData.from_anndatas, adatas, kinds)
    assert "cannot read an AnnData" in err.what and err.where == str(path)


def test_kinds_must_match_modalities():
    adatas, kinds = pair()
    err = input_error(PairedData.from_anndatas, adatas, {"rna": "counts", "adt": "counts"})
    assert "no kind given for modalities ['ephys']" in err.what and err.where == "data.kinds"
    err = input_error(PairedData.from_anndatas, adatas, {**kinds, "atac": "binary"})
    assert "['atac']" in err.what
    err = input_error(PairedData.from_anndatas, adatas, {**kinds, "adt": "integer"})
    assert "unknown modality kind 'integer'" in err.what and err.where == "data.kinds.adt"
    err = input_error(PairedData.from_anndatas, {}, {})
    assert "no modalities given" in err.what

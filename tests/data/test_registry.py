"""Datasets by name: the synthetic default and the shared real datasets (DATASETS.md).

Real-data tests skip with a visible reason when ``MMINT_DATA_DIR`` is not set; when it is set,
a missing dataset folder is a failure, as ``contracts.md`` asks.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from mmint.data import PairedDataModule, dataset_config, dataset_names, load_dataset
from mmint.data.registry import DATA_DIR_ENV
from mmint.errors import InputError

torch.set_num_threads(1)

SKIP_REASON = "MMINT_DATA_DIR is not set: real-data tests need the shared datasets"

# name -> (cells, {modality: (kind, features)}, n labels, n batches, n excluded cells,
#          {label: count} spot checks from DATASETS.md)
REAL = {
    "patchseq_gouwen2020": (
        448,
        {"rna": ("continuous", 1252), "ephys": ("continuous", 68), "morph": ("continuous", 514)},
        27,
        1,
        0,
        {"Sst-MET-12": 54, "Lamp5-MET-2": 2},
    ),
    "snareseq_mouse_cortex_chen2019": (
        10309,
        {"rna": ("counts", 1677), "atac": ("binary", 25734)},
        22,  # 23 clusters, 'Mis' excluded
        12,
        1119,
        {"E2Rasgrf2": 2254, "Peri": 19},
    ),
    "bmmc_multiome_neurips2021_starter": (
        500,
        {"rna": ("counts", 600), "atac": ("binary", 600)},
        21,
        2,
        0,
        {"CD8+ T": 89, "Plasma cell": 2},
    ),
    "bmmc_cite_neurips2021_starter": (
        600,
        {"rna": ("counts", 1000), "adt": ("counts", 134)},
        41,
        2,
        0,
        {"CD14+ Mono": 90, "MK/E prog": 1},
    ),
    "dbitseq_mouse_embryo": (
        936,
        {
            "rna": ("continuous", 568),
            "protein": ("continuous", 22),
            "niche_rna": ("continuous", 568),
        },
        13,
        1,
        0,
        {"cluster_4": 207, "cluster_12": 4},
    ),
    "pbmc_multiome_tiny_simba": (
        100,
        {"rna": ("counts", 10000), "atac": ("binary", 10000)},
        19,
        1,
        0,
        {"cluster_1": 13, "cluster_17": 1},
    ),
}


def _data_dir() -> Path:
    root = os.environ.get(DATA_DIR_ENV)
    if not root:
        pytest.skip(SKIP_REASON)
    return Path(root)


_cache: dict[str, object] = {}


def _load(name: str):
    """Each real dataset is loaded once per session (snareseq is the only big one)."""
    _data_dir()
    if name not in _cache:
        _cache[name] = load_dataset(name)
    return _cache[name]


# ---------------------------------------------------------------------- registry
def test_dataset_names():
    names = dataset_names()
    assert set(REAL) | {"synthetic", "custom"} <= set(names)
    for name in REAL:
        cfg = dataset_config(name)
        assert cfg["name"] == name and cfg["source"] == "shared"
        assert {m: k for m, (k, _) in REAL[name][1].items()} == cfg["kinds"]


def test_unknown_dataset():
    with pytest.raises(InputError) as info:
        load_dataset("nope")
    err = info.value
    assert err.what == "unknown dataset 'nope'"
    assert err.fix.startswith("use one of: ") and err.fix.endswith(", or data=custom")
    listed = err.fix[len("use one of: ") : -len(", or data=custom")].split(", ")
    assert listed == sorted(n for n in dataset_names() if n != "custom")


def test_synthetic_dataset():
    data = load_dataset("synthetic")
    assert data.n_cells == 2000
    assert {m: (mod.kind, mod.n_features) for m, mod in data.modalities.items()} == {
        "rna": ("counts", 1000),
        "atac": ("binary", 2000),
        "ephys": ("continuous", 50),
    }
    codes, names = data.labels()
    assert len(names) == 8 and (codes >= 0).all()
    assert len(data.batches()[1]) == 2
    assert len(set(data.classes().values())) == 4
    assert len(data.extras["links"]) > 0
    again = load_dataset("synthetic")
    np.testing.assert_array_equal(again.modalities["ephys"].x, data.modalities["ephys"].x)


def test_shared_without_data_dir(monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    with pytest.raises(InputError) as info:
        load_dataset("pbmc_multiome_tiny_simba")
    assert "needs $MMINT_DATA_DIR, which is not set" in info.value.what
    assert DATA_DIR_ENV in info.value.fix


def test_shared_folder_missing_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    with pytest.raises(InputError) as info:
        load_dataset("pbmc_multiome_tiny_simba")
    assert info.value.what == "dataset 'pbmc_multiome_tiny_simba' not found"
    assert str(tmp_path / "pbmc_multiome_tiny_simba") in info.value.where


def test_shared_dataset_incomplete(monkeypatch, tmp_path):
    (tmp_path / "pbmc_multiome_tiny_simba").mkdir()
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    with pytest.raises(InputError) as info:
        load_dataset("pbmc_multiome_tiny_simba")
    assert "is incomplete: 2 modality files missing" in info.value.what
    assert "rna.h5ad" in info.value.where and "atac.h5ad" in info.value.where


# ---------------------------------------------------------------------- real datasets
@pytest.mark.realdata
@pytest.mark.parametrize("name", list(REAL))
def test_real_dataset(name):
    root = _data_dir()
    # set but missing is a failure, not a skip
    assert (root / name).is_dir(), f"{DATA_DIR_ENV}={root} has no folder {name}"
    cells, modalities, n_labels, n_batches, n_excluded, spot = REAL[name]
    data = _load(name)
    assert data.n_cells == cells
    assert {m: (mod.kind, mod.n_features) for m, mod in data.modalities.items()} == modalities
    for mod in data.modalities.values():
        assert mod.present.all() and mod.x.dtype == np.float32
    codes, names = data.labels()
    assert len(names) == n_labels
    assert int((codes < 0).sum()) == n_excluded
    counts = Counter(np.asarray(names)[codes[codes >= 0]].tolist())
    for label, n in spot.items():
        assert counts[label] == n, label
    assert len(data.batches()[1]) == n_batches
    assert f"cells: {cells}" in data.summary()


@pytest.mark.realdata
def test_snareseq_excludes_mis():
    data = _load("snareseq_mouse_cortex_chen2019")
    codes, names = data.labels()
    assert "Mis" not in names
    mis = (data.obs["cell_type"].astype(str) == "Mis").to_numpy()
    assert mis.sum() == 1119
    assert (codes[mis] == -1).all() and (codes[~mis] >= 0).all()
    classes = data.classes()
    assert classes["E2Rasgrf2"] == "L2/3" and classes["E6Tle4"] == "L6"
    assert sorted(set(data.obs["batch"].astype(str))) == [f"09{c}" for c in "ABCDEFGHIJKL"]
    assert "0 cells without a label (unknown), 1119 excluded" in data.summary()


@pytest.mark.realdata
def test_patchseq_classes():
    classes = _load("patchseq_gouwen2020").classes()
    assert sorted(set(classes.values())) == ["Lamp5", "Pvalb", "Sncg", "Sst", "Vip"]
    assert classes["Sst-MET-12"] == "Sst"


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["pbmc_multiome_tiny_simba", "bmmc_cite_neurips2021_starter"])
def test_real_datamodule(name):
    data = _load(name)
    dm = PairedDataModule(
        data, transforms=dataset_config(name)["transforms"], seed=0, batch_size=32
    )
    dm.setup()
    n = REAL[name][0]
    assert sum(len(v) for v in dm.split.values()) == n
    batch = next(iter(dm.train_dataloader()))
    for m, (kind, n_features) in REAL[name][1].items():
        assert batch[m].shape == (32, n_features) and batch[m].dtype == torch.float32
        assert torch.isfinite(batch[m]).all()
        assert (f"counts/{m}" in batch) == (kind == "counts")
    if name == "bmmc_cite_neurips2021_starter":
        assert dm.transform_names == {"rna": "lognorm", "adt": "clr"}


# ---------------------------------------------------------------------- Liu 2021 (scale data)
LIU = "pbmc_covid_cite_liu2021"


def _fake_liu(root: Path, n_cells: int = 48) -> np.ndarray:
    """A tiny copy of the Liu layout (rna + adt counts, obs cell_type and batch); returns the
    adt counts."""
    rng = np.random.default_rng(0)
    obs = pd.DataFrame(
        {
            "cell_type": np.tile(["CD4_Mem", "NK", "B_Naive", "pDC"], n_cells // 4),
            "batch": np.repeat(["B1", "B2", "B3"], n_cells // 3),
        },
        index=[f"liu_{i}" for i in range(n_cells)],
    )
    folder = root / LIU
    folder.mkdir()
    rna = rng.poisson(2.0, (n_cells, 30)).astype(np.float32)
    adt = rng.poisson(20.0, (n_cells, 12)).astype(np.float32)
    for m, x in {"rna": rna, "adt": adt}.items():
        ad.AnnData(sp.csr_matrix(x), obs=obs).write_h5ad(folder / f"{m}.h5ad")
    return adt


def test_liu_registry_entry_reads_its_layout(monkeypatch, tmp_path):
    """The config resolves to rna + adt counts, labels cell_type, 3 batches, and the adt input
    is CLR (log1p minus the cell's mean over antibodies), as for the CITE starter."""
    cfg = dataset_config(LIU)
    assert cfg["kinds"] == {"rna": "counts", "adt": "counts"}
    assert cfg["transforms"] == dataset_config("bmmc_cite_neurips2021_starter")["transforms"]
    assert (cfg["label_key"], cfg["batch_key"], cfg["source"]) == ("cell_type", "batch", "shared")
    adt = _fake_liu(tmp_path)
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    data = load_dataset(LIU)
    assert data.n_cells == 48
    assert {m: (mod.kind, mod.n_features) for m, mod in data.modalities.items()} == {
        "rna": ("counts", 30),
        "adt": ("counts", 12),
    }
    assert len(data.labels()[1]) == 4 and list(data.batches()[1]) == ["B1", "B2", "B3"]
    dm = PairedDataModule(data, transforms=cfg["transforms"], seed=0, batch_size=8)
    dm.setup()
    assert dm.transform_names == {"rna": "lognorm", "adt": "clr"}
    batch = next(iter(dm.train_dataloader()))
    logged = np.log1p(adt[batch["index"].numpy()])
    expected = logged - logged.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(batch["adt"].numpy(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.realdata
def test_liu_files_match_datasets_md():
    """The shared files' shapes and obs (read backed: the matrices stay on disk)."""
    root = _data_dir()
    folder = root / LIU
    assert folder.is_dir(), f"{DATA_DIR_ENV}={root} has no folder {LIU}"
    shapes = {}
    for m in ("rna", "adt"):
        adata = ad.read_h5ad(folder / f"{m}.h5ad", backed="r")
        shapes[m] = adata.shape
        obs = adata.obs
        adata.file.close()
    assert shapes == {"rna": (30534, 1000), "adt": (30534, 192)}
    counts = obs["cell_type"].astype(str).value_counts()
    assert len(counts) == 17 and counts["CD4_Mem"] == 5721 and counts["pDC"] == 35
    assert sorted(obs["batch"].astype(str).unique()) == ["B1", "B2", "B3"]

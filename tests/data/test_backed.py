"""``data.backed``: .h5ad matrices read lazily in file blocks give the same batches, data spec
and metrics as the in-memory path (issue 21)."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import scipy.sparse as sp

from mmint.data import PairedData, PairedDataModule
from mmint.data.backed import BackedMatrix, is_lazy
from mmint.data.simulate import simulate
from mmint.evaluate import evaluate
from mmint.models import build_model

from .fitting import fit_briefly

BLOCK = 32


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("backed")
    sim = simulate(
        n_cells=300,
        n_types=4,
        n_major=2,
        modalities={"rna": ("counts", 80), "atac": ("binary", 300), "ephys": ("continuous", 6)},
        n_links=2,
        seed=2,
    )
    for m, a in sim.adatas.items():
        a.write_h5ad(folder / f"{m}.h5ad")
    return {m: folder / f"{m}.h5ad" for m in sim.adatas}, sim.kinds


def _data(files, backed: bool, **kwargs) -> PairedData:
    paths, kinds = files
    return PairedData.from_anndatas(
        paths, kinds, label_key="cell_type", batch_key="batch", backed=backed, **kwargs
    )


def _dm(data: PairedData) -> PairedDataModule:
    # the same block shuffle in both, so that the train batches are the same cells
    dm = PairedDataModule(data, seed=0, batch_size=50, shuffle_block=BLOCK)
    dm.setup()
    return dm


def _blocks_of(data: PairedData) -> None:
    for mod in data.modalities.values():
        mod.x.block_rows = BLOCK


def _dense(x):
    return x.toarray() if sp.issparse(x) else np.asarray(x)


def test_backed_reads_the_same_batches_and_spec(files):
    backed_data = _data(files, backed=True)
    _blocks_of(backed_data)
    assert all(is_lazy(mod.x) for mod in backed_data.modalities.values())
    mem, lazy = _dm(_data(files, backed=False)), _dm(backed_data)
    assert lazy.backed and not mem.backed
    assert lazy.spec.to_dict(True) == mem.spec.to_dict(True)
    idx = np.array([5, 250, 3, 3, 120, 299])  # unsorted, repeated, across blocks
    a, b = mem.batch(idx, sparse=True), lazy.batch(idx, sparse=True)
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(_dense(a[key]), _dense(b[key]), err_msg=key)
    for first, second in zip(mem.train_dataloader(), lazy.train_dataloader(), strict=True):
        np.testing.assert_array_equal(first["index"], second["index"])


def test_block_shuffle_reads_each_file_block_about_once(files):
    data = _data(files, backed=True)
    _blocks_of(data)
    dm = _dm(data)
    atac = data.modalities["atac"].x
    atac.blocks_read = 0
    cells = [int(i) for batch in dm.train_dataloader() for i in batch["index"]]
    assert sorted(cells) == sorted(dm.cells("train").tolist())
    n_blocks = -(-data.n_cells // BLOCK)
    assert atac.blocks_read <= n_blocks + 2  # windows of 16 blocks fit the cache
    # and the shuffle still mixes blocks within a batch
    first = next(iter(dm.train_dataloader()))["index"].numpy()
    assert len(np.unique(first // BLOCK)) > 3


@pytest.mark.parametrize("name", ["pca", "multivi"])
def test_backed_metrics_equal_in_memory(files, name):
    scores = []
    for backed in (False, True):
        data = _data(files, backed=backed)
        if backed:
            _blocks_of(data)
        dm = _dm(data)
        L.seed_everything(0, verbose=False)
        model = build_model(name, dm.spec)
        fit_briefly(model, dm)
        scores.append(evaluate(model, dm, "test", scib=False, leiden=False))
    mem, lazy = scores
    for key in ("r2", "pearson", "auroc", "foscttm_pairs", "ari", "nmi"):
        assert _flat(lazy[key]) == pytest.approx(_flat(mem[key]), abs=1e-6), key


def _flat(value, prefix=""):
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix: value}


def test_backed_outer_join_gives_absent_rows_as_zero(tmp_path):
    x = sp.random(10, 5, density=0.5, format="csr", dtype=np.float32, random_state=0)
    import anndata as ad

    ad.AnnData(x).write_h5ad(tmp_path / "a.h5ad")
    source = ad.read_h5ad(tmp_path / "a.h5ad", backed="r").X
    pos = np.array([3, -1, 0, 9, -1])
    m = BackedMatrix(source, pos, block_rows=4, cache_blocks=1)
    got = m[np.arange(5)].toarray()
    expected = np.zeros((5, 5), np.float32)
    expected[[0, 2, 3]] = x[[3, 0, 9]].toarray()
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(m[1:4].toarray(), expected[1:4])


@pytest.mark.parametrize("method", ["svd", "lsi"])
def test_reduce_backed_equals_in_memory(files, method):
    """``data.reduce`` on rows read from the file: the in-memory reduction and inputs."""
    reduce = {"atac": {"method": method, "n_components": 5}}
    dms = []
    for backed in (False, True):
        data = _data(files, backed)
        if backed:
            _blocks_of(data)
        dm = PairedDataModule(data, seed=0, batch_size=50, shuffle_block=BLOCK, reduce=reduce)
        dm.setup()
        dms.append(dm)
    mem, lazy = dms
    assert not is_lazy(lazy.inputs["atac"]) and lazy.inputs["atac"].shape == (300, 5)
    assert np.allclose(mem.reductions["atac"].components, lazy.reductions["atac"].components)
    assert np.allclose(mem.inputs["atac"], lazy.inputs["atac"], atol=1e-5)

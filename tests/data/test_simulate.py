"""Tests of the synthetic data simulator (the contracts' default synthetic dataset)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.stats import rankdata, spearmanr
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score
from threadpoolctl import threadpool_limits

from mmint.data.simulate import SimulatedData, simulate

SEEDS = (0, 1, 2)
LINK_COLUMNS = [
    "source_modality",
    "source_feature",
    "target_modality",
    "target_feature",
    "active_types",
    "strength",
]


@pytest.fixture(scope="module")
def default_sims() -> dict[int, SimulatedData]:
    """The default dataset (2,000 cells) for seeds 0-2, made once for the module."""
    return {seed: simulate(seed=seed) for seed in SEEDS}


def _dense(x) -> np.ndarray:
    return x.toarray() if sp.issparse(x) else np.asarray(x)


def _preprocess(x, kind: str) -> np.ndarray:
    """The contracts' default model input, written independently of mmint's transforms."""
    x = _dense(x).astype(np.float64)
    if kind == "counts":
        return np.log1p(x / x.sum(axis=1, keepdims=True) * 1e4)
    if kind == "binary":
        return (x > 0).astype(np.float64)
    return (x - x.mean(axis=0)) / x.std(axis=0)


def _pca(x: np.ndarray) -> np.ndarray:
    return PCA(n_components=min(20, x.shape[1]), random_state=0).fit_transform(x)


def _kmeans_ari(z: np.ndarray, labels: np.ndarray) -> float:
    k = len(np.unique(labels))
    pred = KMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(z)
    return adjusted_rand_score(labels, pred)


def _floors(sim: SimulatedData) -> dict[str, float]:
    """PCA + KMeans ARI per modality and on the concatenated, variance-scaled embeddings."""
    labels = next(iter(sim.adatas.values())).obs["cell_type"].to_numpy()
    embeddings, out = {}, {}
    with threadpool_limits(limits=1):  # the test machines are shared
        for name, adata in sim.adatas.items():
            z = _pca(_preprocess(adata.X, sim.kinds[name]))
            embeddings[name] = z / np.sqrt(z.var(axis=0).sum())
            out[name] = _kmeans_ari(z, labels)
        out["combined"] = _kmeans_ari(np.hstack(list(embeddings.values())), labels)
    return out


def _uniform_r2(x_true: np.ndarray, x_pred: np.ndarray) -> float:
    """Mean per-feature R2 over the features whose variance exceeds 1e-8 (the contracts')."""
    sst = ((x_true - x_true.mean(axis=0)) ** 2).sum(axis=0)
    sse = ((x_true - x_pred) ** 2).sum(axis=0)
    keep = sst / len(x_true) > 1e-8
    return float(np.mean(1.0 - sse[keep] / sst[keep]))


def _cell_auroc(x_true: np.ndarray, score: np.ndarray) -> float:
    """Mean per-cell AUROC of ``score`` against ``x_true > 0`` (cells with both classes)."""
    ranks = rankdata(score, axis=1)  # ties get their average rank, as in roc_auc_score
    pos = x_true > 0
    n_pos = pos.sum(axis=1)
    n_neg = pos.shape[1] - n_pos
    ok = (n_pos > 0) & (n_neg > 0)
    auc = ((ranks * pos).sum(axis=1) - n_pos * (n_pos + 1) / 2) / np.maximum(n_pos * n_neg, 1)
    return float(auc[ok].mean())


def _oracle_scores(sim: SimulatedData, seed: int) -> dict[str, dict[str, float]]:
    """How well the group means of the training cells predict the test cells, per modality.

    The predictor of a test cell is the mean (in the model-input space) of the training cells
    (a random 80%) of its group: ``"type"`` groups by true cell type and batch (an upper bound
    for any cross-modal predictor), ``"major"`` by major group and batch (what a modality that
    does not see a cell's subtype can know). Uniform R2 for rna and ephys, per-cell AUROC for
    atac, on the other 20%.
    """
    obs = sim.adatas["rna"].obs
    batch = obs["batch"].cat.codes.to_numpy()
    groups = {
        "type": obs["cell_type"].cat.codes.to_numpy() * 2 + batch,
        "major": obs["major_type"].cat.codes.to_numpy() * 2 + batch,
    }
    order = np.random.default_rng(seed).permutation(len(obs))
    n_train = int(0.8 * len(obs))
    train, test = order[:n_train], order[n_train:]
    out: dict[str, dict[str, float]] = {"type": {}, "major": {}}
    for name, adata in sim.adatas.items():
        x = _preprocess(adata.X, sim.kinds[name])
        for key, group in groups.items():
            sums = np.zeros((group.max() + 1, x.shape[1]))
            np.add.at(sums, group[train], x[train])
            means = sums / np.bincount(group[train], minlength=len(sums))[:, None]
            pred = means[group[test]]
            if sim.kinds[name] == "binary":
                out[key][name] = _cell_auroc(x[test], pred)
            else:
                out[key][name] = _uniform_r2(x[test], pred)
    return out


def _assert_same(a: SimulatedData, b: SimulatedData) -> None:
    assert list(a.adatas) == list(b.adatas)
    for name in a.adatas:
        np.testing.assert_array_equal(_dense(a.adatas[name].X), _dense(b.adatas[name].X))
        pd.testing.assert_frame_equal(a.adatas[name].obs, b.adatas[name].obs)
    pd.testing.assert_frame_equal(a.links, b.links)


def test_default_shapes_kinds_and_dtypes(default_sims):
    sim = default_sims[0]
    assert sim.kinds == {"rna": "counts", "atac": "binary", "ephys": "continuous"}
    shapes = {name: adata.shape for name, adata in sim.adatas.items()}
    assert shapes == {"rna": (2000, 1000), "atac": (2000, 2000), "ephys": (2000, 50)}

    rna, atac, ephys = sim.adatas["rna"].X, sim.adatas["atac"].X, sim.adatas["ephys"].X
    assert isinstance(rna, sp.csr_matrix) and isinstance(atac, sp.csr_matrix)
    assert isinstance(ephys, np.ndarray)
    for x in (rna, atac, ephys):
        assert x.dtype == np.float32
    assert rna.has_canonical_format and atac.has_canonical_format
    # Counts are non-negative integers with varying library sizes.
    assert np.all(rna.data > 0) and np.all(rna.data == np.round(rna.data))
    totals = np.asarray(rna.sum(axis=1)).ravel()
    assert totals.min() > 0 and totals.std() / totals.mean() > 0.2
    # Binary peaks are ones, at about the requested sparsity.
    assert np.all(atac.data == 1.0)
    assert 1 - atac.nnz / np.prod(atac.shape) == pytest.approx(0.9, abs=0.02)
    assert np.isfinite(ephys).all() and ephys.std() > 0.5


def test_names_and_obs(default_sims):
    sim = default_sims[0]
    obs = sim.adatas["rna"].obs
    assert list(obs.index[:2]) == ["cell0000", "cell0001"] and obs.index[-1] == "cell1999"
    for adata in sim.adatas.values():
        assert adata.obs_names.equals(obs.index)
        pd.testing.assert_frame_equal(adata.obs, obs)
    assert sim.adatas["rna"].var_names[0] == "gene0000"
    assert sim.adatas["atac"].var_names[-1] == "peak01999"
    assert sim.adatas["ephys"].var_names[0] == "ephys00"

    for column in ("cell_type", "major_type", "batch"):
        assert isinstance(obs[column].dtype, pd.CategoricalDtype)
    assert list(obs["cell_type"].cat.categories) == [f"T{t}" for t in range(8)]
    assert list(obs["major_type"].cat.categories) == [f"M{m}" for m in range(4)]
    assert list(obs["batch"].cat.categories) == ["b0", "b1"]
    # Types 2k and 2k+1 form major group k; every type and batch is populated.
    pairs = set(zip(obs["cell_type"], obs["major_type"], strict=True))
    assert pairs == {(f"T{t}", f"M{t // 2}") for t in range(8)}
    assert obs["cell_type"].value_counts().min() > 150
    assert obs["batch"].value_counts().min() > 800


def test_links_table(default_sims):
    sim = default_sims[0]
    links = sim.links
    assert list(links.columns) == LINK_COLUMNS
    assert len(links) == 12
    assert (links["source_modality"] != links["target_modality"]).all()
    assert (links["strength"] == 1.5).all()
    for _, link in links.iterrows():
        assert link.source_feature in sim.adatas[link.source_modality].var_names
        assert link.target_feature in sim.adatas[link.target_modality].var_names
        active = link.active_types.split(";")
        assert active and set(active) <= {f"T{t}" for t in range(8)}
    # Directions are mixed over modality pairs; no feature serves two links or two roles.
    directions = set(zip(links["source_modality"], links["target_modality"], strict=True))
    assert len(directions) == 6
    features = list(zip(links["source_modality"], links["source_feature"], strict=True))
    features += list(zip(links["target_modality"], links["target_feature"], strict=True))
    assert len(set(features)) == len(features)


def test_same_seed_same_data_different_seed_different():
    kwargs = {
        "n_cells": 200,
        "modalities": {"rna": ("counts", 80), "atac": ("binary", 120), "ephys": ("continuous", 10)},
        "n_links": 3,
    }
    a, b, c = simulate(seed=5, **kwargs), simulate(seed=5, **kwargs), simulate(seed=6, **kwargs)
    _assert_same(a, b)
    for name in a.adatas:
        assert not np.array_equal(_dense(a.adatas[name].X), _dense(c.adatas[name].X))


def test_chunk_size_does_not_change_the_data():
    kwargs = {
        "n_cells": 300,
        "modalities": {"rna": ("counts", 60), "atac": ("binary", 90), "ephys": ("continuous", 8)},
        "n_links": 4,
        "seed": 3,
    }
    reference = simulate(**kwargs)
    for chunk_size in (1, 64, 100, 1000):
        _assert_same(reference, simulate(chunk_size=chunk_size, **kwargs))


@pytest.mark.parametrize("seed", SEEDS)
def test_integration_matters(default_sims, seed):
    floors = _floors(default_sims[seed])
    for name in ("rna", "atac", "ephys"):
        assert floors[name] < 0.75, (name, floors)
    assert floors["combined"] >= 0.9, floors


@pytest.mark.parametrize("seed", SEEDS)
def test_types_predict_every_modality(default_sims, seed):
    """The type signal dominates the noise, so cross-modal prediction can be good.

    Knowing a cell's type and batch predicts its features well; knowing only its major group
    and batch (all that a modality blind to its subtype can tell another) predicts most of it.
    """
    scores = _oracle_scores(default_sims[seed], seed)
    for name in ("rna", "ephys"):
        assert scores["type"][name] >= 0.65, (name, scores)
        assert scores["major"][name] >= 0.5, (name, scores)
    assert scores["type"]["atac"] >= 0.85, scores
    assert scores["major"]["atac"] >= 0.8, scores
    # The subtypes still carry signal of their own in rna, on top of the major groups.
    assert scores["type"]["rna"] > scores["major"]["rna"] + 0.02, scores


def test_links_are_detectable_in_active_types_only(default_sims):
    sim = default_sims[0]
    inputs = {name: _preprocess(a.X, sim.kinds[name]) for name, a in sim.adatas.items()}
    obs = sim.adatas["rna"].obs
    # Within type and batch, so that batch shifts shared by both features do not count.
    groups = obs.groupby(["cell_type", "batch"], observed=True).indices
    active_rho, inactive_rho = [], []
    for _, link in sim.links.iterrows():
        src = inputs[link.source_modality][
            :, sim.adatas[link.source_modality].var_names.get_loc(link.source_feature)
        ]
        dst = inputs[link.target_modality][
            :, sim.adatas[link.target_modality].var_names.get_loc(link.target_feature)
        ]
        active = set(link.active_types.split(";"))
        for (cell_type, _), idx in groups.items():
            rho = spearmanr(src[idx], dst[idx])[0]
            (active_rho if cell_type in active else inactive_rho).append(rho)
    assert np.mean(active_rho) > 0.3
    assert abs(np.mean(inactive_rho)) < 0.05


def test_other_configuration():
    modalities = {"gex": ("counts", 300), "acc": ("binary", 400), "prot": ("continuous", 30)}
    sim = simulate(
        n_cells=600,
        n_types=6,
        n_major=3,
        n_batches=3,
        modalities=modalities,
        n_links=5,
        sparsity=0.95,
        seed=1,
    )
    assert sim.kinds == {"gex": "counts", "acc": "binary", "prot": "continuous"}
    assert {n: a.shape for n, a in sim.adatas.items()} == {
        "gex": (600, 300),
        "acc": (600, 400),
        "prot": (600, 30),
    }
    obs = sim.adatas["gex"].obs
    assert list(obs["cell_type"].cat.categories) == [f"T{t}" for t in range(6)]
    assert list(obs["major_type"].cat.categories) == ["M0", "M1", "M2"]
    assert list(obs["batch"].cat.categories) == ["b0", "b1", "b2"]
    assert sim.adatas["gex"].var_names[0] == "gex000"
    acc = sim.adatas["acc"].X
    assert 1 - acc.nnz / np.prod(acc.shape) == pytest.approx(0.95, abs=0.02)
    assert len(sim.links) == 5
    for _, link in sim.links.iterrows():
        assert link.target_feature in sim.adatas[link.target_modality].var_names
    # Here too each modality alone misses some types and together they tell all six apart.
    floors = _floors(sim)
    assert max(floors[name] for name in modalities) < 0.75, floors
    assert floors["combined"] >= 0.9, floors


def test_two_modalities_and_no_links():
    sim = simulate(
        n_cells=150, modalities={"rna": ("counts", 50), "ephys": ("continuous", 5)}, n_links=0
    )
    assert list(sim.links.columns) == LINK_COLUMNS and sim.links.empty
    assert sim.adatas["ephys"].var_names[-1] == "ephys04"


def test_library_size_sets_each_counts_modality_depth():
    mods = {"rna": ("counts", 400), "adt": ("counts", 50)}
    default = simulate(n_cells=600, modalities=mods, n_links=2)
    shallow = simulate(n_cells=600, modalities=mods, n_links=2, library_size={"rna": 1_000.0})
    # the cells' totals: log-normal around the median (sd 0.3) times the type effects
    for sim, want in ((default, {"rna": 1e4, "adt": 1e4}), (shallow, {"rna": 1e3, "adt": 1e4})):
        for m, median in want.items():
            totals = np.asarray(sim.adatas[m].X.sum(1)).ravel()
            assert abs(np.log(np.median(totals) / median)) < 0.15, (m, np.median(totals))
    # a modality not named keeps its data exactly; fewer UMIs make the named one sparser
    np.testing.assert_array_equal(_dense(shallow.adatas["adt"].X), _dense(default.adatas["adt"].X))
    density = {
        n: s.adatas["rna"].X.nnz / (600 * 400) for n, s in (("10k", default), ("1k", shallow))
    }
    assert density["1k"] < 0.6 * density["10k"], density
    # one number for every modality; the default is 10,000
    same = simulate(n_cells=600, modalities=mods, n_links=2, library_size=10_000)
    np.testing.assert_array_equal(_dense(same.adatas["rna"].X), _dense(default.adatas["rna"].X))


def test_writes_h5ad(default_sims, tmp_path):
    import anndata

    for name, adata in default_sims[0].adatas.items():
        adata.write_h5ad(tmp_path / f"{name}.h5ad")
        back = anndata.read_h5ad(tmp_path / f"{name}.h5ad")
        np.testing.assert_array_equal(_dense(back.X), _dense(adata.X))
        pd.testing.assert_frame_equal(back.obs, adata.obs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"modalities": {"rna": ("counts", 10)}, "n_links": 1},
        {"modalities": {"rna": ("reads", 10)}},
        {"n_major": 9},
        {"sparsity": 1.0},
        {"library_size": 0.0},
        {"library_size": {"protein": 100.0}},
    ],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        simulate(n_cells=20, **kwargs)

"""mmint.evaluate against hand-made integrators whose outputs are known.

Every expected value is computed here with numpy / sklearn / scipy from the model's own outputs
(never copied from a run):

- ``Oracle``: latents = one-hot of the true label (+ optional noise), identical across
  modalities; ``translate`` returns the true model input (``dm.inputs[dst]`` rows of the batch's
  ``index``), optionally plus noise; optional group head; optional garbage on cells that lack a
  modality; optional check that target-cell labels are hidden.
- ``RandomModel``: independent random latents per modality and random translations.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.metrics import (
    accuracy_score,
    adjusted_rand_score,
    f1_score,
    normalized_mutual_info_score,
    r2_score,
    roc_auc_score,
)

from mmint import keys
from mmint.data import PairedData, PairedDataModule
from mmint.evaluate import (
    alignment_scores,
    collect,
    evaluate,
    group_scores,
    mean_cross_r2,
    prediction_scores,
    quick_scores,
    scib_block,
)
from mmint.metrics.clustering import kmeans_labels
from mmint.models.base import Integrator
from mmint.models.cell_outputs import Outputs

torch.set_num_threads(1)

MODS = ["rna", "atac", "ephys"]
PAIRS_SORTED = [("atac", "ephys"), ("atac", "rna"), ("ephys", "rna")]


# ---------------------------------------------------------------------- fake models
def _dense(x) -> np.ndarray:
    return np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float64)


class Oracle(Integrator):
    """Knows the truth: latents from the true labels, translations = the true model input.

    Parameters
    ----------
    dm
        The set-up data module (the oracle reads ``dm.true_labels`` and ``dm.inputs``).
    noise
        Standard deviation of Gaussian noise added to the one-hot latent (same noise in every
        modality and in the joint latent).
    pred_noise
        Standard deviation of noise added to every translation (fixed per cell, feature, dst).
    head
        Group code per cell (all cells) returned by ``predict_groups``; ``None``: no head.
    garbage_missing
        Return huge random values for latents / translations of cells lacking a modality.
    hidden
        Cell indices whose batch label must be -1 in every batch the model sees.
    """

    name = "oracle"
    trains_in_epochs = False

    def __init__(
        self,
        dm: PairedDataModule,
        noise: float = 1e-3,
        pred_noise: float = 0.0,
        head: np.ndarray | None = None,
        garbage_missing: bool = False,
        hidden: np.ndarray | None = None,
        groups_are_labels: bool = False,
        seed: int = 0,
    ) -> None:
        self.spec = dm.spec
        self.dm = dm
        rng = np.random.default_rng(seed)
        n, k = dm.data.n_cells, len(dm.label_names)
        truth = dm.true_labels
        self.z = (np.eye(k)[np.clip(truth, 0, None)] + noise * rng.standard_normal((n, k))).astype(
            np.float32
        )
        self.pred_noise = {
            m: pred_noise * rng.standard_normal(dm.inputs[m].shape) for m in dm.modalities
        }
        self.head = head
        self.garbage_missing = garbage_missing
        self.hidden = np.asarray(hidden) if hidden is not None else None
        self.groups_are_labels = groups_are_labels
        self.n_hidden_seen = 0
        self._garbage = np.random.default_rng(seed + 1)

    def _check(self, batch) -> np.ndarray:
        idx = batch[keys.INDEX].numpy()
        if self.hidden is not None:
            target = np.isin(idx, self.hidden)
            labels = batch[keys.LABEL].numpy()
            assert (labels[target] == keys.UNKNOWN_LABEL).all(), "target labels leaked"
            self.n_hidden_seen += int(target.sum())
        return idx

    def _spoil(self, x: np.ndarray, bad: np.ndarray) -> np.ndarray:
        if self.garbage_missing and bad.any():
            x = x.copy()
            x[bad] = 1e3 * self._garbage.standard_normal((int(bad.sum()), x.shape[1]))
        return x

    def latents(self, batch):
        idx = self._check(batch)
        out = {}
        for m in self.modalities:
            missing = batch[keys.mask_key(m)].numpy() == 0
            out[m] = torch.from_numpy(self._spoil(self.z[idx], missing).astype(np.float32))
        return out

    def joint_latent(self, batch):
        idx = self._check(batch)
        return torch.from_numpy(self.z[idx])

    def translate(self, batch, src, dst):
        idx = self._check(batch)
        pred = _dense(self.dm.inputs[dst][idx]) + self.pred_noise[dst][idx]
        missing = (batch[keys.mask_key(src)].numpy() == 0) | (
            batch[keys.mask_key(dst)].numpy() == 0
        )
        return torch.from_numpy(self._spoil(pred, missing).astype(np.float32))

    def predict_groups(self, batch):
        idx = self._check(batch)
        return None if self.head is None else torch.from_numpy(self.head[idx])


class RandomModel(Integrator):
    """Independent random latents per modality (8 dims), random joint, random translations."""

    name = "random"
    trains_in_epochs = False

    def __init__(self, dm: PairedDataModule, seed: int = 0) -> None:
        self.spec = dm.spec
        rng = np.random.default_rng(seed)
        n = dm.data.n_cells
        self.z = {m: rng.standard_normal((n, 8)).astype(np.float32) for m in dm.modalities}
        self.joint = rng.standard_normal((n, 8)).astype(np.float32)
        self.pred = {
            m: rng.standard_normal(dm.inputs[m].shape).astype(np.float32) for m in dm.modalities
        }

    def latents(self, batch):
        idx = batch[keys.INDEX].numpy()
        return {m: torch.from_numpy(self.z[m][idx]) for m in self.modalities}

    def joint_latent(self, batch):
        return torch.from_numpy(self.joint[batch[keys.INDEX].numpy()])

    def translate(self, batch, src, dst):
        return torch.from_numpy(self.pred[dst][batch[keys.INDEX].numpy()])


# ---------------------------------------------------------------------- hand computations
def brute_foscttm(za: np.ndarray, zb: np.ndarray) -> float:
    """FOSCTTM from the full n x n distance matrix (numpy broadcasting, float64)."""
    za, zb = np.asarray(za, np.float64), np.asarray(zb, np.float64)
    n = len(za)
    d = np.sqrt(((za[:, None, :] - zb[None, :, :]) ** 2).sum(-1))
    true = np.diag(d)
    a_to_b = (d < true[:, None]).sum(axis=1) / (n - 1)
    b_to_a = (d < true[None, :]).sum(axis=0) / (n - 1)
    return float((a_to_b.mean() + b_to_a.mean()) / 2)


def hand_prediction(x_true: np.ndarray, x_pred: np.ndarray, binary: bool) -> dict:
    """R2 (uniform, variance-weighted) over non-degenerate features, per-cell Pearson, AUROC."""
    x_true, x_pred = np.asarray(x_true, np.float64), np.asarray(x_pred, np.float64)
    keep = x_true.var(axis=0) > 1e-8
    out = {
        "r2": r2_score(x_true[:, keep], x_pred[:, keep], multioutput="uniform_average"),
        "r2_vw": r2_score(x_true[:, keep], x_pred[:, keep], multioutput="variance_weighted"),
        "excluded": int((~keep).sum()),
    }
    rs = [
        np.corrcoef(t, p)[0, 1]
        for t, p in zip(x_true, x_pred, strict=True)
        if t.std() > 0 and p.std() > 0
    ]
    out["pearson"] = float(np.mean(rs))
    if binary:
        aucs = [
            roc_auc_score(t > 0, p)
            for t, p in zip(x_true, x_pred, strict=True)
            if 0 < (t > 0).sum() < len(t)
        ]
        out["auroc"] = float(np.mean(aucs))
    return out


def hand_class_ari(dm, tr_cells, tr_groups, te_cells, te_groups) -> float:
    """Groups matched to fine labels on training cells (Hungarian), replaced by their class."""
    names = np.array(dm.label_names)
    fine_to_class = dm.data.classes()
    tr_lab = dm.true_labels[tr_cells]
    groups, labels = np.unique(tr_groups), np.unique(tr_lab)
    table = np.array(
        [[np.sum((tr_groups == g) & (tr_lab == lab)) for lab in labels] for g in groups]
    )
    rows, cols = linear_sum_assignment(-table)
    group_to_fine = {groups[r]: labels[c] for r, c in zip(rows, cols, strict=True)}
    for r, g in enumerate(groups):  # unmatched groups: their most frequent label
        group_to_fine.setdefault(g, labels[np.argmax(table[r])])
    pred_class = [fine_to_class[names[group_to_fine[g]]] for g in te_groups]
    true_class = [fine_to_class[names[lab]] for lab in dm.true_labels[te_cells]]
    return float(adjusted_rand_score(true_class, pred_class))


def model_outputs(model, dm, cells):
    batch = dm.batch(cells)
    with torch.no_grad():
        return (
            {m: z.numpy() for m, z in model.latents(batch).items()},
            model.joint_latent(batch).numpy(),
        )


# ---------------------------------------------------------------------- fixtures
@pytest.fixture
def dm_outer(tiny_sim, tiny_dm):
    """Outer join: atac lacks half the test cells (+ some train cells), ephys a third."""
    test, train = tiny_dm.cells("test"), tiny_dm.cells("train")
    no_atac = np.concatenate([test[::2], train[:20]])
    no_ephys = np.concatenate([test[1::3], train[10:40]])
    names = tiny_sim.adatas["rna"].obs_names
    adatas = {
        "rna": tiny_sim.adatas["rna"],
        "atac": tiny_sim.adatas["atac"][~names.isin(names[no_atac])].copy(),
        "ephys": tiny_sim.adatas["ephys"][~names.isin(names[no_ephys])].copy(),
    }
    data = PairedData.from_anndatas(
        adatas,
        tiny_sim.kinds,
        join="outer",
        label_key="cell_type",
        batch_key="batch",
        class_key="major_type",
    )
    dm = PairedDataModule(data, split={"kind": "random"}, seed=0, batch_size=64)
    dm.setup()
    assert (data.names == names).all()
    np.testing.assert_array_equal(dm.cells("test"), test)
    assert (dm.masks["atac"][test] == 0).sum() >= 5 and (dm.masks["ephys"][test] == 0).sum() >= 5
    return dm


@pytest.fixture
def dm_constant(tiny_sim, tiny_dm):
    """Features made constant among the test cells: rna gene 0 (= 0), atac peak 0 (= 1),
    ephys feature 0 (= 3.0); they vary among training cells."""
    test = tiny_dm.cells("test")
    adatas = {m: a.copy() for m, a in tiny_sim.adatas.items()}
    for m, value in (("rna", 0.0), ("atac", 1.0), ("ephys", 3.0)):
        x = adatas[m].X
        x = x.tolil() if sp.issparse(x) else x
        x[test, 0] = value
        adatas[m].X = sp.csr_matrix(x) if sp.issparse(x) else x
    data = PairedData.from_anndatas(
        adatas, tiny_sim.kinds, label_key="cell_type", batch_key="batch", class_key="major_type"
    )
    dm = PairedDataModule(data, split={"kind": "random"}, seed=0, batch_size=64)
    dm.setup()
    np.testing.assert_array_equal(dm.cells("test"), test)
    return dm


@pytest.fixture
def dm_holdout(tiny_data):
    dm = PairedDataModule(tiny_data, split={"kind": "holdout_batch", "holdout": ["b1"]}, seed=0)
    dm.setup()
    return dm


# ---------------------------------------------------------------------- key structure
@pytest.fixture(scope="module")
def full_metrics(tiny_data):
    """evaluate() with every part on (scIB and Leiden included) for the oracle, once."""
    dm = PairedDataModule(tiny_data, split={"kind": "random"}, seed=0, batch_size=64)
    dm.setup()
    return evaluate(Oracle(dm), dm, scib=True, leiden=True), dm


def test_contract_keys(full_metrics):
    res, dm = full_metrics
    expected = {
        "scored_on",
        "ari",
        "nmi",
        "ari_kmeans",
        "nmi_kmeans",
        "ari_leiden",
        "nmi_leiden",
        "accuracy_hungarian",
        "n_groups",
        "ari_class",
        "r2",
        "r2_variance_weighted",
        "r2_excluded_features",
        "pearson",
        "auroc",
        "foscttm",
        "latent_distance",
        "foscttm_pairs",
        "latent_distance_pairs",
        "scib",
    }
    assert expected <= set(res)
    assert res["scored_on"] == "test"
    assert "transfer_accuracy" not in res and "transfer_macro_f1" not in res
    # r2 / pearson: {src: {dst}} over every ordered pair, diagonal included; float64
    for key in ("r2", "r2_variance_weighted", "pearson"):
        assert set(res[key]) == set(MODS)
        for s in MODS:
            assert set(res[key][s]) == set(MODS), (key, s)
            assert all(type(v) is float for v in res[key][s].values())
    # auroc: binary dst only
    assert set(res["auroc"]) == set(MODS)
    assert all(set(row) == {"atac"} for row in res["auroc"].values())
    assert set(res["r2_excluded_features"]) == set(MODS)
    assert all(isinstance(v, int) for v in res["r2_excluded_features"].values())
    # alignment pairs: a < b by name
    for key in ("foscttm_pairs", "latent_distance_pairs"):
        flat = sorted((a, b) for a, row in res[key].items() for b in row)
        assert flat == PAIRS_SORTED
    assert res["n_groups"] == len(np.unique(dm.true_labels[dm.cells("test")]))
    scib = res["scib"]
    assert {"bio_conservation", "batch_correction", "total", "metrics", "modality_mixing"} <= set(
        scib
    )
    assert isinstance(scib["protocol"], str)
    assert scib["batch_correction"] is not None  # two batches
    assert {"isolated_labels", "kmeans_nmi", "kmeans_ari", "silhouette_label", "clisi_knn"} <= set(
        scib["metrics"]
    )
    assert "batch_correction" in scib["modality_mixing"]
    json.dumps(res, allow_nan=False)  # serialisable as metrics.json


def test_oracle_scores(full_metrics):
    res, dm = full_metrics
    for key in ("ari", "nmi", "ari_kmeans", "nmi_kmeans", "accuracy_hungarian", "ari_class"):
        assert res[key] == pytest.approx(1.0), key
    assert res["ari_leiden"] > 0.9
    for s in MODS:
        for d in MODS:
            assert res["r2"][s][d] == pytest.approx(1.0, abs=1e-9)
            assert res["r2_variance_weighted"][s][d] == pytest.approx(1.0, abs=1e-9)
            assert res["pearson"][s][d] == pytest.approx(1.0, abs=1e-6)
        assert res["auroc"][s]["atac"] == pytest.approx(1.0)
    assert res["foscttm"] == 0.0 and res["latent_distance"] == 0.0
    test = dm.cells("test")
    for d in MODS:  # excluded = features constant among the test cells (hand count)
        var = _dense(dm.inputs[d][test]).var(axis=0)
        assert res["r2_excluded_features"][d] == int((var <= 1e-8).sum())
    assert res["r2_excluded_features"]["atac"] > 0  # 30 cells: some peaks are never open


def test_oracle_alignment_matches_brute_force(tiny_dm):
    """A random model (FOSCTTM about 0.5) and a noisy oracle (identical latents across
    modalities: FOSCTTM and latent distance exactly 0), both against the n x n numpy
    computation."""
    model = RandomModel(tiny_dm)
    cells = tiny_dm.cells("all")
    out = collect(model, tiny_dm, cells, translations=False)
    res = alignment_scores(out, tiny_dm)
    z, _ = model_outputs(model, tiny_dm, cells)
    for a, b in PAIRS_SORTED:
        assert res["foscttm_pairs"][a][b] == pytest.approx(brute_foscttm(z[a], z[b]), abs=1e-12)
        assert res["foscttm_pairs"][a][b] == pytest.approx(0.5, abs=0.05)
        assert res["latent_distance_pairs"][a][b] == pytest.approx(1.0, abs=0.1)
    flat = [res["foscttm_pairs"][a][b] for a, b in PAIRS_SORTED]
    assert res["foscttm"] == pytest.approx(np.mean(flat))

    oracle = Oracle(tiny_dm, noise=0.3)
    out = collect(oracle, tiny_dm, cells, translations=False)
    res = alignment_scores(out, tiny_dm)
    z, _ = model_outputs(oracle, tiny_dm, cells)
    for a, b in PAIRS_SORTED:
        assert res["foscttm_pairs"][a][b] == brute_foscttm(z[a], z[b]) == 0.0
        assert res["latent_distance_pairs"][a][b] == 0.0


def test_random_model(tiny_dm):
    model = RandomModel(tiny_dm)
    res = evaluate(model, tiny_dm, cells="all", scib=False, leiden=False)
    assert abs(res["ari"]) < 0.05 and abs(res["ari_kmeans"]) < 0.05
    assert res["foscttm"] == pytest.approx(0.5, abs=0.05)
    assert res["latent_distance"] == pytest.approx(1.0, abs=0.1)
    for s in MODS:
        for d in MODS:
            assert res["r2"][s][d] < 0  # N(0, 1) guesses of standardised-ish inputs


# ---------------------------------------------------------------------- prediction
def test_prediction_scores_match_sklearn(dm_constant):
    """Noisy translations; features constant among the test cells are excluded, counted, and
    do not blow R2 up."""
    dm = dm_constant
    model = Oracle(dm, pred_noise=0.1)
    test = dm.cells("test")
    res = prediction_scores(collect(model, dm, test))
    batch = dm.batch(test)
    for d in MODS:
        x_true = _dense(dm.inputs[d][test])
        var = x_true.var(axis=0)
        assert var[0] <= 1e-8, d  # the crafted constant feature
        assert res["r2_excluded_features"][d] == int((var <= 1e-8).sum()) >= 1
        for s in MODS:
            x_pred = model.translate(batch, s, d).numpy()
            ref = hand_prediction(x_true, x_pred, binary=d == "atac")
            assert res["r2"][s][d] == pytest.approx(ref["r2"], abs=1e-6)
            assert res["r2_variance_weighted"][s][d] == pytest.approx(ref["r2_vw"], abs=1e-6)
            assert res["pearson"][s][d] == pytest.approx(ref["pearson"], abs=1e-6)
            assert res["r2"][s][d] > -1.0  # would be about -1e6 with constant features kept
            if d == "atac":
                assert res["auroc"][s][d] == pytest.approx(ref["auroc"], abs=1e-9)
            else:
                assert d not in res["auroc"][s]


def test_mean_cross_r2():
    r2 = {"a": {"a": 1.0, "b": 0.2}, "b": {"a": 0.4, "b": 0.9}}
    assert mean_cross_r2(r2) == pytest.approx(0.3)
    assert mean_cross_r2({"a": {"a": 1.0}}) is None


# ---------------------------------------------------------------------- missing modalities
def test_missing_cells_garbage_does_not_change_scores(dm_outer):
    dm = dm_outer
    clean = evaluate(Oracle(dm), dm, scib=False, leiden=False)
    spoiled = evaluate(Oracle(dm, garbage_missing=True), dm, scib=False, leiden=False)
    for key in (
        "r2",
        "r2_variance_weighted",
        "pearson",
        "auroc",
        "foscttm_pairs",
        "latent_distance_pairs",
        "ari",
        "nmi",
        "ari_kmeans_by_modality",
    ):
        assert spoiled[key] == clean[key], key
    for s in MODS:
        for d in MODS:
            assert spoiled["r2"][s][d] == pytest.approx(1.0, abs=1e-9)
    assert spoiled["foscttm"] == 0.0 and spoiled["latent_distance"] == 0.0


def test_cross_modal_metrics_use_cells_with_both(dm_outer):
    dm = dm_outer
    model = Oracle(dm, noise=1.0, pred_noise=0.5, garbage_missing=True)
    test = dm.cells("test")
    out = collect(model, dm, test)
    pred = prediction_scores(out)
    align = alignment_scores(out, dm)
    for s in MODS:
        for d in MODS:
            both = test[(dm.masks[s][test] > 0) & (dm.masks[d][test] > 0)]
            x_pred = model.translate(dm.batch(both), s, d).numpy()
            ref = hand_prediction(_dense(dm.inputs[d][both]), x_pred, binary=d == "atac")
            assert pred["r2"][s][d] == pytest.approx(ref["r2"], abs=1e-6), (s, d)
            assert pred["pearson"][s][d] == pytest.approx(ref["pearson"], abs=1e-6), (s, d)
            if d == "atac":
                assert pred["auroc"][s][d] == pytest.approx(ref["auroc"], abs=1e-9), (s, d)
    for a, b in PAIRS_SORTED:
        both = test[(dm.masks[a][test] > 0) & (dm.masks[b][test] > 0)]
        assert len(both) < len(test)
        z, _ = model_outputs(model, dm, both)
        assert align["foscttm_pairs"][a][b] == pytest.approx(brute_foscttm(z[a], z[b]), abs=1e-12)


def test_excluded_features_with_missing_cells(dm_outer):
    """With missing modalities the per-dst count is the one of the reconstruction's scored
    cells (every test cell that has dst), independent of the modality order."""
    dm = dm_outer
    test = dm.cells("test")
    res = prediction_scores(collect(Oracle(dm), dm, test))
    for d in MODS:
        have = test[dm.masks[d][test] > 0]
        var = _dense(dm.inputs[d][have]).var(axis=0)
        assert res["r2_excluded_features"][d] == int((var <= 1e-8).sum()), d


def test_scib_block_labels_confounded_with_batches(tiny_dm):
    """Each label in one batch only: the batch metrics are undefined (None), no crash."""
    dm = tiny_dm
    cells = np.flatnonzero(dm.true_labels % 2 == dm.batch_codes)
    assert len(np.unique(dm.batch_codes[cells])) == 2
    out = collect(Oracle(dm), dm, cells, translations=False)
    res = scib_block(out, dm)
    assert res["metrics"]["bras"] is None
    assert res["bio_conservation"] is not None


# ---------------------------------------------------------------------- groups
def _head(dm, seed=0) -> np.ndarray:
    """A group head: a permutation of the true labels; 25% of cells get their sibling type
    (same major group), 5% a random group."""
    rng = np.random.default_rng(seed)
    truth = dm.true_labels
    perm = np.array([2, 0, 3, 1])
    sibling = truth ^ 1  # types 0/1 and 2/3 share a major group in the tiny data
    head = perm[truth]
    r = rng.random(len(truth))
    head = np.where(r < 0.25, perm[sibling], head)
    head = np.where(r > 0.95, rng.integers(0, 4, len(truth)), head)
    return head.astype(np.int64)


def test_groups_from_head(tiny_dm):
    dm = tiny_dm
    names = dm.label_names
    fine_to_class = dm.data.classes()
    assert fine_to_class[names[0]] == fine_to_class[names[1]] != fine_to_class[names[2]]
    head = _head(dm)
    model = Oracle(dm, head=head)
    res = evaluate(model, dm, scib=False, leiden=False)
    test, train = dm.cells("test"), dm.cells("train")
    labels = dm.true_labels[test]
    assert res["groups_from"] == "model head"
    assert res["ari"] == pytest.approx(adjusted_rand_score(labels, head[test]))
    assert res["nmi"] == pytest.approx(normalized_mutual_info_score(labels, head[test]))
    assert res["ari"] < 0.95 and res["ari_kmeans"] == pytest.approx(1.0)
    assert res["n_groups"] == len(np.unique(head[test]))
    expected = hand_class_ari(dm, train, head[train], test, head[test])
    assert res["ari_class"] == pytest.approx(expected)
    assert res["ari_class"] > res["ari"]  # sibling confusions vanish at the class level


def test_groups_from_kmeans_without_head(tiny_dm):
    dm = tiny_dm
    model = Oracle(dm, noise=0.4)
    res = evaluate(model, dm, scib=False, leiden=False)
    test, train = dm.cells("test"), dm.cells("train")
    labels = dm.true_labels[test]
    _, joint = model_outputs(model, dm, test)
    km = KMeans(n_clusters=len(np.unique(labels)), n_init=10, random_state=0).fit_predict(
        joint.astype(np.float64)
    )
    assert res["groups_from"] == "kmeans"
    assert res["ari"] == res["ari_kmeans"] == pytest.approx(adjusted_rand_score(labels, km))
    assert (
        res["nmi"] == res["nmi_kmeans"] == pytest.approx(normalized_mutual_info_score(labels, km))
    )
    assert 0.0 < res["ari"] < 1.0  # noisy enough to be a real check
    # ari_class: one KMeans fitted on the training cells' joint latent assigns both sets
    _, tr_joint = model_outputs(model, dm, train)
    fitted = KMeans(n_clusters=len(np.unique(labels)), n_init=10, random_state=0)
    tr_groups = fitted.fit_predict(tr_joint)
    te_groups = fitted.predict(joint)
    assert res["ari_class"] == pytest.approx(hand_class_ari(dm, train, tr_groups, test, te_groups))


def test_group_scores_leiden(tiny_dm):
    model = Oracle(tiny_dm)
    out = collect(model, tiny_dm, tiny_dm.cells("all"), translations=False)
    res = group_scores(out, tiny_dm, leiden=True)
    assert res["ari_leiden"] == pytest.approx(1.0) and res["nmi_leiden"] == pytest.approx(1.0)
    assert 0.1 <= res["leiden_resolution"] <= 2.0


def test_ari_kmeans_by_modality_names_the_modality_that_carries_the_groups(tiny_dm):
    # one modality's code is the labels (well separated), another's is noise: the first
    # scores ARI 1, the second sklearn's ARI of the project's KMeans on that noise alone
    dm, cells = tiny_dm, tiny_dm.cells("test")
    labels = dm.true_labels[cells]
    rng = np.random.default_rng(0)
    good = np.eye(len(dm.label_names))[labels] * 10
    good = good + 0.01 * rng.standard_normal(good.shape)
    noise = rng.standard_normal(good.shape)
    a, b, *others = dm.modalities
    out = Outputs(
        cells, (good + noise) / 2, {a: good, b: noise, **dict.fromkeys(others, good)}, None
    )
    res = group_scores(out, dm, leiden=False)
    assert res["ari_kmeans_by_modality"][a] == pytest.approx(1.0)
    k = len(np.unique(labels))
    by_hand = adjusted_rand_score(labels, kmeans_labels(noise, k, seed=0))
    assert res["ari_kmeans_by_modality"][b] == pytest.approx(by_hand)
    assert res["ari_kmeans_by_modality"][b] < 0.5
    assert "ari_kmeans_by_modality" not in group_scores(out, dm, leiden=False, by_modality=False)


# ---------------------------------------------------------------------- transfer
def test_transfer_holdout_batch_knn(dm_holdout):
    dm = dm_holdout
    target = dm.cells("test")
    assert set(dm.batch_codes[target]) == {dm.batch_names.index("b1")}
    model = Oracle(dm, hidden=target)
    res = evaluate(model, dm, scib=False, leiden=False)
    assert model.n_hidden_seen >= len(target)  # the label checks did run on target cells
    assert res["transfer_accuracy"] == 1.0 and res["transfer_macro_f1"] == 1.0
    assert res["transfer_protocol"] == "15-NN on the joint latent"
    assert res["ari"] == pytest.approx(1.0)  # scored with the true labels of the target


def test_transfer_holdout_batch_model_classifier(dm_holdout):
    dm = dm_holdout
    target = dm.cells("test")
    head = dm.true_labels.copy()
    wrong = np.random.default_rng(1).random(len(head)) < 0.2
    head[wrong] = (head[wrong] + 1) % len(dm.label_names)
    model = Oracle(dm, head=head, hidden=target, groups_are_labels=True)
    res = evaluate(model, dm, scib=False, leiden=False)
    assert model.n_hidden_seen >= len(target)
    truth = dm.true_labels[target]
    assert res["transfer_protocol"] == "model classifier"
    assert res["transfer_accuracy"] == pytest.approx(accuracy_score(truth, head[target]))
    assert res["transfer_macro_f1"] == pytest.approx(
        f1_score(truth, head[target], average="macro", zero_division=0)
    )
    assert res["transfer_accuracy"] < 1.0


def test_train_loader_hides_target_labels(dm_holdout):
    """The target joins the train loader only unlabelled (what a model would see in fit)."""
    dm = dm_holdout
    dm.include_target_in_train = True
    target = dm.cells("test")
    seen = 0
    for batch in dm.train_dataloader():
        idx = batch[keys.INDEX].numpy()
        t = np.isin(idx, target)
        assert (batch[keys.LABEL].numpy()[t] == keys.UNKNOWN_LABEL).all()
        seen += int(t.sum())
    assert seen == len(target)


# ---------------------------------------------------------------------- quick scores
def test_quick_scores(tiny_dm):
    cells = tiny_dm.cells("val")
    res = quick_scores(Oracle(tiny_dm), tiny_dm, cells)
    assert set(res) == {"latent_distance", "foscttm", "ari", "ari_kmeans", "r2_cross"}
    assert res["foscttm"] == 0.0 and res["latent_distance"] == 0.0
    assert res["ari"] == pytest.approx(1.0) and res["r2_cross"] == pytest.approx(1.0)
    rnd = quick_scores(RandomModel(tiny_dm), tiny_dm, tiny_dm.cells("all"))
    out = collect(RandomModel(tiny_dm), tiny_dm, tiny_dm.cells("all"))
    assert rnd["r2_cross"] == pytest.approx(mean_cross_r2(prediction_scores(out)["r2"]))
    assert rnd["foscttm"] == pytest.approx(0.5, abs=0.05)

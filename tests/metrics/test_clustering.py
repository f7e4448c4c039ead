"""Tests of mmint.metrics.clustering against sklearn, brute force and hand computations."""

import itertools

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from mmint.metrics import (
    DEFAULT_RESOLUTIONS,
    ari,
    class_level_ari,
    hungarian_accuracy,
    kmeans_labels,
    leiden_best,
    nmi,
)


def _random_partitions(seed: int, n: int = 200, k_true: int = 4, k_pred: int = 5):
    rng = np.random.default_rng(seed)
    return rng.integers(0, k_true, n), rng.integers(0, k_pred, n)


def _blobs(seed: int = 0, n_per: int = 40, k: int = 4, dim: int = 8, spread: float = 20.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, spread, size=(k, dim))
    labels = np.repeat(np.arange(k), n_per)
    z = centres[labels] + rng.normal(0, 1, size=(labels.size, dim))
    return z.astype(np.float32), labels


def _entropy(x: np.ndarray) -> float:
    p = np.unique(x, return_counts=True)[1] / x.size
    return float(-(p * np.log(p)).sum())


def _nmi_by_hand(u: np.ndarray, v: np.ndarray) -> float:
    """NMI with the arithmetic normaliser, from the joint distribution."""
    mi = 0.0
    for a in np.unique(u):
        for b in np.unique(v):
            p_ab = np.mean((u == a) & (v == b))
            if p_ab > 0:
                mi += p_ab * np.log(p_ab / (np.mean(u == a) * np.mean(v == b)))
    return mi / ((_entropy(u) + _entropy(v)) / 2)


def _hungarian_brute_force(labels: np.ndarray, pred: np.ndarray) -> float:
    """Best injective matching between groups and labels, by enumeration."""
    groups, lab = np.unique(pred), np.unique(labels)
    table = np.array([[np.sum((pred == g) & (labels == c)) for c in lab] for g in groups])
    best = 0
    if len(groups) >= len(lab):
        for perm in itertools.permutations(range(len(groups)), len(lab)):
            best = max(best, sum(table[perm[j], j] for j in range(len(lab))))
    else:
        for perm in itertools.permutations(range(len(lab)), len(groups)):
            best = max(best, sum(table[i, perm[i]] for i in range(len(groups))))
    return best / labels.size


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ari_nmi_match_sklearn_and_hand(seed):
    labels, pred = _random_partitions(seed)
    assert ari(labels, pred) == pytest.approx(adjusted_rand_score(labels, pred), abs=1e-12)
    assert nmi(labels, pred) == pytest.approx(_nmi_by_hand(labels, pred), abs=1e-10)
    assert nmi(labels, pred) == pytest.approx(
        normalized_mutual_info_score(labels, pred, average_method="arithmetic"), abs=1e-12
    )


def test_ari_nmi_perfect_renamed_and_random():
    labels, _ = _random_partitions(0, n=500)
    renamed = np.array(["x", "y", "z", "w"])[labels]  # same partition, other names
    assert ari(labels, renamed) == pytest.approx(1.0)
    assert nmi(labels, renamed) == pytest.approx(1.0)
    labels, pred = _random_partitions(1, n=3000)
    assert abs(ari(labels, pred)) < 0.02
    assert nmi(labels, pred) < 0.02


def test_ari_nmi_one_label():
    labels = np.zeros(50, dtype=int)
    pred = np.repeat([0, 1], 25)
    assert ari(labels, pred) == pytest.approx(adjusted_rand_score(labels, pred))
    assert nmi(labels, pred) == pytest.approx(
        normalized_mutual_info_score(labels, pred, average_method="arithmetic")
    )


def test_length_mismatch_raises():
    with pytest.raises(ValueError, match="differ in length"):
        ari([0, 1], [0, 1, 1])


@pytest.mark.parametrize(("k_true", "k_pred"), [(3, 3), (3, 5), (5, 3), (4, 4)])
def test_hungarian_accuracy_matches_brute_force(k_true, k_pred):
    rng = np.random.default_rng(k_true * 10 + k_pred)
    labels = rng.integers(0, k_true, 120)
    # mostly agreeing predictions, with a random relabelling and noise
    pred = (labels + 2) % max(k_true, k_pred)
    pred = np.where(rng.random(120) < 0.3, rng.integers(0, k_pred, 120), pred % k_pred)
    assert hungarian_accuracy(labels, pred) == pytest.approx(
        _hungarian_brute_force(labels, pred), abs=1e-12
    )


def test_hungarian_accuracy_perfect_one_label_and_random():
    labels, _ = _random_partitions(3, n=400)
    assert hungarian_accuracy(labels, (labels * 7 + 1).astype(str)) == pytest.approx(1.0)
    one = np.zeros(10, dtype=int)
    pred = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 2])
    assert hungarian_accuracy(one, pred) == pytest.approx(5 / 10)  # the largest group matches
    labels, pred = _random_partitions(4, n=400, k_true=3, k_pred=3)
    assert hungarian_accuracy(labels, pred) == pytest.approx(
        _hungarian_brute_force(labels, pred), abs=1e-12
    )


def test_kmeans_labels_recovers_blobs_and_is_seeded():
    z, labels = _blobs()
    pred = kmeans_labels(z, 4, seed=0)
    assert pred.shape == labels.shape
    assert set(np.unique(pred)) == {0, 1, 2, 3}
    assert adjusted_rand_score(labels, pred) == pytest.approx(1.0)
    np.testing.assert_array_equal(pred, kmeans_labels(z, 4, seed=0))
    ref = KMeans(n_clusters=4, n_init=10, random_state=3).fit_predict(z.astype(np.float64))
    np.testing.assert_array_equal(kmeans_labels(z, 4, seed=3), ref)
    with pytest.raises(ValueError):
        kmeans_labels(z, 0)


def test_leiden_best_picks_best_nmi_resolution():
    import anndata as ad
    import scanpy as sc

    z, labels = _blobs(seed=1, n_per=30, k=3)
    resolutions = (0.1, 0.5, 1.0, 2.0)
    out = leiden_best(z, labels, resolutions=resolutions, n_neighbors=10, seed=0)
    assert set(out) == {"ari", "nmi", "resolution", "n_clusters"}
    assert out["resolution"] in resolutions
    # independent recomputation with scanpy, resolution by resolution
    adata = ad.AnnData(z)
    sc.pp.neighbors(adata, n_neighbors=10, use_rep="X", random_state=0)
    nmis = {}
    for r in resolutions:
        sc.tl.leiden(
            adata,
            resolution=r,
            flavor="igraph",
            n_iterations=2,
            directed=False,
            random_state=0,
            key_added=f"r{r}",
        )
        nmis[r] = normalized_mutual_info_score(labels, adata.obs[f"r{r}"])
    assert out["nmi"] == pytest.approx(max(nmis.values()), abs=1e-12)
    best = adata.obs[f"r{out['resolution']}"]
    assert out["nmi"] == pytest.approx(nmis[out["resolution"]], abs=1e-12)
    assert out["ari"] == pytest.approx(adjusted_rand_score(labels, best), abs=1e-12)
    assert out["n_clusters"] == best.nunique()
    assert out["nmi"] == pytest.approx(1.0)  # well separated blobs are found


def test_default_resolutions():
    assert DEFAULT_RESOLUTIONS[0] == 0.1 and DEFAULT_RESOLUTIONS[-1] == 2.0
    assert len(DEFAULT_RESOLUTIONS) == 20
    assert DEFAULT_RESOLUTIONS[2] == 0.3  # rounded, not 0.30000000000000004


FINE_TO_CLASS = {"a": "X", "b": "X", "c": "Y", "d": "Z"}


def _classes(fine) -> np.ndarray:
    return np.array([FINE_TO_CLASS[f] for f in fine])


def test_class_level_ari_perfect_and_merged_within_class():
    fine = np.array(list("aabbccdd") * 5)
    assert class_level_ari(fine, fine, fine, fine, FINE_TO_CLASS) == pytest.approx(1.0)
    # groups merge a and b (same class): fine ARI < 1, class ARI = 1
    merged = np.array([{"a": 0, "b": 0, "c": 1, "d": 2}[f] for f in fine])
    assert adjusted_rand_score(fine, merged) < 1
    assert class_level_ari(fine, merged, fine, merged, FINE_TO_CLASS) == pytest.approx(1.0)


def test_class_level_ari_unmatched_and_unseen_groups_by_hand():
    train_fine = np.array(list("aaaabbbbccccdddd"))
    # group 4 is a fifth group on "a"/"c" cells: unmatched by Hungarian, majority "c" -> class Y
    train_pred = np.array([0, 0, 0, 4, 1, 1, 1, 1, 2, 2, 4, 4, 3, 3, 3, 3])
    test_fine = np.array(list("abcdabcdcc"))
    test_pred = np.array([0, 1, 2, 3, 4, 4, 4, 9, 9, 2])  # group 9 never seen in training
    # by hand: 0->a->X, 1->b->X, 2->c->Y, 3->d->Z, 4->c (majority)->Y, 9->own class
    expected_pred = np.array(["X", "X", "Y", "Z", "Y", "Y", "Y", "new9", "new9", "Y"])
    expected = adjusted_rand_score(_classes(test_fine), expected_pred)
    got = class_level_ari(train_fine, train_pred, test_fine, test_pred, FINE_TO_CLASS)
    assert got == pytest.approx(expected, abs=1e-12)


def test_class_level_ari_matches_on_training_cells_only():
    # on training cells group 0 is "c"; on the scored cells group 0 holds "a" cells
    train_fine = np.array(list("aaacccddd"))
    train_pred = np.array([1, 1, 1, 0, 0, 0, 2, 2, 2])
    test_fine = np.array(list("aaacccddd"))
    test_pred = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    expected_pred = np.array(["Y"] * 3 + ["X"] * 3 + ["Z"] * 3)  # 0->c->Y, 1->a->X
    expected = adjusted_rand_score(_classes(test_fine), expected_pred)
    got = class_level_ari(train_fine, train_pred, test_fine, test_pred, FINE_TO_CLASS)
    assert got == pytest.approx(expected, abs=1e-12)
    assert got == pytest.approx(1.0)  # a relabelled perfect partition


def test_class_level_ari_random_and_one_class():
    rng = np.random.default_rng(5)
    fine = rng.choice(list("abcd"), 2000)
    pred = rng.integers(0, 4, 2000)
    assert abs(class_level_ari(fine, pred, fine, pred, FINE_TO_CLASS)) < 0.02
    one_class = {"a": "X", "b": "X"}
    fine = np.array(list("abab"))
    pred = np.array([0, 1, 0, 1])
    assert class_level_ari(fine, pred, fine, pred, one_class) == pytest.approx(
        adjusted_rand_score(["X"] * 4, ["X"] * 4)
    )


def test_class_level_ari_missing_label_raises():
    fine = np.array(list("ae"))
    with pytest.raises(ValueError, match="missing from fine_to_class"):
        class_level_ari(fine, [0, 1], fine, [0, 1], FINE_TO_CLASS)

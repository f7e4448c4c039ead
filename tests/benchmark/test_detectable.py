"""The detectable ARI difference: the fast ARI, the surrogate and the paired bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import adjusted_rand_score

from mmint.benchmark import detectable as det


def test_ari_codes_equals_sklearn():
    rng = np.random.default_rng(0)
    for n, k in [(50, 4), (200, 9), (7, 7)]:
        a, b = rng.integers(0, k, n), rng.integers(0, k + 2, n)
        b[: n // 2] = a[: n // 2]
        a, b = det._codes(a), det._codes(b)
        assert det.ari_codes(a, b) == pytest.approx(adjusted_rand_score(a, b), abs=1e-12)
        # weights = a bootstrap resample: the same as the ARI of the repeated cells
        idx = rng.integers(0, n, n)
        w = np.bincount(idx, minlength=n)
        ref = adjusted_rand_score(a[idx], b[idx])
        assert det.ari_codes(a, b, w) == pytest.approx(ref, abs=1e-12)
    one = np.zeros(5, dtype=int)
    assert det.ari_codes(one, one) == adjusted_rand_score(one, one) == 1.0


@pytest.mark.parametrize("target", [0.1, 0.45, 0.8])
def test_surrogate_reaches_the_recorded_ari(target):
    labels = np.repeat(np.arange(8), 25)
    g = det.surrogate_groups(labels, target, seed=3)
    assert adjusted_rand_score(labels, g) == pytest.approx(target, abs=0.02)


def _seeds(n_cells: int, levels: dict[str, float], n_seeds: int = 3) -> list[det.SeedCells]:
    out = []
    for s in range(n_seeds):
        labels = np.repeat(np.arange(5), n_cells // 5)
        groups = {
            m: det.surrogate_groups(labels, a, seed=10 * s + i)
            for i, (m, a) in enumerate(levels.items())
        }
        out.append(det.SeedCells(labels, groups))
    return out


def test_detectable_difference_shrinks_with_cells():
    levels = {"a": 0.6, "b": 0.5, "c": 0.3}
    small = det.detectable_difference(_seeds(50, levels), levels, n_boot=200)
    large = det.detectable_difference(_seeds(800, levels), levels, n_boot=200)
    assert large.mdd < small.mdd / 2  # SE ~ 1 / sqrt(cells): 16x the cells, ~1/4 the MDD
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    assert np.allclose(small.per_pair["mdd"], z * small.per_pair["se"])
    assert small.n_pairs == 3


def test_identical_models_have_zero_se_and_pairs_resolve_by_size():
    labels = np.repeat(np.arange(4), 10)
    g = det.surrogate_groups(labels, 0.5, seed=1)
    seeds = [det.SeedCells(labels, {"a": g, "b": g.copy(), "c": labels.copy()})] * 2
    d = det.detectable_difference(seeds, {"a": 0.5, "b": 0.5, "c": 1.0}, n_boot=100)
    pairs = d.per_pair.set_index(["a", "b"])
    # paired (the same cells for both): a and b never differ, a tie rather than a pair
    assert ("a", "b") not in pairs.index and d.n_pairs == 2
    assert pairs.loc[("a", "c"), "se"] > 0
    assert d.n_resolved == 2 and not d.too_small  # a-c and b-c: 0.5 apart, well detected
    d.degenerate = "controls coincide"
    assert d.too_small
    same = det.detectable_difference(seeds, {"a": 0.5, "b": 0.5}, n_boot=20)
    assert same.n_pairs == 0 and same.degenerate and same.too_small


def test_nested_surrogate_errors_bound_below_independent_ones():
    labels = np.repeat(np.arange(6), 20)
    levels = {"a": 0.7, "b": 0.5}

    def seeds(shared: bool) -> list[det.SeedCells]:
        return [
            det.SeedCells(
                labels,
                {
                    m: det.surrogate_groups(labels, a, (s, 0 if shared else i))
                    for i, (m, a) in enumerate(levels.items())
                },
            )
            for s in range(3)
        ]

    nested = det.detectable_difference(seeds(True), levels, n_boot=300)
    independent = det.detectable_difference(seeds(False), levels, n_boot=300)
    assert nested.mdd < independent.mdd  # overlapping errors cancel in the paired difference

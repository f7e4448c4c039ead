"""Tests of mmint.metrics.alignment against brute force (scipy cdist) and hand computations."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from mmint.metrics import foscttm, latent_distance


def _foscttm_brute_force(z_a: np.ndarray, z_b: np.ndarray) -> float:
    """The full n x n distance matrix; strictly closer, out of n - 1, both directions."""
    d = cdist(z_a, z_b)
    n = d.shape[0]
    a_to_b = [(d[i] < d[i, i]).sum() / (n - 1) for i in range(n)]
    b_to_a = [(d[:, j] < d[j, j]).sum() / (n - 1) for j in range(n)]
    return (np.mean(a_to_b) + np.mean(b_to_a)) / 2


def _noisy_pair(seed: int, n: int = 120, dim: int = 6, noise: float = 0.7):
    rng = np.random.default_rng(seed)
    z_a = rng.normal(size=(n, dim))
    return z_a, z_a + rng.normal(0, noise, size=(n, dim))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("chunk_size", [None, 1, 7, 500])
def test_foscttm_matches_brute_force(seed, chunk_size):
    z_a, z_b = _noisy_pair(seed)
    assert foscttm(z_a, z_b, chunk_size=chunk_size) == pytest.approx(
        _foscttm_brute_force(z_a, z_b), abs=1e-12
    )


def test_foscttm_by_hand_with_a_tie():
    z_a = np.array([[0.0], [1.0], [2.0]])
    z_b = np.array([[0.0], [2.0], [1.0]])  # cells 1 and 2 swapped in b
    # a->b: 0, 1/2, 1/2; b->a: 0, 1/2, 1/2 (b2=1 is as far from a0 as from a2: a tie, not counted)
    assert foscttm(z_a, z_b) == pytest.approx(1 / 3)


def test_foscttm_perfect_random_and_small():
    z_a, _ = _noisy_pair(3, n=300)
    assert foscttm(z_a, z_a) == 0.0
    assert foscttm(z_a.astype(np.float32), z_a.astype(np.float32) + 1e-3) == 0.0
    rng = np.random.default_rng(103)
    z_random = rng.normal(size=z_a.shape)
    assert foscttm(z_a, z_random) == pytest.approx(0.5, abs=0.04)
    assert np.isnan(foscttm(z_a[:1], z_a[:1]))
    assert foscttm(z_a[:2], z_a[:2][::-1]) == 1.0  # swapped: the other cell is always closer


def test_foscttm_symmetric_in_argument_order():
    z_a, z_b = _noisy_pair(4, n=50)
    assert foscttm(z_a, z_b) == pytest.approx(foscttm(z_b, z_a), abs=1e-12)


def test_alignment_shape_errors():
    with pytest.raises(ValueError, match="differ in shape"):
        foscttm(np.zeros((4, 2)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="2-dimensional"):
        latent_distance(np.zeros(4), np.zeros(4))


def test_latent_distance_by_hand_and_seeded():
    z_a, z_b = _noisy_pair(5, n=80)
    perm = np.random.default_rng(11).permutation(80)
    expected = np.mean(np.sqrt(((z_a - z_b) ** 2).sum(1))) / np.mean(
        np.sqrt(((z_a - z_b[perm]) ** 2).sum(1))
    )
    assert latent_distance(z_a, z_b, seed=11) == pytest.approx(expected, abs=1e-12)
    assert latent_distance(z_a, z_b, seed=11) == latent_distance(z_a, z_b, seed=11)
    assert latent_distance(z_a, z_b, seed=12) != latent_distance(z_a, z_b, seed=11)
    # scale-free
    assert latent_distance(3 * z_a, 3 * z_b) == pytest.approx(latent_distance(z_a, z_b))


def test_latent_distance_perfect_random_and_degenerate():
    z_a, _ = _noisy_pair(6, n=2000)
    assert latent_distance(z_a, z_a) == 0.0
    rng = np.random.default_rng(106)
    assert latent_distance(z_a, rng.normal(size=z_a.shape)) == pytest.approx(1.0, abs=0.05)
    assert np.isnan(latent_distance(np.ones((5, 2)), np.ones((5, 2))))
    assert np.isnan(latent_distance(z_a[:1], z_a[:1]))

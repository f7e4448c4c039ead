"""The numpy KMeans of :mod:`mmint.metrics.scib_kmeans` against scib-metrics' JAX KMeans:
the PRNG draws bit for bit, and the labels on seeded toys, overlapping clusters included."""

import numpy as np
import pytest

from mmint.metrics import scib_kmeans as K

jax = pytest.importorskip("jax")
scib_utils = pytest.importorskip("scib_metrics.utils")

TINY = float(np.finfo(np.float32).tiny)


@pytest.mark.parametrize("seed", [0, 3, 12345])
def test_prng_draws_equal_jax(seed):
    key = jax.random.PRNGKey(seed)
    ours = K.prng_key(seed)
    np.testing.assert_array_equal(np.asarray(key), ours)
    np.testing.assert_array_equal(np.asarray(jax.random.split(key, 5)), K.split(ours, 5))
    np.testing.assert_array_equal(np.asarray(jax.random.bits(key, (7,))), K.random_bits(ours, 7))
    np.testing.assert_array_equal(
        np.asarray(jax.random.uniform(key, (9,), minval=TINY)), K.uniform(ours, 9, TINY, 1.0)
    )
    for n in (5, 700, 3001):
        ref = int(jax.random.choice(key, n, (1,), replace=False)[0])
        assert K.first_of_permutation(ours, n) == ref
    p = np.random.default_rng(seed).random(500).astype(np.float32)
    p /= p.sum()
    np.testing.assert_array_equal(
        np.asarray(jax.random.choice(key, 500, (4,), replace=False, p=p)),
        K.weighted_choice(ours, p, 4),
    )


@pytest.mark.parametrize(
    ("seed", "n", "k", "spread"),
    [(0, 300, 4, 3.0), (1, 1000, 8, 1.0), (2, 2000, 13, 0.5), (3, 500, 6, 0.0)],
)
def test_labels_equal_scib_metrics(seed, n, k, spread):
    """Separated, overlapping and structureless (spread 0) data: the same partition."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, spread, (k, 10))
    z = (centres[rng.integers(0, k, n)] + rng.normal(size=(n, 10))).astype(np.float32)
    ref = np.asarray(scib_utils.KMeans(k, seed=seed).fit(z).labels_)
    np.testing.assert_array_equal(K.kmeans_labels(z, k, seed=seed), ref)


def test_seed_out_of_range():
    with pytest.raises(ValueError, match="seed"):
        K.prng_key(-1)

"""The KMeans of scib-metrics' ``kmeans_nmi`` / ``kmeans_ari``, in numpy.

``scib_metrics.utils.KMeans(n_clusters, seed=seed)`` (JAX, ``n_init=1``, k-means++ start,
Lloyd iterations) draws its random numbers from JAX's default PRNG (threefry-2x32,
``jax_threefry_partitionable``). That generator is a pure function of the key, so it is
reproduced here bit for bit (:func:`threefry2x32`, :func:`split`, :func:`random_bits`); the
draws of ``jax.random.choice`` (a permutation by repeated sorts for the first centre, the
Gumbel top-k trick for the weighted ones) follow JAX's code. The distances are float64 here
(float32 in JAX): a cell's cluster differs only if its two nearest centres are equally far
to about 1e-7, so in practice the labels, and the NMI / ARI, are the same (checked against
scib-metrics in ``tests/metrics/test_scib_kmeans.py``).

Lloyd's iterations stop once the labels no longer change: the later iterations of the JAX
loop (at least 300) then recompute the same centroids, so the result is the same.
"""

from __future__ import annotations

import numpy as np

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def _rotl(v: np.ndarray, r: int) -> np.ndarray:
    return (v << np.uint32(r)) | (v >> np.uint32(32 - r))


def threefry2x32(key: np.ndarray, x0: np.ndarray, x1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The threefry-2x32 hash (20 rounds) of the counter pairs ``(x0, x1)`` under ``key``."""
    k0, k1 = np.uint32(key[0]), np.uint32(key[1])
    ks = (k0, k1, k0 ^ k1 ^ _PARITY)
    x = [np.asarray(x0, dtype=np.uint32) + ks[0], np.asarray(x1, dtype=np.uint32) + ks[1]]
    with np.errstate(over="ignore"):
        for i in range(5):
            for r in _ROTATIONS[i % 2]:
                x[0] = x[0] + x[1]
                x[1] = _rotl(x[1], r) ^ x[0]
            x[0] = x[0] + ks[(i + 1) % 3]
            x[1] = x[1] + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x[0], x[1]


def prng_key(seed: int) -> np.ndarray:
    """``jax.random.PRNGKey(seed)`` for a seed in [0, 2**32)."""
    if not 0 <= int(seed) < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    return np.array([0, int(seed)], dtype=np.uint32)


def split(key: np.ndarray, num: int = 2) -> np.ndarray:
    """``jax.random.split(key, num)``: array of shape (num, 2)."""
    b0, b1 = threefry2x32(key, np.zeros(num, np.uint32), np.arange(num, dtype=np.uint32))
    return np.stack([b0, b1], axis=1)


def random_bits(key: np.ndarray, n: int) -> np.ndarray:
    """``jax.random.bits(key, (n,), uint32)``."""
    b0, b1 = threefry2x32(key, np.zeros(n, np.uint32), np.arange(n, dtype=np.uint32))
    return b0 ^ b1


def uniform(key: np.ndarray, n: int, minval: float, maxval: float) -> np.ndarray:
    """``jax.random.uniform(key, (n,), float32, minval, maxval)``."""
    bits = (random_bits(key, n) >> np.uint32(32 - 23)) | np.float32(1.0).view(np.uint32)
    floats = bits.view(np.float32) - np.float32(1.0)
    lo, hi = np.float32(minval), np.float32(maxval)
    return np.maximum(lo, floats * (hi - lo) + lo)


def first_of_permutation(key: np.ndarray, n: int) -> int:
    """``jax.random.choice(key, n, (1,), replace=False)[0]``: the first of a permutation
    made by sorting on fresh random 32-bit keys, ``ceil(3 log n / log(2**32 - 1))`` times."""
    x = np.arange(n)
    rounds = int(np.ceil(3 * np.log(max(1, n)) / np.log(np.iinfo(np.uint32).max)))
    for _ in range(rounds):
        key, sub = split(key)
        x = x[np.argsort(random_bits(sub, n), kind="stable")]
    return int(x[0])


def weighted_choice(key: np.ndarray, p: np.ndarray, k: int) -> np.ndarray:
    """``jax.random.choice(key, len(p), (k,), replace=False, p=p)`` (Gumbel top-k)."""
    tiny = float(np.finfo(np.float32).tiny)
    u = uniform(key, p.size, tiny, 1.0).astype(np.float64)
    with np.errstate(divide="ignore"):
        g = (-np.log(-np.log(u))).astype(np.float32) + np.log(p.astype(np.float64)).astype(
            np.float32
        )
    return np.argsort(-g, kind="stable")[:k]


def _sq_dist(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    d = (x * x).sum(axis=1)[:, None] + (c * c).sum(axis=1)[None, :] - 2 * x @ c.T
    return np.maximum(d, 0.0)


def _plus_plus(x: np.ndarray, n_clusters: int, key: np.ndarray) -> np.ndarray:
    n = x.shape[0]
    key, sub = split(key)
    centroids = [x[first_of_permutation(sub, n)]]
    min_d = _sq_dist(x, centroids[0][None])[:, 0].astype(np.float32)
    trials = 2 + int(np.log(n_clusters))
    for _ in range(n_clusters - 1):
        prob = min_d / np.sum(min_d, dtype=np.float32)
        key, sub = split(key)
        cand = weighted_choice(sub, prob, trials)
        d = np.minimum(min_d[None, :], _sq_dist(x[cand], x).astype(np.float32))
        best = int(np.argmin(d.astype(np.float64).sum(axis=1)))
        min_d = d[best]
        centroids.append(x[cand[best]])
    return np.stack(centroids)


def kmeans_labels(z: np.ndarray, n_clusters: int, seed: int = 0, max_iter: int = 300) -> np.ndarray:
    """Cluster labels of ``scib_metrics.utils.KMeans(n_clusters, seed=seed).fit(z).labels_``.

    Parameters
    ----------
    z
        Embedding of shape (n_cells, n_dims).
    n_clusters
        K.
    seed
        The KMeans seed (a JAX PRNG key seed).
    max_iter
        Most Lloyd iterations.

    Returns
    -------
    numpy.ndarray
        Integer labels of shape (n_cells,).
    """
    x32 = np.array(z, dtype=np.float32, order="C")
    x32 -= x32.mean(axis=0)  # as scib-metrics: centred in float32
    x = x32.astype(np.float64)
    (key,) = split(prng_key(seed), 1)
    centroids = _plus_plus(x, n_clusters, key)
    labels = np.argmin(_sq_dist(x, centroids), axis=1)
    for _ in range(max_iter):
        counts = np.maximum(np.bincount(labels, minlength=n_clusters), 1)
        onehot = np.zeros((x.shape[0], n_clusters))
        onehot[np.arange(x.shape[0]), labels] = 1.0
        centroids = (onehot.T @ x) / counts[:, None]
        new = np.argmin(_sq_dist(x, centroids), axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
    return labels

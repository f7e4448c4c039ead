"""Tests of mmint.metrics.prediction against sklearn / scipy on seeded toy matrices."""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.stats import pearsonr
from sklearn.metrics import r2_score, roc_auc_score

from mmint.metrics import (
    VARIANCE_EPS,
    PredictionAccumulator,
    accumulate,
    auroc,
    degenerate_features,
    iter_row_chunks,
    pearson_per_cell,
    r2,
)
from mmint.metrics.prediction import r2_of_rows


def _pair(seed: int = 0, n: int = 60, p: int = 12, noise: float = 0.5):
    rng = np.random.default_rng(seed)
    x_true = rng.normal(0, 1, (n, p)) * rng.uniform(0.5, 3, p) + rng.uniform(-2, 2, p)
    x_pred = x_true + rng.normal(0, noise, (n, p))
    return x_true, x_pred


def _sparse_counts(seed: int = 0, n: int = 80, p: int = 30, density: float = 0.2):
    rng = np.random.default_rng(seed)
    x = sp.random(n, p, density=density, format="csr", random_state=seed, dtype=np.float64)
    x.data = np.ceil(x.data * 5)
    pred = x.toarray() + rng.normal(0, 0.5, (n, p))
    return x, pred


def _with_degenerate_columns(seed: int = 0, n: int = 50, p: int = 8):
    """float32 data: column 0 constant, column 1 near-constant (variance ~1e-13)."""
    rng = np.random.default_rng(seed)
    x_true, _ = _pair(seed, n, p)
    x_true[:, 0] = 3.0
    x_true[:, 1] = 1.0 + rng.choice([0.0, 4.8e-7], n)  # float32 steps of 1.19e-7 around 1.0
    x_true = x_true.astype(np.float32)
    x_pred = (x_true + rng.normal(0, 0.3, x_true.shape)).astype(np.float32)
    return x_true, x_pred


@pytest.mark.parametrize("seed", [0, 1])
def test_r2_matches_sklearn(seed):
    x_true, x_pred = _pair(seed)
    assert r2(x_true, x_pred) == pytest.approx(
        r2_score(x_true, x_pred, multioutput="uniform_average"), abs=1e-12
    )
    assert r2(x_true, x_pred, weighting="variance") == pytest.approx(
        r2_score(x_true, x_pred, multioutput="variance_weighted"), abs=1e-12
    )


def test_r2_perfect_and_mean_prediction():
    x_true, _ = _pair(2)
    assert r2(x_true, x_true) == pytest.approx(1.0)
    mean_pred = np.broadcast_to(x_true.mean(axis=0), x_true.shape)
    assert r2(x_true, mean_pred) == pytest.approx(0.0, abs=1e-12)
    assert r2(x_true, mean_pred, weighting="variance") == pytest.approx(0.0, abs=1e-12)
    rng = np.random.default_rng(0)
    shuffled = x_true[rng.permutation(x_true.shape[0])]
    assert r2(x_true, shuffled) < 0  # a random prediction is worse than the mean


def test_r2_sparse_input_matches_dense():
    x, pred = _sparse_counts()
    dense = x.toarray()
    for fmt in ("csr", "csc", "coo"):
        xs = x.asformat(fmt)
        assert r2(xs, pred) == pytest.approx(r2_score(dense, pred), abs=1e-12)
        assert r2(xs, pred, weighting="variance") == pytest.approx(
            r2_score(dense, pred, multioutput="variance_weighted"), abs=1e-12
        )
    assert r2(x, sp.csr_matrix(pred)) == pytest.approx(r2_score(dense, pred), abs=1e-12)


def test_degenerate_features_are_excluded_not_exploding():
    x_true, x_pred = _with_degenerate_columns()
    var = x_true.astype(np.float64).var(axis=0)
    assert var[0] == 0 and 1e-14 < var[1] < 1e-12
    # the near-constant column alone would dominate a plain R2
    assert r2_score(x_true[:, 1], x_pred[:, 1]) < -1e3
    assert degenerate_features(x_true) == 2
    keep = slice(2, None)
    for weighting, multioutput in (
        ("uniform", "uniform_average"),
        ("variance", "variance_weighted"),
    ):
        got = r2(x_true, x_pred, weighting=weighting)
        assert got > -1e3
        assert got == pytest.approx(
            r2_score(
                x_true[:, keep].astype(np.float64),
                x_pred[:, keep].astype(np.float64),
                multioutput=multioutput,
            ),
            abs=1e-9,
        )
    # the same with chunks and sparse input
    assert r2(sp.csr_matrix(x_true), x_pred, chunk_size=7) == pytest.approx(
        r2(x_true, x_pred), abs=1e-12
    )
    assert degenerate_features(sp.csr_matrix(x_true), chunk_size=3) == 2


def test_degenerate_threshold_is_on_population_variance():
    n = 40
    col = np.tile([-1.0, 1.0], n // 2)
    x = np.stack([col * np.sqrt(2 * VARIANCE_EPS), col * np.sqrt(0.5 * VARIANCE_EPS)], axis=1)
    assert np.allclose(x.var(axis=0), [2 * VARIANCE_EPS, 0.5 * VARIANCE_EPS])
    assert degenerate_features(x) == 1
    assert degenerate_features(np.ones((5, 3))) == 3
    assert np.isnan(r2(np.ones((5, 3)), np.zeros((5, 3))))  # nothing left to score


def test_variance_is_among_the_scored_cells():
    # a feature constant among the scored cells is degenerate even if it varies elsewhere
    x_true, x_pred = _pair(3, n=30, p=5)
    x_true[:, 2] = 7.0
    acc = accumulate(x_true, x_pred)
    assert acc.n_degenerate() == 1
    assert acc.r2() == pytest.approx(r2_score(np.delete(x_true, 2, 1), np.delete(x_pred, 2, 1)))


@pytest.mark.parametrize("chunk_size", [1, 7, 13, 60, 1000])
def test_chunked_equals_whole(chunk_size):
    x_true, x_pred = _with_degenerate_columns(seed=4, n=60)
    whole = PredictionAccumulator(compute_auroc=True)
    whole.update(x_true, x_pred)
    chunked = accumulate(x_true, x_pred, compute_auroc=True, chunk_size=chunk_size)
    for key, value in whole.result().items():
        assert chunked.result()[key] == pytest.approx(value, rel=1e-10, abs=1e-12), key
    np.testing.assert_allclose(
        chunked.feature_variance(), x_true.astype(np.float64).var(axis=0), rtol=1e-9, atol=1e-20
    )


def test_accumulator_uneven_manual_chunks_and_result_keys():
    x, pred = _sparse_counts(seed=5)
    acc = PredictionAccumulator(compute_auroc=True)
    for start, stop in ((0, 3), (3, 40), (40, 41), (41, 80)):
        acc.update(x[start:stop], pred[start:stop])
    acc.update(x[:0], pred[:0])  # an empty chunk changes nothing
    dense = x.toarray()
    res = acc.result()
    assert set(res) == {"r2", "r2_variance_weighted", "r2_excluded_features", "pearson", "auroc"}
    assert acc.n_cells == 80
    assert res["r2"] == pytest.approx(r2_score(dense, pred), abs=1e-12)
    assert res["pearson"] == pytest.approx(pearson_per_cell(dense, pred), abs=1e-12)
    assert res["auroc"] == pytest.approx(auroc(dense, pred), abs=1e-12)


def test_iter_row_chunks_cover_rows():
    chunks = list(iter_row_chunks(10, 4))
    assert [(c.start, c.stop) for c in chunks] == [(0, 4), (4, 8), (8, 10)]
    with pytest.raises(ValueError):
        list(iter_row_chunks(10, 0))


def test_pearson_per_cell_matches_scipy_and_skips_constant_cells():
    x_true, x_pred = _pair(6, n=20, p=15, noise=1.0)
    x_true[3] = 2.0  # constant true vector: skipped
    x_pred[7] = -1.0  # constant prediction: skipped
    expected = np.mean([pearsonr(x_true[i], x_pred[i])[0] for i in range(20) if i not in (3, 7)])
    assert pearson_per_cell(x_true, x_pred) == pytest.approx(expected, abs=1e-12)
    assert pearson_per_cell(x_true, x_pred, chunk_size=3) == pytest.approx(expected, abs=1e-12)
    assert pearson_per_cell(sp.csr_matrix(x_true), x_pred) == pytest.approx(expected, abs=1e-12)


def test_pearson_perfect_random_and_all_constant():
    x_true, _ = _pair(7, n=200, p=50)
    assert pearson_per_cell(x_true, 3 * x_true + 1) == pytest.approx(1.0)
    rng = np.random.default_rng(1007)
    assert abs(pearson_per_cell(x_true, rng.normal(size=x_true.shape))) < 0.05
    assert np.isnan(pearson_per_cell(np.ones((4, 3)), rng.normal(size=(4, 3))))


def _binary_pair(seed: int = 0, n: int = 40, p: int = 25):
    rng = np.random.default_rng(seed)
    prob = rng.uniform(0, 1, (n, p))
    x_bin = (rng.uniform(0, 1, (n, p)) < prob).astype(np.float64)
    return x_bin, prob


@pytest.mark.parametrize("decimals", [3, 1, 0])
def test_auroc_matches_sklearn_with_ties_and_skips_one_class_cells(decimals):
    x_bin, prob = _binary_pair(8)
    prob = np.round(prob, decimals)  # fewer decimals, more ties
    x_bin[0] = 0.0  # no positives: skipped
    x_bin[1] = 1.0  # no negatives: skipped
    expected = np.mean([roc_auc_score(x_bin[i], prob[i]) for i in range(2, 40)])
    assert auroc(x_bin, prob) == pytest.approx(expected, abs=1e-12)
    assert auroc(sp.csr_matrix(x_bin), prob, chunk_size=6) == pytest.approx(expected, abs=1e-12)
    counts = x_bin * 3  # non-binary observations: x > 0 is positive
    assert auroc(counts, prob) == pytest.approx(expected, abs=1e-12)


def test_auroc_perfect_random_and_empty():
    x_bin, _ = _binary_pair(9, n=100, p=60)
    assert auroc(x_bin, x_bin * 0.9 + 0.05) == pytest.approx(1.0)
    assert auroc(x_bin, -x_bin) == pytest.approx(0.0)
    rng = np.random.default_rng(1009)
    assert auroc(x_bin, rng.uniform(size=x_bin.shape)) == pytest.approx(0.5, abs=0.03)
    assert np.isnan(auroc(np.zeros((3, 4)), rng.uniform(size=(3, 4))))


def test_errors():
    x_true, x_pred = _pair(10)
    with pytest.raises(ValueError, match="weighting"):
        r2(x_true, x_pred, weighting="cells")
    with pytest.raises(ValueError, match="shape"):
        r2(x_true, x_pred[:, :-1])
    acc = accumulate(x_true)  # moments only
    assert acc.n_degenerate() == 0
    with pytest.raises(RuntimeError):
        acc.r2()
    with pytest.raises(RuntimeError, match="compute_auroc"):
        accumulate(x_true, x_pred).auroc()
    acc = PredictionAccumulator()
    acc.update(x_true, x_pred)
    with pytest.raises(ValueError, match="features"):
        acc.update(x_true[:, :3], x_pred[:, :3])


@pytest.mark.parametrize("chunk_size", [1, 7, 40])
def test_sparse_wide_chunks_equal_the_in_memory_result(chunk_size):
    """A wide sparse target (never densified) scored in row chunks equals sklearn / scipy on
    the whole dense matrices within 1e-6."""
    rng = np.random.default_rng(11)
    x = sp.random(40, 3000, density=0.05, format="csr", random_state=11, dtype=np.float64)
    x.data[:] = 1.0
    x[3] = 0.0  # an empty row (no positive): skipped by AUROC, constant for Pearson
    x.eliminate_zeros()
    dense = x.toarray()
    pred = np.clip(dense * 0.6 + rng.uniform(0, 0.5, dense.shape), 0, 1)
    acc = accumulate(x, pred, compute_auroc=True, chunk_size=chunk_size)
    keep = dense.var(axis=0) > VARIANCE_EPS
    assert acc.r2() == pytest.approx(r2_score(dense[:, keep], pred[:, keep]), abs=1e-6)
    assert acc.r2("variance") == pytest.approx(
        r2_score(dense[:, keep], pred[:, keep], multioutput="variance_weighted"), abs=1e-6
    )
    rows = [i for i in range(40) if dense[i].max() > dense[i].min()]
    expected = np.mean([pearsonr(dense[i], pred[i])[0] for i in rows])
    assert acc.pearson() == pytest.approx(expected, abs=1e-6)
    assert acc.auroc() == pytest.approx(
        np.mean([roc_auc_score(dense[i], pred[i]) for i in rows]), abs=1e-6
    )


@pytest.mark.parametrize("sparse", [False, True])
def test_r2_of_rows_equals_r2_of_the_whole_prediction(sparse):
    """The prediction made chunk by chunk scores exactly as the whole matrix, and each chunk
    is asked for once, in order."""
    rng = np.random.default_rng(3)
    truth = (rng.random((230, 40)) < 0.2).astype(np.float64)
    pred = np.clip(truth * 0.7 + rng.normal(0, 0.2, truth.shape), 0, 1)
    x_true = sp.csr_matrix(truth) if sparse else truth
    asked = []

    def predict(rows: slice) -> np.ndarray:
        asked.append(rows)
        return pred[rows]

    for weighting in ("uniform", "variance"):
        asked.clear()
        got = r2_of_rows(x_true, predict, weighting, chunk_size=50)
        assert got == r2(x_true, pred, weighting, chunk_size=50)
        sk = {"uniform": "uniform_average", "variance": "variance_weighted"}[weighting]
        assert got == pytest.approx(r2_score(truth, pred, multioutput=sk), abs=1e-12)
        assert [(s.start, s.stop) for s in asked] == [
            (i, min(i + 50, 230)) for i in (0, 50, 100, 150, 200)
        ]

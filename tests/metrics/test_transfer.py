"""Tests of mmint.metrics.transfer against sklearn and hand computations."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from mmint.metrics import transfer_scores


def test_transfer_scores_by_hand():
    out = transfer_scores(np.array(list("aabb")), np.array(list("abbb")))
    assert set(out) == {"transfer_accuracy", "transfer_macro_f1"}
    assert out["transfer_accuracy"] == pytest.approx(0.75)
    # F1(a) = 2 * 1 * 0.5 / 1.5 = 2/3; F1(b) = 2 * (2/3) * 1 / (5/3) = 0.8
    assert out["transfer_macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)


def test_predicted_label_absent_from_truth_counts_as_zero_f1():
    out = transfer_scores(np.array(list("aa")), np.array(list("ac")))
    assert out["transfer_accuracy"] == pytest.approx(0.5)
    assert out["transfer_macro_f1"] == pytest.approx((2 / 3 + 0) / 2)


@pytest.mark.parametrize("seed", [0, 1])
def test_transfer_scores_match_sklearn_random(seed):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, 5, 300)
    pred = np.where(rng.random(300) < 0.6, true, rng.integers(0, 5, 300))
    out = transfer_scores(true, pred)
    assert out["transfer_accuracy"] == pytest.approx(accuracy_score(true, pred))
    assert out["transfer_macro_f1"] == pytest.approx(f1_score(true, pred, average="macro"))


def test_transfer_perfect_one_label_and_errors():
    labels = np.array(["T", "B", "NK", "B"])
    assert transfer_scores(labels, labels) == {"transfer_accuracy": 1.0, "transfer_macro_f1": 1.0}
    one = np.array(["T"] * 5)
    assert transfer_scores(one, one)["transfer_macro_f1"] == 1.0
    with pytest.raises(ValueError, match="differ in length"):
        transfer_scores(labels, labels[:2])
    with pytest.raises(ValueError, match="no cells"):
        transfer_scores([], [])

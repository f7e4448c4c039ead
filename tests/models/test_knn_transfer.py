"""kNN label transfer against a hand computation; target labels never read; run directory."""

from __future__ import annotations

import numpy as np
import pytest

from mmint.models import build_model

from .contract import TRI, fit_run


def holdout_dm(data, scramble_target: bool = False):
    from mmint.data import PairedDataModule

    dm = PairedDataModule(
        data, split={"kind": "holdout_batch", "holdout": ["b1"]}, seed=0, batch_size=64
    )
    dm.setup()
    if scramble_target:  # what a leak would pick up: the true labels of the target cells
        test = dm.cells("test")
        dm.true_labels[test] = np.random.default_rng(0).permutation(dm.true_labels[test])
    return dm


def vote_by_hand(reference, labels, z, k):
    d = ((z[:, None] - reference[None]) ** 2).sum(-1)
    nearest = labels[np.argsort(d, axis=1, kind="stable")[:, :k]]
    # majority, ties to the smallest label code
    return np.array([np.bincount(row, minlength=labels.max() + 1).argmax() for row in nearest])


@pytest.fixture(scope="module")
def fitted(tiny_data):
    dm = holdout_dm(tiny_data)
    return build_model("knn_transfer", dm.spec, n_components=5).fit_data(dm), dm


def test_groups_match_a_hand_vote(fitted):
    model, dm = fitted
    test = dm.cells("test")
    batch = dm.batch(test)
    ref, labels = model.reference
    expected = vote_by_hand(ref, labels, model.joint_latent(batch).numpy(), model.k)
    np.testing.assert_array_equal(model.predict_groups(batch).numpy(), expected)


def test_k_is_the_most_accurate_on_validation_cells(fitted):
    model, dm = fitted
    val = dm.cells("val")
    z = model.joint_latent(dm.batch(val)).numpy()
    ref, labels = model.reference
    acc = {
        k: (vote_by_hand(ref, labels, z, k) == dm.batch_labels[val]).mean() for k in (5, 10, 15, 30)
    }
    assert model.k == max(acc, key=lambda k: (acc[k], -k))


def test_target_labels_are_never_read(fitted, tiny_data):
    model, dm = fitted
    other = build_model("knn_transfer", dm.spec, n_components=5).fit_data(
        holdout_dm(tiny_data, scramble_target=True)
    )
    batch = dm.batch(dm.cells("test"))
    np.testing.assert_array_equal(other.predict_groups(batch), model.predict_groups(batch))
    train_batches = set(dm.batch_codes[model_cells := dm.cells("train")])
    assert dm.batch_names.index("b1") not in train_batches and len(model_cells)


def test_run_directory_and_transfer_scores(tmp_path):
    import mudata as md
    from sklearn.metrics import accuracy_score, f1_score

    metrics = fit_run(
        "knn_transfer", TRI, tmp_path, "split.kind=holdout_batch", "split.holdout=[b1]"
    )
    mdata = md.read_h5mu(tmp_path / "outputs.h5mu")
    obs = mdata.mod["rna"].obs
    test = (obs["split"] == "test").to_numpy()
    truth = obs["cell_type"].astype(str).to_numpy()[test]
    # group codes are label codes: the data's label categories in order
    labels = np.asarray(obs["cell_type"].cat.categories.astype(str))
    pred = labels[obs["knn_transfer_group"].astype(int).to_numpy()[test]]
    assert metrics["transfer_accuracy"] == pytest.approx(accuracy_score(truth, pred))
    assert metrics["transfer_macro_f1"] == pytest.approx(
        f1_score(truth, pred, average="macro", zero_division=0)
    )

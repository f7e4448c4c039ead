"""The whole-set hook: evaluate reads embed_cells, streams predictions, nulls what does not apply."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import r2_score

from mmint.evaluate import evaluate
from mmint.models.wholeset import Embedding, WholeSetIntegrator


class Noisy(WholeSetIntegrator):
    """Predicts every target as its truth plus seeded noise; the joint latent is the ephys input."""

    name = "noisy"
    not_applicable = {"foscttm": "no aligned spaces", "latent_distance": "no aligned spaces"}

    def __init__(self, spec):
        self.spec = spec

    def fit_data(self, dm):
        return self

    def embed(self, dm, cells):
        z = np.asarray(dm.inputs["ephys"][cells])
        return Embedding(z, {"ephys": z}, None, {"noisy_cells": int(len(cells))})

    def predict_cells(self, dm, src, dst, cells):
        x = dm.inputs[dst][cells]
        x = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
        return x + np.random.default_rng(len(cells)).normal(scale=0.5, size=x.shape)


def test_evaluate_uses_the_whole_set_hook(tiny_dm):
    tiny_dm.eval_batch_size = 7  # predictions arrive in many chunks
    res = evaluate(Noisy(tiny_dm.spec), tiny_dm, "test", scib=False, leiden=False)
    test = tiny_dm.cells("test")
    truth = tiny_dm.inputs["ephys"][test]
    pred = np.concatenate(
        [
            Noisy(tiny_dm.spec).predict_cells(tiny_dm, "rna", "ephys", test[i : i + 7])
            for i in range(0, len(test), 7)
        ]
    )
    assert res["r2"]["rna"]["ephys"] == pytest.approx(r2_score(truth, pred), abs=1e-9)
    assert res["noisy_cells"] == len(test)
    assert res["foscttm"] is None and res["latent_distance"] is None
    assert res["not_applicable"]["foscttm"] == "no aligned spaces"
    assert res["groups_from"] == "kmeans"

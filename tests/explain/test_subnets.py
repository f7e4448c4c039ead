"""The explain sub-networks reproduce each model's own translate / group outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmint.errors import InputError
from mmint.explain.relevance import make_groups
from mmint.explain.subnets import group_network, translator
from mmint.models import build_model
from mmint.models.unitednet import GroupNet

torch.set_num_threads(1)


def _batch0(dm, n: int = 24):
    cells = np.flatnonzero(dm.batch_codes == 0)[:n]
    return dm.batch(cells)


@pytest.mark.parametrize("name", ["unitednet", "cvqvae", "multivi", "pca"])
def test_translator_matches_translate(tiny_dm, name):
    torch.manual_seed(0)
    model = build_model(name, tiny_dm.spec)
    if name == "pca":
        model.fit_data(tiny_dm)
    else:
        model.eval()
    batch = _batch0(tiny_dm)
    for src, dst in (("rna", "atac"), ("ephys", "rna"), ("atac", "ephys")):
        if name == "pca" and dst == "atac":
            continue  # the explained ridge map is not clipped to [0, 1]
        with torch.no_grad():
            got = translator(model, src, dst)(batch[src])
            want = model.translate(batch, src, dst)
        torch.testing.assert_close(got, want.float(), rtol=1e-4, atol=1e-5)


def test_group_network_matches_groupnet_and_predict_groups(tiny_dm):
    torch.manual_seed(0)
    model = build_model("unitednet", tiny_dm.spec, n_head=2).eval()
    model.module.best_head.fill_(1)
    batch = tiny_dm.batch(np.arange(30))
    x = torch.cat([batch[m] for m in model.modalities], dim=1)
    with torch.no_grad():
        probs = group_network(model)(x)
        torch.testing.assert_close(probs, GroupNet(model.module)(x))
        assert torch.equal(probs.argmax(1), model.predict_groups(batch))
    groups = make_groups(model, tiny_dm, "model")
    assert groups.source == "model" and len(groups.codes) == tiny_dm.data.n_cells
    assert group_network(build_model("unitednet", tiny_dm.spec, task="pgc_only")) is None
    assert group_network(build_model("cvqvae", tiny_dm.spec)) is None


def test_groupings_from_data(tiny_dm):
    model = build_model("cvqvae", tiny_dm.spec).eval()
    auto = make_groups(model, tiny_dm, "auto")  # no group head: labels
    assert auto.source == "label" and auto.names == ["T0", "T1", "T2", "T3"]
    cls = make_groups(model, tiny_dm, "class")
    assert cls.names == ["M0", "M1"]
    assert make_groups(model, tiny_dm, "batch").names == ["b0", "b1"]
    assert make_groups(model, tiny_dm, "all").codes.tolist() == [0] * tiny_dm.data.n_cells
    with pytest.raises(InputError):
        make_groups(model, tiny_dm, "model")
    with pytest.raises(InputError):
        make_groups(model, tiny_dm, "nope")


def test_batchnorm_unitednet_is_explained_by_deep_explainer(tiny_dm):
    from mmint.explain.relevance import dense_rows, shap_values
    from mmint.explain.subnets import Columns

    torch.manual_seed(0)
    model = build_model(
        "unitednet", tiny_dm.spec, latent_norm="batch", projector_norm=False, batch_norm=True
    ).eval()
    cells, bg = np.arange(4), np.arange(50, 66)
    res = shap_values(
        Columns(translator(model, "rna", "atac"), [0, 1]),
        dense_rows(tiny_dm, "rna", cells),
        dense_rows(tiny_dm, "rna", bg),
    )
    assert res.explainer == "deep" and res.additivity_error < 1e-4

    def both(idx):
        return np.concatenate([dense_rows(tiny_dm, m, idx) for m in model.modalities], axis=1)

    res = shap_values(Columns(group_network(model), [1]), both(cells), both(bg))
    assert res.explainer == "deep" and res.additivity_error < 1e-4


def test_classification_head_groups_are_named_by_label(tiny_dm):
    model = build_model("unitednet", tiny_dm.spec, task="supervised").eval()
    groups = make_groups(model, tiny_dm, "model")
    assert groups.names == ["T0", "T1", "T2", "T3"] and groups.column["T2"] == 2

"""Same seed, same thread count, same machine: the same metrics.json (timing and memory
aside), for every model and the floor."""

from __future__ import annotations

import json

import pytest

from mmint.cli import compose
from mmint.fit import run_fit

from .helpers import TINY, without_timing


@pytest.mark.parametrize("model", ["unitednet", "multivi", "cvqvae", "pca"])
def test_same_seed_same_metrics(model, tmp_path):
    cfg = compose("fit", [f"model={model}", *TINY, "model.max_epochs=3", "eval.leiden=true"])
    first = run_fit(cfg, tmp_path / "a")
    second = run_fit(cfg, tmp_path / "b")
    assert first["status"] == "ok" and first["ari"] is not None
    assert without_timing(first) == without_timing(second)
    written = [json.loads((tmp_path / d / "metrics.json").read_text()) for d in "ab"]
    assert without_timing(written[0]) == without_timing(written[1])
    other = run_fit(
        compose("fit", [f"model={model}", *TINY, "model.max_epochs=3", "seed=1"]), tmp_path / "c"
    )
    assert other["ari_kmeans"] != first["ari_kmeans"]  # the comparison can tell runs apart

"""The run-directory contract for the comparators: one tiny ``run_fit`` and its checks."""

from __future__ import annotations

import json
from pathlib import Path

from mmint.cli import compose
from mmint.fit import run_fit

#: 300 simulated cells; scIB and Leiden off so a comparator's fit stays seconds
TINY = [
    "data.simulate.n_cells=300",
    "data.simulate.n_types=4",
    "data.simulate.n_major=2",
    "logger=none",
    "eval.scib=false",
    "eval.leiden=false",
    "trainer.num_threads=1",
]
#: rna / atac / ephys (the default kinds)
TRI = [*TINY, "+data.simulate.n_features={rna: 100, atac: 200, ephys: 20}"]
#: CITE-like: RNA and ADT counts (clr)
CITE = [
    *TINY,
    "~data.kinds",
    "+data.kinds={rna: counts, adt: counts}",
    "+data.simulate.n_features={rna: 100, adt: 20}",
    "data.transforms={adt: clr}",
]
#: multiome-like: RNA counts and ATAC peaks
MULTIOME = [
    *TINY,
    "~data.kinds",
    "+data.kinds={rna: counts, atac: binary}",
    "+data.simulate.n_features={rna: 100, atac: 200}",
]
KEYS = {
    "model",
    "data",
    "seed",
    "config_hash",
    "scored_on",
    "split",
    "versions",
    "ari",
    "nmi",
    "ari_kmeans",
    "r2",
    "pearson",
    "foscttm",
    "latent_distance",
    "fit_seconds",
    "peak_rss_mb",
    "epochs",
    "seconds_per_epoch",
    "not_applicable",
    "model_info",
}


def fit_run(model: str, data: list[str], run_dir: Path, *extra: str) -> dict:
    """``run_fit`` of ``model`` on tiny data into ``run_dir``; checks the run directory and
    the metrics.json keys of the contracts, then returns metrics.json."""
    metrics = run_fit(compose("fit", [f"model={model}", *data, *extra]), run_dir)
    for name in ("config.yaml", "split.json", "metrics.json", "outputs.h5mu"):
        assert (run_dir / name).exists(), name
    for name in ("best", "last"):
        assert (run_dir / "checkpoints" / f"{name}.ckpt").exists(), name
    assert json.loads((run_dir / "metrics.json").read_text()) == json.loads(
        json.dumps(metrics, default=str)
    )
    assert not KEYS - set(metrics), KEYS - set(metrics)
    assert metrics["model"] == model and metrics["scored_on"] == "test"
    # every metric that does not apply is null and has its reason
    for key, reason in metrics["not_applicable"].items():
        assert metrics.get(key) is None and reason, key
    return metrics

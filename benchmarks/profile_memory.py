"""Peak RSS probes behind ``benchmarks/results/profile.md`` ("Why the model held 2.9 GB").

- ``fit [sparse|dense]``: peak RSS after the SNARE-seq MultiVI-style parity fit's setup and
  after 10 training batches (no validation), with sparse or dense batches (default: the
  model's declaration);
- ``accumulator``: peak RSS before and after one ``PredictionAccumulator.update`` of a
  1,024-cell x 25,734-feature evaluation batch (random 0/1 targets and probabilities).

Run the ``before`` figures with an older checkout first on ``PYTHONPATH``.

Usage::

    MMINT_DATA_DIR=/work/shared/data python benchmarks/profile_memory.py fit sparse
    python benchmarks/profile_memory.py accumulator
"""

from __future__ import annotations

import sys
import time

from common import peak_rss_mb


def fit_probe(mode: str | None) -> None:
    """Setup and 10 training batches of the parity fit; peak RSS after each."""
    import lightning as L
    import profile_epochs
    import torch

    import mmint.fit as fit_mod

    torch.set_num_threads(1)
    _, _, _, dm, model = fit_mod._setup(profile_epochs.config("multivi", 1))
    print(f"setup: peak RSS {peak_rss_mb():.0f} MB", flush=True)
    if mode and hasattr(dm, "sparse_batches"):
        dm.sparse_batches = mode == "sparse"
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=10,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    start = time.process_time()
    trainer.fit(model, datamodule=dm)
    cpu = time.process_time() - start
    print(f"10 training batches: peak RSS {peak_rss_mb():.0f} MB, {cpu:.1f} CPU s", flush=True)


def accumulator_probe() -> None:
    """One accumulator update of a wide evaluation batch; peak RSS before and after."""
    import numpy as np

    from mmint.metrics.prediction import PredictionAccumulator

    rng = np.random.default_rng(0)
    x = (rng.random((1024, 25734)) < 0.02).astype(np.float32)
    p = rng.random((1024, 25734)).astype(np.float32)
    before = peak_rss_mb()
    PredictionAccumulator(compute_auroc=True).update(x, p)
    print(f"accumulator update: peak RSS {before:.0f} -> {peak_rss_mb():.0f} MB", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["accumulator"]:
        accumulator_probe()
    else:
        fit_probe(sys.argv[2] if len(sys.argv) > 2 else None)

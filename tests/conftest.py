"""Shared fixtures: tiny simulated data so every test runs in seconds."""

from __future__ import annotations

import os

import pytest
import torch

from mmint.data import PairedData, PairedDataModule
from mmint.data.simulate import simulate

torch.set_num_threads(1)
os.environ.setdefault("WANDB_MODE", "disabled")

TINY = {"rna": ("counts", 100), "atac": ("binary", 200), "ephys": ("continuous", 20)}


@pytest.fixture(scope="session")
def tiny_sim():
    """300 cells, 4 types in 2 major groups, 2 batches, rna/atac/ephys."""
    return simulate(
        n_cells=300, n_types=4, n_major=2, n_batches=2, modalities=TINY, n_links=4, seed=0
    )


@pytest.fixture(scope="session")
def tiny_data(tiny_sim) -> PairedData:
    """The tiny simulated data as PairedData (labels, batches, classes)."""
    return PairedData.from_anndatas(
        tiny_sim.adatas,
        tiny_sim.kinds,
        label_key="cell_type",
        batch_key="batch",
        class_key="major_type",
    )


@pytest.fixture
def tiny_dm(tiny_data) -> PairedDataModule:
    """A set-up data module on the tiny data, batch size 64."""
    dm = PairedDataModule(tiny_data, split={"kind": "random"}, seed=0, batch_size=64)
    dm.setup()
    return dm

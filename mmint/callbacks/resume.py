"""Random-number state in checkpoints, so that a resumed fit continues the same random stream.

Lightning restores weights, optimizers, epoch counters and callback states from ``last.ckpt``,
but not the random generators: without them dropout masks, noise and the data loaders' seeds
after a resume would differ from those of an uninterrupted fit.
"""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch


def _module_generators(pl_module: L.LightningModule) -> dict[str, torch.Generator]:
    """``torch.Generator`` attributes of the module (e.g. a model's own sampling generator)."""
    return {k: v for k, v in vars(pl_module).items() if isinstance(v, torch.Generator)}


def capture_rng(pl_module: L.LightningModule | None = None) -> dict[str, Any]:
    """The python, numpy and torch global random states plus the module's generators, in types
    that load with ``torch.load(weights_only=True)``."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "generators": {},
    }
    if pl_module is not None:
        state["generators"] = {k: g.get_state() for k, g in _module_generators(pl_module).items()}
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Set the global random states captured by :func:`capture_rng`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])


def restore_generators(state: dict[str, Any], pl_module: L.LightningModule) -> None:
    """Set the module's own generators captured by :func:`capture_rng`."""
    gens = _module_generators(pl_module)
    for name, gen_state in state.get("generators", {}).items():
        if name in gens:
            gens[name].set_state(gen_state)


class RandomState(L.Callback):
    """Stores the random state in every checkpoint and restores it when a fit resumes.

    The global generators are put back as soon as Lightning hands over the checkpoint, before
    the first resumed epoch creates its data iterator (which draws a seed from torch's global
    generator, as it did in the uninterrupted fit); the module's own generators at
    ``on_train_start``, after its ``on_fit_start`` (which may seed them).
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None
        self._module: L.LightningModule | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._module = pl_module

    def state_dict(self) -> dict[str, Any]:
        return {"rng": capture_rng(self._module)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = state_dict.get("rng")
        if state is not None:
            restore_rng(state)
            self._pending = state

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._pending is not None:
            restore_generators(self._pending, pl_module)
            self._pending = None

"""Reading a run directory written by ``mmint fit``: its config, its model and what the
checkpoint keeps of the data module (the fitted transforms and the split).

Used by ``mmint explain`` (:mod:`mmint.explain.runs`) and ``mmint predict``
(:mod:`mmint.predict`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mmint.config import plain
from mmint.errors import InputError
from mmint.models.base import Integrator


@dataclass
class SavedRun:
    """A run directory's config, model (in eval mode, on the CPU) and data-module state."""

    path: Path
    config: dict[str, Any]
    model: Integrator
    #: ``PairedDataModule.state_dict()`` as checkpointed (``None`` in checkpoints without it)
    datamodule_state: dict[str, Any] | None


def load_saved_run(run_dir: str | Path, checkpoint: str = "best", command: str = "") -> SavedRun:
    """Load ``<run_dir>/config.yaml`` and ``<run_dir>/checkpoints/<checkpoint>.ckpt``.

    Parameters
    ----------
    run_dir
        A folder written by ``mmint fit``.
    checkpoint
        ``best`` (the model ``mmint fit`` selected and scored) or ``last``.
    command
        The command loading it, for the error lines (e.g. ``explain``).

    Raises
    ------
    mmint.errors.InputError
        When the folder is not a run directory or lacks the checkpoint.
    """
    from omegaconf import OmegaConf

    from mmint.models import model_class

    run = Path(run_dir)
    where = str(run)
    if not (run / "config.yaml").exists():
        raise InputError(
            "not a run directory (no config.yaml)",
            where,
            "pass run=<a folder written by mmint fit>",
        )
    ckpt = run / "checkpoints" / f"{checkpoint}.ckpt"
    if not ckpt.exists():
        option = f"{command}.checkpoint" if command else "checkpoint"
        raise InputError(
            f"the run has no checkpoints/{checkpoint}.ckpt",
            where,
            f"use a finished run ({option}=best or last)",
        )
    cfg = plain(OmegaConf.load(run / "config.yaml"))
    cls = model_class(cfg["model"]["name"])
    if hasattr(cls, "load_from_checkpoint"):
        model = cls.load_from_checkpoint(str(ckpt), map_location="cpu")
    else:
        model = cls.load(ckpt)
    if hasattr(model, "eval"):
        model.eval()
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    dm_state = state.get("PairedDataModule") or state.get("datamodule")
    return SavedRun(run, cfg, model, dm_state)


def start_run(run_dir: str | Path) -> None:
    """Before a fit writes into ``run_dir`` (held by it): remove the temporary files of a
    killed earlier attempt and the earlier ``metrics.json``, so that a rerun that fails
    leaves no older result beside its own files.

    Raises
    ------
    mmint.io.WriteFailed
        When the folder cannot be changed (read-only, vanished).
    """
    from mmint.io import WriteFailed, remove_temporaries

    run_dir = Path(run_dir)
    remove_temporaries(run_dir)
    metrics = run_dir / "metrics.json"
    try:
        metrics.unlink(missing_ok=True)
    except OSError as err:
        raise WriteFailed.of(metrics, err) from err

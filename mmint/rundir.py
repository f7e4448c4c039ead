"""A run directory written by ``mmint fit``: whose it is (config hash, state, clean-up), the
identity and failure keys of its ``metrics.json``, and reading it back (its config, its model
and what the checkpoint keeps of the data module: the fitted transforms and the split).

Read back by ``mmint explain`` (:mod:`mmint.explain.runs`) and ``mmint predict``
(:mod:`mmint.predict`); the state by :mod:`mmint.fit` and the benchmark runner.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mmint.callbacks.divergence import TrainingDiverged
from mmint.config import plain
from mmint.errors import InputError
from mmint.models.base import Integrator
from mmint.runlock import LOCK_NAME

#: config keys that do not change results (left out of the config hash)
_NOT_HASHED = (
    "logger",
    "hydra",
    "command",
    "trainer.enable_progress_bar",
    "trainer.ddp_timeout_s",
    "trainer.last_checkpoint",
    "suite",
    "run",
    "explain",
    "verbose",
    "split.min_test_cells",
    "split.min_val_cells",
)

#: what a run writes; a folder holding any of them without a config.yaml is another run's
RUN_PRODUCTS = (
    "config.yaml",
    "split.json",
    "metrics.json",
    "checkpoints",
    "outputs.h5mu",
    "predictions",
    "curves.csv",
)


def config_hash(cfg: Mapping[str, Any]) -> str:
    """Short hash of everything in the config that can change a run's results."""
    c = plain(cfg)
    for key in _NOT_HASHED:
        node, *rest = key.split(".")
        if rest and isinstance(c.get(node), dict):
            c[node].pop(rest[0], None)
        elif not rest:
            c.pop(node, None)
    if isinstance(c.get("data"), dict) and c["data"].get("reduce", 0) is None:
        c["data"].pop("reduce")  # data.reduce came later: its default keeps older runs' hashes
    return hashlib.sha256(json.dumps(c, sort_keys=True).encode()).hexdigest()[:16]


def _config_of(run_dir: Path) -> dict[str, Any] | None:
    from omegaconf import OmegaConf

    try:
        return OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"), resolve=False)  # type: ignore[return-value]
    except Exception:  # noqa: BLE001 - unreadable: not this run's
        return None


def run_dir_state(run_dir: str | Path, cfg: Mapping[str, Any]) -> str:
    """``empty`` (no run written there), ``same`` (a run of this config, finished or not) or
    ``other`` (another config's run, or files of unknown origin)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").exists():
        products = any((run_dir / p).exists() for p in RUN_PRODUCTS)
        return "other" if products else "empty"
    old = _config_of(run_dir)
    return "same" if old is not None and config_hash(old) == config_hash(cfg) else "other"


def check_run_dir(run_dir: Path, cfg: Mapping[str, Any]) -> Path | None:
    """Refuse a run directory that holds another config's run; return its ``last.ckpt`` to
    resume from when it holds an unfinished (or finished) run of this config."""
    state = run_dir_state(run_dir, cfg)
    if state == "other":
        raise InputError(
            "the run directory holds another run (a different config, or files without a "
            "config.yaml)",
            str(run_dir),
            "give a new hydra.run.dir, or delete the folder to start over",
        )
    last = run_dir / "checkpoints" / "last.ckpt"
    return last if state == "same" and last.exists() else None


def clean_run_dir(run_dir: str | Path) -> None:
    """Remove everything a run wrote in ``run_dir`` (the folder and its lock stay)."""
    import shutil

    for path in Path(run_dir).iterdir():
        if path.name == LOCK_NAME:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def versions() -> dict[str, str | None]:
    """Versions of the packages that decide results."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in ("torch", "lightning", "mmint", "scib_metrics"):
        try:
            out[pkg] = version(pkg.replace("_", "-"))
        except PackageNotFoundError:
            out[pkg] = None
    from mmint.reuse import git_commit

    out["mmint_commit"] = git_commit()
    return out


def identity(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The identity keys of ``metrics.json``: model, data, seed, variant, config hash, versions."""
    return {
        "model": cfg.get("model", {}).get("name"),
        "data": cfg.get("data", {}).get("name"),
        "seed": int(cfg.get("seed", 0)),
        "variant": cfg.get("variant", "default"),
        "config_hash": config_hash(cfg),
        "versions": versions(),
    }


def failed_metrics(cfg: dict, err: BaseException, start: float | None = None) -> dict[str, Any]:
    """``metrics.json`` of a failed run: identity, ``status: failed``, the one-line ``error``."""
    out: dict[str, Any] = {**identity(cfg), "status": "failed", "error": error_line(err)}
    if start is not None:
        out["fit_seconds"] = time.perf_counter() - start
    return out


def error_line(err: BaseException) -> str:
    """One line for an error: the message of mmint's own errors, ``Type: message`` else."""
    text = " ".join(str(err).split())
    if isinstance(err, InputError | TrainingDiverged) or not text:
        return text or type(err).__name__
    return f"{type(err).__name__}: {text}"


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

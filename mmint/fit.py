"""``mmint fit``: one model on one dataset with one seed, written as a run directory.

Works from a plain dict (or an OmegaConf config), so the library runs without Hydra; the
command line composes that config with Hydra and calls :func:`run_fit`.
"""

from __future__ import annotations

import contextlib
import inspect
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from mmint.callbacks import IntegrationMetrics, LatentDistanceCurve, Timing
from mmint.callbacks.checkpoint_io import AtomicCheckpointIO
from mmint.callbacks.checkpoints import LastCheckpoint, best_checkpoint
from mmint.callbacks.divergence import DivergenceCheck
from mmint.callbacks.progress import FitProgress, progress_mode
from mmint.callbacks.resume import RandomState
from mmint.callbacks.timing import peak_rss_mb
from mmint.config import plain
from mmint.data import PairedDataModule, load_dataset
from mmint.data.splits import check_split_sizes
from mmint.distributed import (
    DDPPlan,
    ParameterSync,
    external_rank,
    external_strategy,
    mark_ready,
    plan_for,
    run_ddp,
)
from mmint.evaluate import evaluate
from mmint.io import atomic_write, write_json
from mmint.loggers import finish_wandb, make_loggers
from mmint.metrics.alignment import FOSCTTM_MAX_CELLS, seeded_subsample
from mmint.metrics.subsample import SCIB_MAX_CELLS
from mmint.models import build_model, model_class
from mmint.models.base import Integrator
from mmint.outputs import PREDICTION_MAX_CELLS, write_outputs
from mmint.reuse import record as record_reuse
from mmint.rundir import (  # noqa: F401 - clean_run_dir, run_dir_state, versions: re-exported
    check_run_dir,
    clean_run_dir,
    config_hash,
    failed_metrics,
    run_dir_state,
    start_run,
    versions,
)
from mmint.runlock import folder_lock


def _split_model_config(model_cfg: Mapping[str, Any]) -> tuple[str, int | None, int, dict]:
    cfg = dict(model_cfg)
    name = cfg.pop("name")
    max_epochs = cfg.pop("max_epochs", None)
    batch_size = int(cfg.pop("batch_size", 128))
    return name, max_epochs, batch_size, cfg


def build_datamodule(
    cfg: Mapping[str, Any], batch_size: int, state: Mapping[str, Any] | None = None
) -> PairedDataModule:
    """Load the dataset of ``cfg['data']`` and set up its data module (split by ``cfg['seed']``);
    with ``state`` (a checkpoint's data-module state) its transforms are the checkpoint's."""
    data_cfg = cfg["data"]
    dm = PairedDataModule(
        load_dataset(data_cfg),
        split=cfg.get("split"),
        seed=int(cfg.get("seed", 0)),
        batch_size=batch_size,
        transforms=data_cfg.get("transforms"),
        n_top_features=data_cfg.get("n_top_features"),
        reduce=data_cfg.get("reduce"),
    )
    if state:
        dm.load_state_dict(dict(state))
    dm.setup()
    split_cfg = cfg.get("split") or {}
    check_split_sizes(
        dm.split,
        dm.true_labels,
        min_test_cells=int(split_cfg.get("min_test_cells", 10)),
        min_val_cells=int(split_cfg.get("min_val_cells", 5)),
        has_labels=dm.data.label_key is not None,
    )
    return dm


def _trainer_kwargs(cfg: dict) -> dict[str, Any]:
    trainer_cfg = dict(cfg.get("trainer", {}))
    return {
        "accelerator": trainer_cfg.get("accelerator", "auto"),
        "devices": trainer_cfg.get("devices", 1),
        "strategy": trainer_cfg.get("strategy", "auto"),
        "precision": trainer_cfg.get("precision", "32-true"),
        "deterministic": trainer_cfg.get("deterministic", False),
    }


def train_model(
    model: Integrator,
    dm: PairedDataModule,
    cfg: dict,
    run_dir: Path,
    max_epochs: int,
    loggers: list,
    ckpt_path: str | Path | None = None,
    ddp: DDPPlan | None = None,
) -> tuple[Integrator, dict[str, Any]]:
    """Fit a trainable model with checkpoint selection on ``val/loss`` and curves.

    Parameters
    ----------
    ckpt_path
        A ``last.ckpt`` to resume from (weights, optimizers, epoch, random state, curves,
        timing and the best-so-far selection).
    ddp
        The DDP plan when this process is one rank of a DDP fit started by mmint.

    Returns the best checkpoint's model and the cost keys (``epochs``, ``seconds_per_epoch``,
    ``cells_per_second``, ``world_size``) plus ``best_epoch`` and the curve correlations.
    """
    ev = cfg.get("eval", {})
    trainer_cfg = dict(cfg.get("trainer", {}))
    checkpoint = best_checkpoint(run_dir / "checkpoints")
    last = LastCheckpoint.from_config(run_dir / "checkpoints", trainer_cfg.get("last_checkpoint"))
    metrics = IntegrationMetrics(
        ev.get("every_n_epochs", 5), ev.get("max_curve_cells", 2000), cfg["seed"]
    )
    curves = LatentDistanceCurve(metrics, run_dir)
    timing = Timing()
    progress = FitProgress(progress_mode(trainer_cfg.get("enable_progress_bar")))
    callbacks = [
        checkpoint,
        last,
        metrics,
        curves,
        timing,
        RandomState(),
        DivergenceCheck(model.name),
    ]
    patience = trainer_cfg.get("early_stopping_patience")
    if patience:
        from lightning.pytorch.callbacks import EarlyStopping

        callbacks.append(EarlyStopping(monitor="val/loss", mode="min", patience=int(patience)))
    kwargs = _trainer_kwargs(cfg)
    manual = not getattr(model, "automatic_optimization", True)
    strategy = ddp.strategy() if ddp is not None else external_strategy(trainer_cfg, manual)
    if strategy is not None:
        kwargs["strategy"] = strategy
        callbacks.append(ParameterSync(run_dir))
    if ddp is not None and isinstance(kwargs["devices"], int | str):
        kwargs["devices"] = ddp.world_size
    trainer = L.Trainer(
        max_epochs=max_epochs,
        logger=loggers or False,
        callbacks=[*callbacks, progress] if progress.mode != "off" else callbacks,
        enable_progress_bar=progress.mode != "off",
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        default_root_dir=str(run_dir),
        # each process gets its share of the training batches from the data module (equal
        # counts); validation runs on all val cells in every process, so val/loss and the
        # checkpoint choice agree across processes without a reduction
        use_distributed_sampler=False,
        plugins=[AtomicCheckpointIO()],
        **kwargs,
    )
    if ddp is not None and ddp.is_child:
        mark_ready(ddp)
    try:
        trainer.fit(model, datamodule=dm, ckpt_path=str(ckpt_path) if ckpt_path else None)
    except SystemExit:
        if not trainer.interrupted:
            raise
        # Lightning turns Ctrl-C into exit(1) and ignores Ctrl-C from then on: give the
        # caller (a suite, the command line) the interrupt back
        signal.signal(signal.SIGINT, signal.default_int_handler)
        raise KeyboardInterrupt from None
    if not trainer.is_global_zero:
        return model, {}
    best_path = checkpoint.best_model_path
    best = (
        model_class(model.name).load_from_checkpoint(best_path, map_location="cpu")
        if best_path
        else model
    )
    extra = {
        "best_epoch": _best_epoch(best_path),
        "curve_correlations": curves.correlations,
        "world_size": int(trainer.world_size),
    }
    return best, {**timing.summary(), **extra}


def _best_epoch(path: str) -> int | None:
    if not path:
        return None
    return int(torch.load(path, map_location="cpu", weights_only=False).get("epoch", -1))


def _setup(cfg: dict) -> tuple[str, int | None, dict, PairedDataModule, Integrator]:
    """Seeds, threads, data module and model, the same in every DDP process."""
    seed = int(cfg.get("seed", 0))
    if cfg.get("trainer", {}).get("num_threads"):
        torch.set_num_threads(int(cfg["trainer"]["num_threads"]))
        # numpy / scipy BLAS as well (MOFA+, kernel ridge, PCA): oversubscribed BLAS threads
        # were 4x slower on the shared 2-core machine
        from threadpoolctl import threadpool_limits

        threadpool_limits(int(cfg["trainer"]["num_threads"]))
    L.seed_everything(seed, workers=True, verbose=False)
    name, max_epochs, batch_size, hparams = _split_model_config(cfg["model"])
    dm = build_datamodule(cfg, batch_size)
    L.seed_everything(seed, workers=True, verbose=False)
    if max_epochs is not None and "max_epochs" in inspect.signature(model_class(name)).parameters:
        hparams["max_epochs"] = int(max_epochs)  # models that train inside another tool
    model = build_model(name, dm.spec, **hparams)
    return name, max_epochs, hparams, dm, model


def train_rank(cfg: dict, run_dir: Path, plan: DDPPlan, ckpt_path: str | None) -> None:
    """What a DDP process started by mmint (rank > 0) runs: the same setup and training as
    rank 0, no evaluation and no files (rank 0 writes the run directory)."""
    _, max_epochs, _, dm, model = _setup(cfg)
    train_model(model, dm, cfg, run_dir, int(max_epochs or 50), [], ckpt_path, plan)


def run_fit(
    cfg: Mapping[str, Any], run_dir: str | Path, announce: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Fit, select on val, score on test, and write the run directory; return ``metrics.json``.

    The run directory is held by this process while it runs (a second writer is refused, see
    :mod:`mmint.runlock`). A run directory that holds a ``last.ckpt`` of the same config is
    resumed from it; one that holds another config's run is refused
    (:func:`check_run_dir`). A failure writes ``metrics.json`` with ``status: failed`` and the
    one-line ``error`` (no scores) and re-raises.

    Parameters
    ----------
    cfg
        The composed config (``data``, ``model``, ``split``, ``seed``, ``trainer``, ``logger``,
        ``eval``, ``variant``).
    run_dir
        Where the run directory is written.
    announce
        Called with one line saying what runs, once the run directory is this run's.
    """
    start = time.perf_counter()
    cfg = plain(cfg)
    run_dir = Path(run_dir)
    if external_rank() > 0:  # torchrun / srun started this rank: train along, write nothing
        _, max_epochs, _, dm, model = _setup(cfg)
        ckpt = run_dir / "checkpoints" / "last.ckpt"
        train_model(
            model, dm, cfg, run_dir, int(max_epochs or 50), [], ckpt if ckpt.exists() else None
        )
        return {}
    with folder_lock(run_dir, "mmint fit"):
        resume = check_run_dir(run_dir, cfg)
        start_run(run_dir)
        if announce is not None:
            announce(_what_runs(cfg, run_dir, resume))
        try:
            return _fit(cfg, run_dir, resume, start, announce)
        except Exception as err:
            # a failed write must not hide the first error (e.g. the disk is full)
            with contextlib.suppress(OSError):
                write_json(
                    run_dir / "metrics.json", failed_metrics(cfg, err, start), make_parents=False
                )
            raise


def _what_runs(cfg: dict, run_dir: Path, resume: Path | None) -> str:
    epochs = cfg["model"].get("max_epochs")
    return (
        f"fit {cfg['model']['name']} on {cfg['data']['name']}, seed {cfg.get('seed', 0)}"
        + (f", {epochs} epochs" if epochs else "")
        + (" (resuming from last.ckpt)" if resume else "")
        + f" -> {run_dir}"
    )


def _fit(
    cfg: dict,
    run_dir: Path,
    resume: Path | None,
    start: float,
    announce: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    from omegaconf import OmegaConf

    seed = int(cfg.get("seed", 0))
    name, max_epochs, _, dm, model = _setup(cfg)
    reuse = record_reuse(
        config_hash(cfg), model, dm
    )  # as built: training may change hparams (stages)
    for line in dm.data.warnings if announce is not None else []:
        announce(f"warning: {line}")
    atomic_write(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(cfg)))
    write_json(run_dir / "split.json", dm.split_names())
    logger_cfg = cfg.get("logger", {}) or {}
    ddp = (
        plan_for(cfg.get("trainer", {}), not getattr(model, "automatic_optimization", True))
        if model.trains_in_epochs
        else None
    )
    loggers = make_loggers(
        logger_cfg.get("kind", "csv"),
        run_dir,
        name=f"{name}/{cfg['data']['name']}/{cfg.get('variant', 'default')}/seed{seed}",
        project=logger_cfg.get("project", "mmint"),
        group=logger_cfg.get("group"),
        tags=[
            f"model:{name}",
            f"data:{cfg['data']['name']}",
            f"seed:{seed}",
            f"variant:{cfg.get('variant', 'default')}",
        ],
        config=cfg,
    )
    try:
        if model.trains_in_epochs:
            epochs = int(max_epochs or 50)
            if ddp is None:
                best, cost = train_model(model, dm, cfg, run_dir, epochs, loggers, resume)
            else:
                best, cost = run_ddp(
                    ddp,
                    cfg,
                    run_dir,
                    resume,
                    lambda: train_model(model, dm, cfg, run_dir, epochs, loggers, resume, ddp),
                )
        else:
            model.fit_data(dm)
            model.save(run_dir / "checkpoints" / "best.ckpt", dm)
            model.save(run_dir / "checkpoints" / "last.ckpt", dm)
            best = model
            cost = {
                "epochs": None,
                "seconds_per_epoch": None,
                "cells_per_second": None,
                "cpu_seconds_per_epoch": None,
                "world_size": 1,
            }
            # models that train in epochs inside an external tool (scvi-tools) report them
            cost.update(getattr(model, "fit_cost", None) or {})
        fit_seconds = time.perf_counter() - start
        ev = cfg.get("eval", {})
        eval_start, eval_cpu_start = time.perf_counter(), time.process_time()
        scores = evaluate(
            best,
            dm,
            "test",
            scib=ev.get("scib", True),
            kbet=ev.get("kbet", False),
            leiden=ev.get("leiden", True),
            seed=seed,
            scib_max_cells=ev.get("scib_max_cells", SCIB_MAX_CELLS),
            foscttm_max_cells=ev.get("foscttm_max_cells", FOSCTTM_MAX_CELLS),
        )
        written, written_how = seeded_subsample(
            dm.cells("test"), ev.get("prediction_max_cells", PREDICTION_MAX_CELLS), seed
        )
        metrics = {
            "model": name,
            "data": cfg["data"]["name"],
            "seed": seed,
            "variant": cfg.get("variant", "default"),
            "config_hash": config_hash(cfg),
            "protocol": f"mmint split '{dm.split_config.get('kind', 'random')}', checkpoint "
            "selected on val loss, scores on test cells",
            "split": {
                "kind": dm.split_config.get("kind", "random"),
                **{f"n_{k}": int(len(v)) for k, v in dm.split.items()},
            },
            "labels": dm.data.label_counts(),
            "versions": versions(),
            "reuse": reuse,
            **scores,
            "fit_seconds": fit_seconds,
            "peak_rss_mb": peak_rss_mb(),
            **cost,
        }
        if getattr(best, "model_info", None):
            metrics["model_info"] = best.model_info
        if dm.reductions:  # data.reduce: scores of a reduced modality are on its components
            metrics["reduction"] = dm.reduction_record()
        metrics["warnings"] = [*dm.data.warnings, *result_warnings(metrics, dm)]
        metrics["predictions_subsample"] = written_how
        metrics["status"], metrics["error"] = "ok", None
        write_outputs(best, dm, run_dir, written)
        # scoring the test cells and writing outputs.h5mu / predictions: a suite's cost beside
        # fit_seconds (which ends when training does)
        metrics["eval_seconds"] = time.perf_counter() - eval_start
        # process CPU seconds of the same span: the figure that compares across loaded machines
        metrics["eval_cpu_seconds"] = time.process_time() - eval_cpu_start
        write_json(run_dir / "metrics.json", metrics, make_parents=False)
        for lg in loggers:
            lg.log_metrics(
                {f"test/{k}": v for k, v in metrics.items() if isinstance(v, int | float)}
            )
        return metrics
    finally:
        finish_wandb(loggers)


#: an R2 below this is flagged: predictions much worse than predicting the mean
R2_FLAG = -10.0


def result_warnings(metrics: Mapping[str, Any], dm: PairedDataModule) -> list[str]:
    """Signs of a collapsed fit that finished with finite numbers: one group for several
    labels, or an R2 far below zero. Shown in the fit summary and the suite report."""
    out = []
    labels = dm.true_labels[dm.cells("test")]
    n_labels = len(np.unique(labels[labels >= 0]))
    if metrics.get("n_groups") == 1 and n_labels > 1:
        out.append(f"collapse: the model put every cell in 1 group ({n_labels} labels)")
    r2 = metrics.get("r2") or {}
    worst = [
        (v, s, d)
        for s, row in r2.items()
        for d, v in (row or {}).items()
        if isinstance(v, float) and v < R2_FLAG
    ]
    if worst:
        v, s, d = min(worst)
        out.append(
            f"r2 far below zero: {len(worst)} of the r2 entries < {R2_FLAG:g} "
            f"(worst {s}->{d}: {v:.3g}); predictions are much worse than the mean"
        )
    return out

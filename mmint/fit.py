"""``mmint fit``: one model on one dataset with one seed, written as a run directory.

Works from a plain dict (or an OmegaConf config), so the library runs without Hydra; the
command line composes that config with Hydra and calls :func:`run_fit`.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import platform
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch

from mmint.callbacks import IntegrationMetrics, LatentDistanceCurve, Timing
from mmint.callbacks.timing import peak_rss_mb
from mmint.data import PairedDataModule, load_dataset
from mmint.evaluate import evaluate
from mmint.io import atomic_write, write_json
from mmint.loggers import finish_wandb, make_loggers
from mmint.models import build_model, model_class
from mmint.models.base import Integrator

#: config keys that do not change results (left out of the config hash)
_NOT_HASHED = (
    "logger",
    "hydra",
    "command",
    "trainer.enable_progress_bar",
    "suite",
    "run",
    "explain",
)


def plain(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """A resolved plain-dict copy of a dict or OmegaConf config."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return json.loads(json.dumps(cfg, default=str))


def config_hash(cfg: Mapping[str, Any]) -> str:
    """Short hash of everything in the config that can change a run's results."""
    c = plain(cfg)
    for key in _NOT_HASHED:
        node, *rest = key.split(".")
        if rest and isinstance(c.get(node), dict):
            c[node].pop(rest[0], None)
        elif not rest:
            c.pop(node, None)
    return hashlib.sha256(json.dumps(c, sort_keys=True).encode()).hexdigest()[:16]


def versions() -> dict[str, str | None]:
    """Versions of the packages that decide results."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in ("torch", "lightning", "mmint", "scib_metrics"):
        try:
            out[pkg] = version(pkg.replace("_", "-"))
        except PackageNotFoundError:
            out[pkg] = None
    return out


def _split_model_config(model_cfg: Mapping[str, Any]) -> tuple[str, int | None, int, dict]:
    cfg = dict(model_cfg)
    name = cfg.pop("name")
    max_epochs = cfg.pop("max_epochs", None)
    batch_size = int(cfg.pop("batch_size", 128))
    return name, max_epochs, batch_size, cfg


def build_datamodule(cfg: Mapping[str, Any], batch_size: int) -> PairedDataModule:
    """Load the dataset of ``cfg['data']`` and set up its data module (split by ``cfg['seed']``)."""
    data_cfg = cfg["data"]
    dm = PairedDataModule(
        load_dataset(data_cfg),
        split=cfg.get("split"),
        seed=int(cfg.get("seed", 0)),
        batch_size=batch_size,
        transforms=data_cfg.get("transforms"),
        n_top_features=data_cfg.get("n_top_features"),
    )
    dm.setup()
    return dm


def train_model(
    model: Integrator,
    dm: PairedDataModule,
    cfg: dict,
    run_dir: Path,
    max_epochs: int,
    loggers: list,
) -> tuple[Integrator, dict[str, Any]]:
    """Fit a trainable model with checkpoint selection on ``val/loss`` and curves.

    Returns the best checkpoint's model and the cost keys (``epochs``, ``seconds_per_epoch``,
    ``cells_per_second``) plus ``best_epoch`` and the curve correlations.
    """
    from lightning.pytorch.callbacks import ModelCheckpoint

    dm.passes_per_epoch = int(getattr(model, "train_passes_per_epoch", 1))
    dm.include_target_in_train = bool(getattr(model, "uses_unlabelled_target", False))
    ev = cfg.get("eval", {})
    trainer_cfg = dict(cfg.get("trainer", {}))
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best",
        monitor="val/loss",
        mode="min",
        save_top_k=1,
        enable_version_counter=False,
    )
    # save_last on the monitored callback only writes when val/loss improves: a separate
    # unmonitored one keeps the real last epoch
    last = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="last",
        monitor=None,
        save_top_k=1,
        enable_version_counter=False,
    )
    metrics = IntegrationMetrics(
        ev.get("every_n_epochs", 5), ev.get("max_curve_cells", 2000), cfg["seed"]
    )
    curves = LatentDistanceCurve(metrics, run_dir)
    timing = Timing()
    progress = trainer_cfg.get("enable_progress_bar")
    if progress is None:
        progress = os.environ.get("CI", "").lower() not in ("1", "true")
    trainer = L.Trainer(
        max_epochs=max_epochs,
        accelerator=trainer_cfg.get("accelerator", "auto"),
        devices=trainer_cfg.get("devices", 1),
        strategy=trainer_cfg.get("strategy", "auto"),
        precision=trainer_cfg.get("precision", "32-true"),
        deterministic=trainer_cfg.get("deterministic", False),
        logger=loggers or False,
        callbacks=[checkpoint, last, metrics, curves, timing],
        enable_progress_bar=bool(progress),
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        default_root_dir=str(run_dir),
    )
    trainer.fit(model, datamodule=dm)
    best_path = checkpoint.best_model_path
    best = (
        model_class(model.name).load_from_checkpoint(best_path, map_location="cpu")
        if best_path
        else model
    )
    extra = {"best_epoch": _best_epoch(best_path), "curve_correlations": curves.correlations}
    return best, {**timing.summary(), **extra}


def _best_epoch(path: str) -> int | None:
    if not path:
        return None
    return int(torch.load(path, map_location="cpu", weights_only=False).get("epoch", -1))


def run_fit(cfg: Mapping[str, Any], run_dir: str | Path) -> dict[str, Any]:
    """Fit, select on val, score on test, and write the run directory; return ``metrics.json``.

    Parameters
    ----------
    cfg
        The composed config (``data``, ``model``, ``split``, ``seed``, ``trainer``, ``logger``,
        ``eval``, ``variant``).
    run_dir
        Where the run directory is written.
    """
    from omegaconf import OmegaConf

    start = time.perf_counter()
    cfg = plain(cfg)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
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
    atomic_write(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(cfg)))
    write_json(run_dir / "split.json", dm.split_names())
    L.seed_everything(seed, workers=True, verbose=False)
    if max_epochs is not None and "max_epochs" in inspect.signature(model_class(name)).parameters:
        hparams["max_epochs"] = int(max_epochs)  # models that train inside another tool
    model = build_model(name, dm.spec, **hparams)
    logger_cfg = cfg.get("logger", {}) or {}
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
            best, cost = train_model(model, dm, cfg, run_dir, int(max_epochs or 50), loggers)
        else:
            model.fit_data(dm)
            model.save(run_dir / "checkpoints" / "best.ckpt", dm)
            model.save(run_dir / "checkpoints" / "last.ckpt", dm)
            best = model
            cost = {"epochs": None, "seconds_per_epoch": None, "cells_per_second": None}
            # models that train in epochs inside an external tool (scvi-tools) report them
            cost.update(getattr(model, "fit_cost", None) or {})
        fit_seconds = time.perf_counter() - start
        ev = cfg.get("eval", {})
        scores = evaluate(
            best,
            dm,
            "test",
            scib=ev.get("scib", True),
            kbet=ev.get("kbet", False),
            leiden=ev.get("leiden", True),
            seed=seed,
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
            "versions": versions(),
            **scores,
            "fit_seconds": fit_seconds,
            "peak_rss_mb": peak_rss_mb(),
            **cost,
        }
        if getattr(best, "model_info", None):
            metrics["model_info"] = best.model_info
        _write_outputs(best, dm, run_dir)
        write_json(run_dir / "metrics.json", metrics)
        for lg in loggers:
            lg.log_metrics(
                {f"test/{k}": v for k, v in metrics.items() if isinstance(v, int | float)}
            )
        return metrics
    finally:
        finish_wandb(loggers)


def _write_outputs(model: Integrator, dm: PairedDataModule, run_dir: Path) -> None:
    from mmint.outputs import predict, to_mudata

    mdata = to_mudata(model, dm)
    tmp = run_dir / ".outputs.h5mu.tmp"
    mdata.write(tmp)
    tmp.replace(run_dir / "outputs.h5mu")
    pred_dir = run_dir / "predictions"
    pred_dir.mkdir(exist_ok=True)
    test = dm.cells("test")
    if not getattr(model, "translates", True):
        return
    for src in dm.modalities:
        for dst in dm.modalities:
            if src != dst:
                a = predict(model, dm, src, dst, test)
                tmp = pred_dir / f".{src}_to_{dst}.h5ad.tmp"
                a.write_h5ad(tmp)
                tmp.replace(pred_dir / f"{src}_to_{dst}.h5ad")

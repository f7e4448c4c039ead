"""Loggers: W&B (offline unless the user set it up) plus CSV, CSV only, or none."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger, Logger

LOGGER_KINDS = ("wandb", "csv", "none")


def wandb_mode() -> str:
    """``WANDB_MODE`` when set; ``online`` with an API key; otherwise ``offline``.

    wandb without a key and without offline/disabled mode fails at once, so offline is the
    default that never needs a network or an account.
    """
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def make_loggers(
    kind: str,
    run_dir: str | Path,
    name: str | None = None,
    project: str = "mmint",
    group: str | None = None,
    tags: list[str] | None = None,
    config: dict[str, Any] | None = None,
) -> list[Logger]:
    """Loggers for a run writing under ``run_dir/logs``.

    Parameters
    ----------
    kind
        ``wandb`` (W&B + CSV), ``csv`` or ``none``.
    """
    if kind not in LOGGER_KINDS:
        raise ValueError(f"unknown logger {kind!r}; use one of {LOGGER_KINDS}")
    if kind == "none":
        return []
    logs = Path(run_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    loggers: list[Logger] = [CSVLogger(save_dir=str(logs), name="csv", version="")]
    mode = wandb_mode()
    if kind == "wandb" and mode != "disabled":
        from lightning.pytorch.loggers import WandbLogger

        os.environ.setdefault("WANDB_SILENT", "true")
        wandb_logger = WandbLogger(
            name=name,
            project=project,
            group=group,
            tags=tags,
            save_dir=str(logs),
            offline=mode == "offline",
            config=config,
        )
        # Lightning always passes anonymous=None, which wandb answers with a deprecation
        # warning on the terminal: leave the key out
        init = getattr(wandb_logger, "_wandb_init", None)
        if isinstance(init, dict) and init.get("anonymous") is None:
            init.pop("anonymous", None)
        loggers.append(wandb_logger)
    return loggers


def finish_wandb(loggers: list[Logger]) -> None:
    """Close the W&B run so its offline directory is complete."""
    for lg in loggers:
        if type(lg).__name__ == "WandbLogger":
            import wandb

            if wandb.run is not None:
                wandb.finish()

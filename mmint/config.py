"""Where the config tree is, and configs as plain Python values.

Hydra composes the tree only at the entry points (:mod:`mmint.cli`); the library takes the
plain dicts that :func:`plain` makes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmint.errors import InputError

CONFIG_DIR_ENV = "MMINT_CONFIG_DIR"
#: the config tree: package data (``mmint/conf``), the same in a checkout and in a wheel
SHIPPED = Path(__file__).resolve().parent / "conf"


def config_dir() -> Path:
    """The config tree: ``$MMINT_CONFIG_DIR``, else the one in the package (``mmint/conf``).

    Raises
    ------
    mmint.errors.InputError
        When the folder found has no ``config.yaml``.
    """
    env = os.environ.get(CONFIG_DIR_ENV)
    if env:
        folder = Path(env).expanduser()
        where = f"${CONFIG_DIR_ENV}={env}"
    else:
        folder = SHIPPED
        where = str(folder)
    if not (folder / "config.yaml").exists():
        raise InputError(
            "no config tree (config.yaml) found",
            where,
            f"set {CONFIG_DIR_ENV} to a folder like mmint/conf, or reinstall mmint",
        )
    return folder


def plain(cfg: Any) -> Any:
    """A resolved plain copy (dicts, lists and scalars) of an OmegaConf config, a mapping or
    a sequence; paths become strings and numpy values Python ones."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(cfg, DictConfig | ListConfig):
        return OmegaConf.to_container(cfg, resolve=True)
    if isinstance(cfg, Mapping):
        return {str(k): plain(v) for k, v in cfg.items()}
    if isinstance(cfg, list | tuple):
        return [plain(v) for v in cfg]
    if cfg is None or isinstance(cfg, str | bool | int | float):
        return cfg
    if hasattr(cfg, "tolist"):  # numpy arrays and scalars
        return cfg.tolist()
    return str(cfg)

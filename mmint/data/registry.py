"""Datasets by name: the configs in ``mmint/conf/data`` are the single source of truth.

``source: simulator`` builds the package's simulated data, ``source: shared`` reads
``$MMINT_DATA_DIR/<name>/<modality>.h5ad`` and ``source: custom`` reads the user's files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmint.config import config_dir, plain
from mmint.data.paired import PairedData
from mmint.errors import InputError

DATA_DIR_ENV = "MMINT_DATA_DIR"

__all__ = ["DATA_DIR_ENV", "config_dir", "dataset_config", "dataset_names", "load_dataset"]


def dataset_names() -> list[str]:
    """Names of the datasets with a config in ``mmint/conf/data``."""
    return sorted(p.stem for p in (config_dir() / "data").glob("*.yaml"))


def dataset_config(name: str) -> dict[str, Any]:
    """The data config ``mmint/conf/data/<name>.yaml`` as a plain dict."""
    from omegaconf import OmegaConf

    path = config_dir() / "data" / f"{name}.yaml"
    if not path.exists():
        known = [n for n in dataset_names() if n != "custom"]
        raise InputError(
            f"unknown dataset '{name}'", "", f"use one of: {', '.join(known)}, or data=custom"
        )
    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)  # type: ignore[return-value]


def load_dataset(cfg: str | Mapping[str, Any]) -> PairedData:
    """Load a dataset from its name or its (possibly overridden) data config.

    Parameters
    ----------
    cfg
        A dataset name, or a mapping with the keys of ``mmint/conf/data/*.yaml``.
    """
    cfg = dataset_config(cfg) if isinstance(cfg, str) else plain(cfg)
    source = cfg.get("source", "custom")
    common = {
        "label_key": cfg.get("label_key"),
        "batch_key": cfg.get("batch_key"),
        "class_key": cfg.get("class_key"),
        "exclude_labels": tuple(cfg.get("exclude_labels") or ()),
    }
    kinds = dict(cfg.get("kinds") or {})
    join = cfg.get("join") or "strict"
    backed = bool(cfg.get("backed", False))
    if backed and source == "simulator":
        raise InputError(
            "data.backed reads .h5ad files; the simulator makes its data in memory",
            "data.backed",
            "write the simulated data to .h5ad files and use data=custom, or set data.backed=false",
        )
    if source == "simulator":
        from mmint.data.simulate import simulate

        sim_kwargs = dict(cfg.get("simulate") or {})
        n_features = sim_kwargs.pop("n_features", None)
        if n_features:
            sim_kwargs["modalities"] = {m: (kinds[m], int(n)) for m, n in n_features.items()}
        sim = simulate(**sim_kwargs)
        data = PairedData.from_anndatas(sim.adatas, sim.kinds, join=join, **common)
        data.extras["links"] = sim.links
        return data
    if source == "shared":
        folder = _shared_folder(cfg["name"])
        paths = {m: folder / f"{m}.h5ad" for m in kinds}
        missing = [str(p) for p in paths.values() if not p.exists()]
        if missing:
            raise InputError(
                f"dataset '{cfg['name']}' is incomplete: {len(missing)} modality files missing",
                ", ".join(missing),
                f"restore the files listed in DATASETS.md of ${DATA_DIR_ENV}",
            )
        return PairedData.from_anndatas(paths, kinds, join=join, backed=backed, **common)
    if source == "custom":
        paths = cfg.get("paths")
        if not paths:
            raise InputError(
                "no files given for data=custom",
                "data.paths",
                "pass 'data.paths={rna: a.h5ad, atac: b.h5ad}' or data.paths=x.h5mu",
            )
        if not kinds:
            raise InputError(
                "no modality kinds given for data=custom",
                "data.kinds",
                "pass e.g. 'data.kinds={rna: counts, atac: binary}'",
            )
        if isinstance(paths, str):
            if not paths.endswith(".h5mu"):
                raise InputError(
                    f"a single path must be a MuData .h5mu file, got '{paths}'",
                    "data.paths",
                    "give {modality: file.h5ad} for one AnnData per modality",
                )
            if backed:
                raise InputError(
                    "data.backed reads one .h5ad file per modality, not a .h5mu",
                    "data.paths",
                    "give 'data.paths={rna: a.h5ad, atac: b.h5ad}', or set data.backed=false",
                )
            # data.join applies as for separate files: with `outer`, a cell absent from a
            # modality's obs lacks it (contracts); `strict` refuses modalities with other cells
            return PairedData.from_mudata(_resolve(paths), kinds, join=join, **common)
        return PairedData.from_anndatas(
            {m: _resolve(p) for m, p in paths.items()}, kinds, join=join, backed=backed, **common
        )
    raise InputError(
        f"unknown data source '{source}'", "data.source", "use simulator, shared or custom"
    )


def _shared_folder(name: str) -> Path:
    root = os.environ.get(DATA_DIR_ENV)
    if not root:
        raise InputError(
            f"dataset '{name}' needs ${DATA_DIR_ENV}, which is not set",
            f"looked for ${DATA_DIR_ENV}/{name}/",
            f"set {DATA_DIR_ENV} to the folder holding the shared datasets (its DATASETS.md "
            "gives each dataset's source)",
        )
    folder = Path(root).expanduser().resolve() / name
    if not folder.is_dir():
        raise InputError(
            f"dataset '{name}' not found",
            f"looked in {folder}",
            f"put the dataset's files there (see DATASETS.md in ${DATA_DIR_ENV} for its source)",
        )
    return folder


def _resolve(path: str | Path) -> Path:
    """Relative paths resolve against the launch directory (Hydra's chdir is off)."""
    return Path(os.path.expanduser(str(path))).absolute()

"""``mmint.Run``: a run directory seen from Python (metrics, latents, MuData, predictions),
and ``mmint.load_run`` for a finished one."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmint.errors import InputError


class Outputs:
    """The ``outputs.h5mu`` of a run or of a prediction on new cells: latents and groups.

    Parameters
    ----------
    path
        The folder holding ``outputs.h5mu``.
    model
        The model's name (the ``X_<model>`` keys).
    """

    def __init__(self, path: str | Path, model: str) -> None:
        self.dir = Path(path)
        self.model = model

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model!r}, {str(self.dir)!r})"

    @cached_property
    def _global(self) -> tuple[pd.DataFrame, np.ndarray]:
        import anndata as ad
        import h5py

        path = self.dir / "outputs.h5mu"
        if not path.exists():
            raise InputError(
                "no outputs.h5mu", str(self.dir), "use a finished run (its fit wrote no outputs)"
            )
        with h5py.File(path, "r") as f:
            obs = ad.io.read_elem(f["obs"])
            latent = np.asarray(ad.io.read_elem(f["obsm"][f"X_{self.model}"]))
        return obs, latent

    @property
    def obs(self) -> pd.DataFrame:
        """Every cell's annotations: the data's, ``split`` and ``<model>_group``."""
        return self._global[0]

    @property
    def latent(self) -> pd.DataFrame:
        """The joint latent of every cell (rows: cell names, in ``outputs.h5mu``'s order)."""
        obs, z = self._global
        return pd.DataFrame(z, index=obs.index, columns=[f"z{i}" for i in range(z.shape[1])])

    @property
    def groups(self) -> pd.Series | None:
        """The model's group of every cell (None for models without a group head)."""
        col = f"{self.model}_group"
        return self.obs[col] if col in self.obs else None

    def to_mudata(self) -> Any:
        """``outputs.h5mu`` as a MuData: one entry per modality (the model input of the cells
        that have it), ``obsm['X_<model>']``, ``obsm['X_<model>_<modality>']``,
        ``obs['<model>_group']`` and ``obs['split']``."""
        import mudata as md

        md.set_options(pull_on_update=False)
        return md.read_h5mu(self.dir / "outputs.h5mu")

    def write_to(self, data: Any) -> Any:
        """Put the joint latent in ``data.obsm['X_<model>']`` and the groups in
        ``data.obs['<model>_group']``, matched by cell name (any order); cells the run does
        not have get NaN. ``data`` is a MuData or AnnData; it is changed and returned.

        Raises
        ------
        mmint.errors.InputError
            When none of the cells of ``data`` are in the run.
        """
        names = pd.Index(data.obs_names.astype(str))
        obs, z = self._global
        pos = pd.Index(obs.index.astype(str)).get_indexer(names)
        if not (pos >= 0).any():
            raise InputError(
                f"none of the {len(names)} cells are in the run ({len(obs)} cells)",
                str(self.dir),
                "write to the data the run was fitted on, or apply the run to new cells with "
                "run.predict(data)",
            )
        out = np.full((len(names), z.shape[1]), np.nan, dtype=z.dtype)
        out[pos >= 0] = z[pos[pos >= 0]]
        data.obsm[f"X_{self.model}"] = out
        for col in (f"{self.model}_group", "split"):
            if col in obs:
                values = obs[col].astype(str).to_numpy()[np.maximum(pos, 0)]
                data.obs[col] = pd.Categorical(np.where(pos >= 0, values, None))
        return data


class Prediction(Outputs):
    """A run applied to new cells (``mmint predict``): ``outputs.h5mu``, ``predictions/``
    and ``predict.json`` (:attr:`summary`) in :attr:`dir`."""

    @property
    def summary(self) -> dict[str, Any]:
        """``predict.json``: the run, checkpoint, data, cells and features left out."""
        return json.loads((self.dir / "predict.json").read_text())


class Run(Outputs):
    """A run directory written by ``mmint fit`` (or :func:`mmint.fit`).

    Parameters
    ----------
    path
        The run directory.

    Raises
    ------
    mmint.errors.InputError
        When ``path`` is not a run directory (no ``config.yaml``).
    """

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        if not (path / "config.yaml").exists():
            raise InputError(
                "not a run directory (no config.yaml)",
                str(path),
                "pass a folder written by mmint fit",
            )
        super().__init__(path, str(self._config_of(path)["model"]["name"]))

    @staticmethod
    def _config_of(path: Path) -> dict[str, Any]:
        from omegaconf import OmegaConf

        from mmint.config import plain

        return plain(OmegaConf.load(path / "config.yaml"))

    @property
    def config(self) -> dict[str, Any]:
        """The composed config the run ran with (``config.yaml``)."""
        return self._config_of(self.dir)

    @property
    def metrics(self) -> dict[str, Any]:
        """``metrics.json`` (keys in ``contracts.md``); ``{}`` while the run has none."""
        path = self.dir / "metrics.json"
        return json.loads(path.read_text()) if path.exists() else {}

    @property
    def curves(self) -> pd.DataFrame | None:
        """``curves.csv``: the per-epoch validation metrics (None for models without
        epochs)."""
        path = self.dir / "curves.csv"
        return pd.read_csv(path) if path.exists() else None

    def predict(
        self,
        data: Any,
        out: str | Path | None = None,
        checkpoint: str = "best",
        **data_keys: Any,
    ) -> Prediction:
        """Apply the run to new cells (``mmint predict``): the run's fitted transforms and
        model, nothing refitted.

        Parameters
        ----------
        data
            A MuData, a ``{modality: AnnData or .h5ad path}`` dict, a
            :class:`~mmint.data.PairedData` or a dataset name.
        out
            The output folder; default ``<run>/predict/data``.
        checkpoint
            ``best`` or ``last``.
        **data_keys
            Data config keys for a MuData or AnnData (``batch_key``, ``label_key``, ``join``,
            ``kinds``); by default the run's kinds, and the run's ``batch_key`` when the new
            cells have that column.

        Returns
        -------
        Prediction
            Its latents, groups, ``to_mudata``/``write_to`` and ``summary``.
        """
        from mmint.predict import predict_run

        paired = data if isinstance(data, str) else self._paired(data, data_keys)
        summary = predict_run(self.dir, paired, out, checkpoint)
        return Prediction(summary["out"], self.model)

    def _paired(self, data: Any, keys: dict[str, Any]) -> Any:
        from mmint.data import PairedData

        if isinstance(data, PairedData):
            return data
        run_data = self.config["data"]
        kinds = keys.pop("kinds", None) or run_data["kinds"]
        if "batch_key" not in keys and run_data.get("batch_key"):
            key = run_data["batch_key"]
            if hasattr(data, "mod"):
                tables = [data.obs, *(a.obs for a in data.mod.values())]
            else:
                tables = [a.obs for a in data.values() if hasattr(a, "obs")]
            keys["batch_key"] = key if any(key in t for t in tables) else None
        if hasattr(data, "mod"):
            return PairedData.from_mudata(data, kinds, **keys)
        return PairedData.from_anndatas(data, kinds, **keys)


def load_run(path: str | Path) -> Run:
    """A finished run directory (of ``mmint fit``, :func:`mmint.fit` or a benchmark's
    ``runs/<run>``) as a :class:`Run`.

    Raises
    ------
    mmint.errors.InputError
        When ``path`` is not a run directory.
    """
    return Run(path)

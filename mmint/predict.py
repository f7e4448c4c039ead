"""Apply a trained run to new cells: ``mmint predict run=<run dir> data=<dataset or custom>``.

The new cells go through the run's own fitted transforms (the checkpoint's data-module state:
the features the run selected and the training cells' statistics) and the run's model;
nothing is refitted. The output folder (default ``<run>/predict/<data name>``) gets

- ``outputs.h5mu``: as a run's (``obsm['X_<model>']``, ``obsm['X_<model>_<modality>']``,
  ``obs['<model>_group']``), for every new cell; ``obs['split']`` is ``test`` (no new cell
  trained the model);
- ``predictions/<src>_to_<dst>.h5ad`` for every new cell that has both modalities;
- ``predict.json``: the run, checkpoint, data, cells, and the features left out per modality.

The new data must have the run's modalities with their kinds and every feature the model uses
(by name; extra features are left out, the order does not matter). When the run's model has a
batch covariate, the new cells' batches must be among the run's. Anything else is one
:class:`~mmint.errors.InputError` naming what differs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmint.config import plain
from mmint.data.datamodule import PairedDataModule
from mmint.data.modality import FittedTransform
from mmint.data.paired import PairedData
from mmint.data.registry import load_dataset
from mmint.errors import InputError
from mmint.io import write_json
from mmint.outputs import write_outputs
from mmint.rundir import SavedRun, load_saved_run

_SHOWN = 5  # names listed in an error line


def _names(items: Sequence[Any]) -> str:
    shown = ", ".join(str(v) for v in list(items)[:_SHOWN])
    return shown + (f", ... ({len(items)} in all)" if len(items) > _SHOWN else "")


def run_annotations(run: SavedRun) -> tuple[dict[str, pd.Index], pd.DataFrame]:
    """``({modality: the model's input features}, the run's cell annotations)`` from the run's
    ``outputs.h5mu`` (its feature names are kept nowhere else)."""
    import anndata as ad
    import h5py

    path = run.path / "outputs.h5mu"
    if not path.exists():
        raise InputError(
            "the run has no outputs.h5mu (it names the model's features)",
            str(run.path),
            "predict with a finished run of mmint fit",
        )
    with h5py.File(path, "r") as f:
        features = {m: ad.io.read_elem(f["mod"][m]["var"]).index for m in f["mod"]}
        obs = ad.io.read_elem(f["obs"])
    return features, obs


def check_modalities(data: PairedData, run: SavedRun) -> None:
    """The new data has exactly the run's modalities, each of the run's kind."""
    spec = run.model.spec
    missing = [m for m in spec.modalities if m not in data.modalities]
    extra = [m for m in data.modalities if m not in spec.modalities]
    if missing or extra:
        what = "; ".join(
            part
            for part in (
                f"lacks {_names(missing)}" if missing else "",
                f"has {_names(extra)}, which the run was not trained on" if extra else "",
            )
            if part
        )
        raise InputError(
            f"the new data's modalities differ from the run's ({_names(spec.modalities)}): {what}",
            "data",
            "give the new cells exactly the modalities the run was trained on",
        )
    kinds = {m: (data.modalities[m].kind, spec.kinds[m]) for m in spec.modalities}
    wrong = [f"{m} is {new}, the run's is {old}" for m, (new, old) in kinds.items() if new != old]
    if wrong:
        raise InputError(
            f"modality kinds differ from the run's: {'; '.join(wrong)}",
            "data.kinds",
            "declare each modality with the run's kind",
        )


def mapped_transforms(
    data: PairedData, run: SavedRun, features: Mapping[str, pd.Index]
) -> dict[str, FittedTransform]:
    """The run's fitted transforms, with the selected features looked up by name in the new
    data's features."""
    state = run.datamodule_state or {}
    if state.get("reductions"):
        raise InputError(
            "mmint predict does not yet apply a run's data.reduce reductions",
            str(run.path),
            "fit a run on the new cells too, or one without data.reduce",
        )
    if "transforms" not in state:
        raise InputError(
            "the checkpoint holds no fitted transforms",
            str(run.path),
            "predict with a run written by mmint fit",
        )
    out = {}
    for m in run.model.spec.modalities:
        fitted = FittedTransform.from_state(state["transforms"][m])
        wanted, have = features[m], data.modalities[m].var_names.astype(str)
        if not have.is_unique:
            dup = have[have.duplicated()].unique()
            raise InputError(
                f"modality '{m}' has duplicate feature names ({_names(dup)})",
                data.modalities[m].where or "data",
                "make the feature names unique (AnnData.var_names_make_unique)",
            )
        idx = have.get_indexer(wanted)
        if (idx < 0).any():
            missing = wanted[idx < 0]
            raise InputError(
                f"modality '{m}' lacks {len(missing)} of the run's {len(wanted)} features: "
                f"{_names(missing)}",
                data.modalities[m].where or "data",
                "give the new cells the features the run was trained on (by name)",
            )
        out[m] = FittedTransform(fitted.name, idx, fitted.params)
    return out


def mapped_batches(data: PairedData, run: SavedRun, run_obs: pd.DataFrame) -> np.ndarray:
    """The run's batch code of every new cell (all 0 when the run had one batch)."""
    n_batches = run.model.spec.n_batches
    if n_batches <= 1:
        return np.zeros(data.n_cells, dtype=np.int64)
    key = run.config["data"].get("batch_key")
    run_batches = PairedData({}, run_obs, batch_key=key).batches()[1]
    if data.batch_key is None:
        raise InputError(
            f"the run was trained on {n_batches} batches ({_names(run_batches)}); the new data "
            "has no batch column",
            "data.batch_key",
            f"set data.batch_key to the column holding the run's batch names ('{key}' there)",
        )
    codes, names = data.batches()
    lookup = {name: i for i, name in enumerate(run_batches)}
    unknown = [n for n in names if n not in lookup]
    if unknown:
        raise InputError(
            f"batches {_names(unknown)} of the new cells are not among the run's "
            f"({_names(run_batches)})",
            f"data.batch_key={data.batch_key}",
            "predict cells of the run's batches: its decoders know only those",
        )
    return np.array([lookup[names[c]] for c in codes], dtype=np.int64)


class NewCells(PairedDataModule):
    """New cells in the run's terms: its fitted transforms and its batch codes; every cell
    is in the ``test`` set."""

    def __init__(
        self,
        data: PairedData,
        transforms: Mapping[str, FittedTransform],
        batch_codes: np.ndarray,
        batch_size: int = 1024,
    ) -> None:
        split = {"kind": "given", "train": [], "val": [], "test": np.arange(data.n_cells)}
        names = {m: t.name for m, t in transforms.items()}
        super().__init__(data, split=split, transforms=names, eval_batch_size=batch_size)
        self.load_state_dict({"transforms": {m: t.state() for m, t in transforms.items()}})
        self._run_batch_codes = batch_codes

    def setup(self, stage: str | None = None) -> None:
        """Transform the cells with the run's transforms; batch codes are the run's."""
        super().setup(stage)
        self.batch_codes = self._run_batch_codes


def predict_run(
    run_dir: str | Path,
    data: str | Mapping[str, Any] | PairedData,
    out_dir: str | Path | None = None,
    checkpoint: str = "best",
) -> dict[str, Any]:
    """Apply the run in ``run_dir`` to the cells of ``data`` and write the output folder.

    Parameters
    ----------
    run_dir
        A run directory written by ``mmint fit``.
    data
        A dataset name, a data config (the keys of ``mmint/conf/data/*.yaml``; its
        ``transforms`` and ``n_top_features`` are ignored: the run's apply) or a
        :class:`~mmint.data.PairedData`.
    out_dir
        The output folder; default ``<run_dir>/predict/<data name>``.
    checkpoint
        ``best`` or ``last``.

    Returns
    -------
    The summary written as ``predict.json``.
    """
    run = load_saved_run(run_dir, checkpoint, "predict")
    features, run_obs = run_annotations(run)
    if isinstance(data, PairedData):
        name, paired = "data", data
    else:
        cfg = plain(data) if not isinstance(data, str) else {"name": data}
        name = str(cfg.get("name") or "data")
        paired = load_dataset(data if isinstance(data, str) else cfg)
    check_modalities(paired, run)
    transforms = mapped_transforms(paired, run, features)
    dm = NewCells(paired, transforms, mapped_batches(paired, run, run_obs))
    dm.setup()
    out = Path(out_dir) if out_dir else run.path / "predict" / name
    out.mkdir(parents=True, exist_ok=True)
    files = write_outputs(run.model, dm, out, dm.cells("all"))
    summary = {
        "run": str(run.path),
        "checkpoint": checkpoint,
        "model": run.model.name,
        "data": name,
        "n_cells": int(paired.n_cells),
        "features_left_out": {
            m: int(paired.modalities[m].n_features - len(t.features)) for m, t in transforms.items()
        },
        "files": [str(p.relative_to(out)) for p in files],
    }
    write_json(out / "predict.json", summary)
    return {**summary, "out": str(out)}


def main(cfg: Any) -> None:
    """The ``predict`` command (called by :mod:`mmint.cli`)."""
    import torch

    cfg = plain(cfg)
    run = cfg.get("run")
    if not run:
        raise InputError("no run directory given", "mmint predict", "pass run=<run directory>")
    opts = cfg.get("predict") or {}
    threads = (cfg.get("trainer") or {}).get("num_threads")
    if threads:
        torch.set_num_threads(int(threads))
    summary = predict_run(run, cfg["data"], opts.get("out"), opts.get("checkpoint") or "best")
    left = {m: n for m, n in summary["features_left_out"].items() if n}
    print(
        f"predicted {summary['n_cells']} cells of {summary['data']} with {summary['model']} "
        f"({summary['run']})"
        + (f"\nfeatures the run does not use, left out: {left}" if left else "")
        + f"\nwritten to: {summary['out']}"
    )

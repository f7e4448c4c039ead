"""AnnData / MuData views of a fitted model: latents in ``obsm``, groups in ``obs``,
cross-modal predictions as AnnData (the scverse-style user API), and the files a run (or a
prediction on new cells) writes from them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import torch

from mmint.data.backed import is_lazy
from mmint.data.datamodule import PairedDataModule
from mmint.evaluate import collect
from mmint.io import WriteFailed, atomic_path
from mmint.models.base import Integrator
from mmint.models.wholeset import WholeSetIntegrator

#: default bound on the test cells whose predictions are written (``eval.prediction_max_cells``;
#: above it a seeded uniform subsample, :func:`mmint.metrics.alignment.seeded_subsample`)
PREDICTION_MAX_CELLS = 5000


def split_column(dm: PairedDataModule) -> np.ndarray:
    """``train`` / ``val`` / ``test`` per cell."""
    col = np.empty(dm.data.n_cells, dtype=object)
    for name, idx in dm.split.items():
        col[idx] = name
    return col


def to_mudata(model: Integrator, dm: PairedDataModule):
    """All cells as a MuData with one modality per entry.

    Entry ``m`` holds only the cells that have ``m`` (its model input in ``X``, sparse for a
    sparse modality; no ``X`` when it is read from its file, ``data.backed``), so nothing
    unmeasured looks measured: MuData's own ``obsm[m]`` is the mask of the cells that have it
    (False for the others). Each entry has ``obsm['X_<model>']`` (joint latent),
    ``obsm['X_<model>_<m>']``, and ``obsm['X_<model>_<other>']`` when all its cells also
    have ``other``; ``obs['<model>_group']`` and ``obs['split']``. The global ``obs`` and
    ``obsm['X_<model>']`` cover every cell (the joint latent uses the modalities a cell has).
    """
    import mudata as md

    md.set_options(pull_on_update=False)
    out = collect(model, dm, dm.cells("all"), translations=False)
    name = model.name
    obs = dm.data.obs.copy()
    obs["split"] = pd.Categorical(split_column(dm))
    if out.groups is not None:
        obs[f"{name}_group"] = pd.Categorical(out.groups.astype(str))
    has = {m: dm.masks[m] > 0 for m in dm.modalities}
    mods = {}
    for m in dm.modalities:
        rows = np.flatnonzero(has[m])
        feats = np.asarray(dm.input_features(m))
        # backed inputs stay in their files: the entry then has no X (see data.backed)
        lazy = is_lazy(dm.inputs[m])
        a = ad.AnnData(
            X=None if lazy else _rows(dm.inputs[m], rows),
            obs=obs.iloc[rows].copy(),
            var=pd.DataFrame(index=feats.astype(str)),
        )
        a.obsm[f"X_{name}"] = out.joint[rows]
        for mm, z in out.latents.items():
            if has[mm][rows].all():
                a.obsm[f"X_{name}_{mm}"] = z[rows]
        mods[m] = a
    mdata = md.MuData(mods)
    pos = dm.data.names.get_indexer(mdata.obs_names)
    for col in obs.columns:
        mdata.obs[col] = obs[col].iloc[pos].set_axis(mdata.obs_names)
    mdata.obsm[f"X_{name}"] = out.joint[pos]
    return mdata


def _rows(x: Any, rows: np.ndarray) -> Any:
    """``x[rows]``, or ``x`` itself when ``rows`` are all its rows in order (no copy of the
    whole input: at 10^6 cells it is the largest array of the run)."""
    if len(rows) == x.shape[0] and (len(rows) == 0 or rows[-1] == len(rows) - 1):
        return x
    return x[rows]


def prediction_chunks(
    model: Integrator, dm: PairedDataModule, src: str, dst: str, cells: np.ndarray
) -> Iterator[np.ndarray]:
    """Predictions of ``dst`` from ``src`` for ``cells`` (which have both), chunk by chunk
    (at most :meth:`~mmint.data.datamodule.PairedDataModule.prediction_rows` cells each), so that a wide target is
    never predicted whole."""
    if hasattr(model, "eval"):
        model.eval()
    size = dm.prediction_rows([dst])
    if isinstance(model, WholeSetIntegrator):  # contracts: embed_cells
        for i in range(0, len(cells), size):
            yield np.asarray(model.predict_cells(dm, src, dst, cells[i : i + size]), np.float32)
        return
    device = getattr(model, "device", torch.device("cpu"))
    sparse = bool(getattr(model, "accepts_sparse", False))
    with torch.no_grad():
        for batch in dm.iter_batches(cells, batch_size=size, sparse=sparse):
            batch = {k: v.to(device) for k, v in batch.items()}
            yield model.translate(batch, src, dst).float().cpu().numpy()


def write_prediction(
    model: Integrator, dm: PairedDataModule, src: str, dst: str, cells: np.ndarray, path: Path
) -> None:
    """``predictions/<src>_to_<dst>.h5ad`` for the ``cells`` that have both, written atomically
    and without a dense copy of the whole prediction: ``X`` (dst's model-input space) is
    written chunk by chunk into the file; ``layers['observed']`` is the observed input (sparse
    for a sparse modality)."""
    import h5py

    both = cells[(dm.masks[src][cells] > 0) & (dm.masks[dst][cells] > 0)]
    feats = np.asarray(dm.input_features(dst)).astype(str)
    a = ad.AnnData(
        obs=pd.DataFrame(index=dm.data.names[both].astype(str)), var=pd.DataFrame(index=feats)
    )
    a.layers["observed"] = (
        dm.inputs[dst][both] if len(both) else np.zeros((0, len(feats)), np.float32)
    )
    a.uns["mmint"] = {"model": model.name, "src": src, "dst": dst, "space": _space(dm, dst)}
    with atomic_path(path, make_parents=False) as tmp:
        a.write_h5ad(tmp)
        with h5py.File(tmp, "a") as f:
            x = f.create_dataset("X", shape=(len(both), len(feats)), dtype="float32")
            x.attrs["encoding-type"], x.attrs["encoding-version"] = "array", "0.2.0"
            start = 0
            for chunk in prediction_chunks(model, dm, src, dst, both) if len(both) else ():
                x[start : start + len(chunk)] = chunk
                start += len(chunk)


def write_outputs(
    model: Integrator, dm: PairedDataModule, folder: str | Path, prediction_cells: np.ndarray
) -> list[Path]:
    """Write ``outputs.h5mu`` (every cell of ``dm``, :func:`to_mudata`) and
    ``predictions/<src>_to_<dst>.h5ad`` for ``prediction_cells`` into ``folder``, each file
    atomically; return their paths."""
    folder = Path(folder)
    written = [folder / "outputs.h5mu"]
    mdata = to_mudata(model, dm)
    with atomic_path(written[0], make_parents=False) as tmp:
        mdata.write(tmp)
    pred_dir = folder / "predictions"
    try:
        pred_dir.mkdir(exist_ok=True)
    except OSError as err:
        raise WriteFailed.of(pred_dir, err) from err
    if isinstance(model, WholeSetIntegrator) and not model.translates:  # e.g. totalVI, scANVI
        return written
    for src in dm.modalities:
        for dst in dm.modalities:
            if src != dst:
                path = pred_dir / f"{src}_to_{dst}.h5ad"
                write_prediction(model, dm, src, dst, np.asarray(prediction_cells), path)
                written.append(path)
    return written


def _space(dm: PairedDataModule, m: str) -> str:
    """The model-input space of ``m``: its transform, or its reduction's standardised
    components (``data.reduce``)."""
    return f"{dm.reduce[m][0]} components" if m in dm.reduce else dm.transform_names[m]

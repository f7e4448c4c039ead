"""AnnData / MuData views of a fitted model: latents in ``obsm``, groups in ``obs``,
cross-modal predictions as AnnData (the scverse-style user API), and the files a run (or a
prediction on new cells) writes from them."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import torch

from mmint.data.datamodule import PairedDataModule
from mmint.evaluate import collect
from mmint.models.base import Integrator


def split_column(dm: PairedDataModule) -> np.ndarray:
    """``train`` / ``val`` / ``test`` per cell."""
    col = np.empty(dm.data.n_cells, dtype=object)
    for name, idx in dm.split.items():
        col[idx] = name
    return col


def to_mudata(model: Integrator, dm: PairedDataModule):
    """All cells as a MuData with one modality per entry.

    Entry ``m`` holds only the cells that have ``m`` (its model input in ``X``), so nothing
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
        feats = dm.data.modalities[m].var_names[dm.transforms[m].features]
        a = ad.AnnData(
            X=dm.inputs[m][rows],
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


@torch.no_grad()
def predict(
    model: Integrator, dm: PairedDataModule, src: str, dst: str, cells: np.ndarray
) -> ad.AnnData:
    """Prediction of ``dst`` from ``src`` for the ``cells`` that have both, as an AnnData
    (``X`` in dst's model-input space, ``layers['observed']`` the observed input)."""
    if hasattr(model, "eval"):
        model.eval()
    both = cells[(dm.masks[src][cells] > 0) & (dm.masks[dst][cells] > 0)]
    device = getattr(model, "device", torch.device("cpu"))
    chunks = []
    if hasattr(model, "predict_cells"):  # a whole-set model (contracts: embed_cells)
        if len(both):
            chunks = [np.asarray(model.predict_cells(dm, src, dst, both), dtype=np.float32)]
    else:
        sparse = bool(getattr(model, "accepts_sparse", False))
        for batch in dm.iter_batches(both, sparse=sparse):
            batch = {k: v.to(device) for k, v in batch.items()}
            chunks.append(model.translate(batch, src, dst).float().cpu().numpy())
    x = np.concatenate(chunks) if chunks else np.zeros((0, dm.inputs[dst].shape[1]), np.float32)
    feats = dm.data.modalities[dst].var_names[dm.transforms[dst].features].astype(str)
    obs = pd.DataFrame(index=dm.data.names[both].astype(str))
    a = ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=feats))
    a.layers["observed"] = dm.inputs[dst][both]
    a.uns["mmint"] = {"model": model.name, "src": src, "dst": dst, "space": dm.transform_names[dst]}
    return a


def write_outputs(
    model: Integrator, dm: PairedDataModule, folder: str | Path, prediction_cells: np.ndarray
) -> list[Path]:
    """Write ``outputs.h5mu`` (every cell of ``dm``, :func:`to_mudata`) and
    ``predictions/<src>_to_<dst>.h5ad`` for ``prediction_cells`` into ``folder``, each file
    atomically; return their paths."""
    folder = Path(folder)
    pred_dir = folder / "predictions"
    pred_dir.mkdir(parents=True, exist_ok=True)
    written = [folder / "outputs.h5mu"]
    tmp = folder / ".outputs.h5mu.tmp"
    to_mudata(model, dm).write(tmp)
    tmp.replace(written[0])
    if not getattr(model, "translates", True):  # e.g. totalVI / scANVI adapters: no translations
        return written
    for src in dm.modalities:
        for dst in dm.modalities:
            if src != dst:
                path = pred_dir / f"{src}_to_{dst}.h5ad"
                tmp = pred_dir / f".{path.name}.tmp"
                predict(model, dm, src, dst, prediction_cells).write_h5ad(tmp)
                tmp.replace(path)
                written.append(path)
    return written

"""AnnData / MuData views of a fitted model: latents in ``obsm``, groups in ``obs``,
cross-modal predictions as AnnData (the scverse-style user API)."""

from __future__ import annotations

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
    """All cells as a MuData: one modality per entry holding the model input in ``X``, with
    ``obsm['X_<model>']`` (joint latent), ``obsm['X_<model>_<modality>']``,
    ``obs['<model>_group']`` and ``obs['split']``."""
    import mudata as md

    md.set_options(pull_on_update=False)
    out = collect(model, dm, dm.cells("all"), translations=False)
    name = model.name
    obs = dm.data.obs.copy()
    obs["split"] = pd.Categorical(split_column(dm))
    if out.groups is not None:
        obs[f"{name}_group"] = pd.Categorical(out.groups.astype(str))
    mods = {}
    for m in dm.modalities:
        feats = dm.data.modalities[m].var_names[dm.transforms[m].features]
        a = ad.AnnData(X=dm.inputs[m], obs=obs.copy(), var=pd.DataFrame(index=feats.astype(str)))
        a.obsm[f"X_{name}"] = out.joint
        for mm, z in out.latents.items():
            a.obsm[f"X_{name}_{mm}"] = z
        mods[m] = a
    mdata = md.MuData(mods)
    mdata.obsm[f"X_{name}"] = out.joint
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
        for batch in dm.iter_batches(both):
            batch = {k: v.to(device) for k, v in batch.items()}
            chunks.append(model.translate(batch, src, dst).float().cpu().numpy())
    x = np.concatenate(chunks) if chunks else np.zeros((0, dm.inputs[dst].shape[1]), np.float32)
    feats = dm.data.modalities[dst].var_names[dm.transforms[dst].features].astype(str)
    obs = pd.DataFrame(index=dm.data.names[both].astype(str))
    a = ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=feats))
    a.layers["observed"] = dm.inputs[dst][both]
    a.uns["mmint"] = {"model": model.name, "src": src, "dst": dst, "space": dm.transform_names[dst]}
    return a

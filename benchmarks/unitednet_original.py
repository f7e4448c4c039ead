"""Run the ORIGINAL UnitedNet (a checkout given by path) on arrays prepared by mmint.

This file holds none of the original's code or text: it imports a local checkout of
github.com/LiuLab-Bioelectronics-Harvard/UnitedNet (GPL-3.0; tested at fff36fa) by path and
calls its public interface (``src.interface.UnitedNet``). Get a checkout outside this repository
as ``../shared/reference/harness/README.md`` says, and pass the folder that contains ``src/``.

Two loading fixes are applied from outside, as the reference harness does: the original's
Windows-only ``src/configs/__init__.py`` is bypassed by building the ``src.configs`` module
here, and its whole-module checkpoints are read with ``torch.load(weights_only=False)``.
"""

from __future__ import annotations

import copy
import glob
import importlib
import os
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: the original's task names for the stages mmint's protocols use
TASKS = {
    "clus_then_translation": "cross_model_prediction_clus",
    "unsupervised": "unsupervised_group_identification",
    "supervised": "supervised_group_identification",
}


@dataclass
class Original:
    """The imported original: its ``UnitedNet`` class, ``src.scripts``, ``src.data`` and configs."""

    UnitedNet: Any
    scripts: Any
    data: Any
    configs: Any


def import_original(path: str | Path) -> Original:
    """Import the original package ``src`` from the checkout at ``path``."""
    path = os.path.abspath(path)
    if not os.path.isdir(os.path.join(path, "src")):
        raise SystemExit(f"error: no src/ folder in {path} - pass the original checkout's root")
    if path not in sys.path:
        sys.path.insert(0, path)
    import src  # noqa: F401  (the original's package; empty __init__)

    cfg_dir = os.path.join(path, "src", "configs")
    mod = types.ModuleType("src.configs")
    mod.__path__ = [cfg_dir]
    mod.__package__ = "src.configs"
    sys.modules["src.configs"] = mod
    src.configs = mod
    for f in sorted(glob.glob(os.path.join(cfg_dir, "*.py"))):
        name = os.path.basename(f)[:-3]
        if name == "__init__":
            continue
        sub = importlib.import_module(f"src.configs.{name}")
        for k in dir(sub):
            if not k.startswith("_"):
                setattr(mod, k, getattr(sub, k))
    import src.data as data
    import src.scripts as scripts
    from src.interface import UnitedNet

    return Original(UnitedNet, scripts, data, mod)


def shipped_config(orig: Original, name: str, dims: list[int], n_groups: int) -> dict:
    """The original's shipped config ``name`` (e.g. ``patchseq_config``) for these input widths.

    Only the input and output widths of encoders, decoders and discriminators and the number
    of groups are set from the data; everything else is as shipped.
    """
    cfg = copy.deepcopy(getattr(orig.configs, name))
    for i, n in enumerate(dims):
        cfg["encoders"][i]["input"] = n
        cfg["decoders"][i]["output"] = n
        cfg["discriminators"][i]["input"] = n
    cfg["clusters"]["output"] = n_groups
    return cfg


def load_best(path: str | Path) -> Any:
    """A whole-module checkpoint of the original (torch >= 2.6 needs ``weights_only=False``)."""
    import torch

    model = torch.load(path, map_location="cpu", weights_only=False)
    model.device_in_use = "cpu"
    return model


def adatas(arrays: list[np.ndarray], labels: np.ndarray | None) -> list:
    """One AnnData per modality (the original's input), with ``obs['label']`` when given."""
    import anndata as ad
    import pandas as pd

    out = []
    for x in arrays:
        obs = pd.DataFrame(index=[str(i) for i in range(x.shape[0])])
        if labels is not None:
            obs["label"] = np.asarray(labels).astype(str)
        out.append(ad.AnnData(np.asarray(x, dtype=np.float32), obs=obs))
    return out


def outputs(orig: Original, model: Any, arrays: list[np.ndarray]) -> dict[str, Any]:
    """Translations ``[dst][src]``, predicted groups and fused latent of the best head, from
    the original's own inference path (eval mode, its input noise included)."""
    import torch

    loader = orig.data.create_dataloader(model, adatas(arrays, None), shuffle=False)
    model.eval()
    with torch.no_grad():
        translations, groups, fused = orig.scripts.run_through_dataloader(
            model, loader, infer_model=True
        )
    return {
        "translations": [[np.asarray(t) for t in row] for row in translations],
        "groups": np.asarray(groups),
        "joint": np.asarray(fused),
    }


def train_stage(
    orig: Original,
    model: Any | None,
    cfg: dict,
    save: Path,
    task: str,
    epochs: int,
    train: tuple[list[np.ndarray], np.ndarray],
    val: tuple[list[np.ndarray], np.ndarray | None] | None,
    init_heads: bool,
) -> Any:
    """One ``UnitedNet.train`` call (a stage) and the reload of its best checkpoint.

    Parameters
    ----------
    model
        The original's ``UnitedNet`` interface from the previous stage, or ``None`` for a new one.
    cfg
        The original's config (used for a new model).
    task
        A key of :data:`TASKS`.
    train, val
        ``(arrays per modality, labels)``; ``val=None`` lets the original validate on the
        training cells (its default).
    init_heads
        The original's ``init_classify=True``: fresh group heads before training.
    """
    save.mkdir(parents=True, exist_ok=True)
    if model is None:
        model = orig.UnitedNet(str(save), device="cpu", technique=copy.deepcopy(cfg))
    model.save_path = str(save)
    model.model.save_path = str(save)
    model.model.config["train_task"] = TASKS[task]
    model.model.config["train_epochs"] = int(epochs)
    val_ad = None if val is None else adatas(val[0], val[1])
    model.train(adatas(train[0], train[1]), adatas_val=val_ad, init_classify=init_heads)
    model.model = load_best(save / "train_best.pt")
    return model


def _mlp(
    n_in: int,
    hidden: list[int],
    n_out: int,
    *,
    dropout: float = 0.0,
    first_only: bool = False,
    bn: bool = False,
    ln: bool = False,
    out_act: str | None = None,
    out_bn: bool = False,
    out_ln: bool = False,
    binary: bool | None = None,
) -> dict:
    """One network in the original's config format (per-layer lists)."""
    n = len(hidden) + 1
    drops = [dropout if (i == 0 or not first_only) and i < n - 1 else 0.0 for i in range(n)]
    cfg = {
        "input": n_in,
        "hiddens": list(hidden),
        "output": n_out,
        "use_biases": [True] * n,
        "dropouts": drops,
        "activations": ["relu"] * (n - 1) + [out_act],
        "use_batch_norms": [bn] * (n - 1) + [out_bn],
        "use_layer_norms": [ln] * (n - 1) + [out_ln],
    }
    if binary is not None:
        cfg["is_binary_input"] = binary
    return cfg


def config_from_mmint(hp: dict, dims: list[int], binary: list[bool], batch_size: int) -> dict:
    """The original's config with the networks of an mmint UnitedNet's hyper-parameters.

    For data the original shipped no config for (mmint's synthetic data): every width, norm,
    dropout, head and learning rate is taken from ``hp`` (a built model's ``hparams``, modality
    order as ``dims``), so that both implementations train the same networks.
    """
    mods = list(hp["spec"]["modalities"])
    d = int(hp["latent_dim"])
    drop = hp["dropout"] if isinstance(hp["dropout"], dict) else dict.fromkeys(mods, hp["dropout"])
    first, bn, ln = bool(hp["dropout_first_only"]), bool(hp["batch_norm"]), bool(hp["layer_norm"])
    lat = hp["latent_norm"]
    enc = [
        _mlp(
            n,
            hp["encoder_hidden"][m],
            d,
            dropout=float(drop.get(m, 0.0)),
            first_only=first,
            bn=bn,
            ln=ln,
            out_act=hp["latent_activation"],
            out_bn=lat == "batch",
            out_ln=lat == "layer",
            binary=b,
        )
        for m, n, b in zip(mods, dims, binary, strict=True)
    ]
    dec = [
        _mlp(d, hp["decoder_hidden"][m], n, out_act="sigmoid" if b else None)
        for m, n, b in zip(mods, dims, binary, strict=True)
    ]
    disc = [
        _mlp(
            n,
            hp["discriminator_hidden"][m],
            int(hp["discriminator_out_dim"]),
            out_act="sigmoid",
            out_ln=hp["discriminator_out_norm"] == "layer",
        )
        for m, n in zip(mods, dims, strict=True)
    ]
    proj = _mlp(d, [], int(hp["projector_dim"]), out_act="relu", out_ln=bool(hp["projector_norm"]))
    noise = hp["noise_level"]
    return {
        "train_batch_size": batch_size,
        "finetune_batch_size": batch_size,
        "transfer_batch_size": batch_size,
        "train_epochs": 1,
        "finetune_epochs": 1,
        "transfer_epochs": 1,
        "train_task": TASKS["unsupervised"],
        "finetune_task": TASKS["unsupervised"],
        "transfer_task": TASKS["unsupervised"],
        "train_loss_weight": None,
        "finetune_loss_weight": None,
        "transfer_loss_weight": None,
        "lr": float(hp["lr"]),
        "checkpoint": 10**9,
        "n_head": int(hp["n_head"]),
        "fuser_type": "WeightedFeatureMean"
        if hp["fuser"] == "feature_weighted_mean"
        else "WeightedMean",
        "noise_level": [
            float(noise.get(m, 0.0) if isinstance(noise, dict) else noise) for m in mods
        ],
        "encoders": enc,
        "latent_projector": None if hp["latent_projector"] == "identity" else _mlp(d, [], d),
        "decoders": dec,
        "discriminators": disc,
        "projectors": proj,
        "clusters": {**_mlp(int(hp["projector_dim"]), [], 0), "use_biases": [False]},
    }

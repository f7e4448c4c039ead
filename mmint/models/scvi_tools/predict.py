"""Cross-modal predictions of scvi-tools models in mmint's model-input spaces.

Every ``(src, dst)`` prediction is made from ``src`` alone: the other modalities' counts are
zeroed (MULTIVI then treats them as missing, its mask being ``row sum > 0``; totalVI, which
has one joint encoder, simply sees zeros), and the generative outputs at the posterior mean of
the latent are converted to mmint's model-input spaces:

- RNA: ``px_scale`` (per-cell proportions, softmax over genes) -> ``log1p(1e4 * p)``
  (mmint's ``lognorm``; the same conversion mmint's decoder uses);
- ATAC (MULTIVI): ``p * sigmoid(region_factors)`` (the probability MULTIVI's likelihood gives
  an observed peak, without the cell's own accessibility factor, which the source modality does
  not give); ``p`` alone (scvi-tools' ``get_normalized_accessibility`` default) is kept as
  ``<atac>_noregion``;
- ADT: expected counts of the background/foreground mixture at the background's median rate,
  ``pi * exp(back_alpha) + (1 - pi) * exp(back_alpha) * fore_scale`` with
  ``pi = sigmoid(mixing)`` -> ``log1p``, centred per cell (mmint's ``clr``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from mmint.models.scvi_tools.data import ATAC, PROTEIN, RNA

#: ``(module, tensors) -> {role: prediction}`` at the posterior mean of the latent
Generate = Callable[[Any, dict], dict[str, Any]]


def rna_input(px_scale):
    """Per-cell gene proportions -> mmint's ``lognorm`` space."""
    import torch

    return torch.log1p(px_scale * 1e4)


def protein_input(py: dict):
    """totalVI-style protein mixture parameters -> mmint's ``clr`` space."""
    import torch

    back = torch.exp(py["back_alpha"])
    pi = torch.sigmoid(py["mixing"])
    y = torch.log1p(pi * back + (1 - pi) * back * py["fore_scale"])
    return y - y.mean(-1, keepdim=True)


def multivi_generate(module: Any, tensors: dict) -> dict[str, Any]:
    """MULTIVI's outputs at ``use_z_mean=True``."""
    import torch

    _, gen = module.forward(
        tensors=tensors, generative_kwargs={"use_z_mean": True}, compute_loss=False
    )
    out = {RNA: rna_input(gen["px_scale"])}
    if "p" in gen and module.n_input_regions > 0:
        region = getattr(module, "region_factors", None)
        out[ATAC + "_noregion"] = gen["p"]
        out[ATAC] = gen["p"] * torch.sigmoid(region) if region is not None else gen["p"]
    if gen.get("py_") is not None:
        out[PROTEIN] = protein_input(gen["py_"])
    return out


def totalvi_generate(module: Any, tensors: dict) -> dict[str, Any]:
    """totalVI's outputs with the latent at its posterior mean."""
    inference = module.inference(**module._get_inference_input(tensors))
    inputs = module._get_generative_input(tensors, inference)
    inputs["z"] = inference["qz"].loc
    gen = module.generative(**inputs)
    return {RNA: rna_input(gen["px_"]["scale"]), PROTEIN: protein_input(gen["py_"])}


def predictions(
    model: Any,
    roles: dict[str, str],
    cells: np.ndarray,
    generate: Generate,
    batch_size: int = 256,
) -> dict[tuple[str, str], np.ndarray]:
    """``{(src, dst): prediction}`` for ``cells`` (rows in their order), for every pair of
    modalities in ``roles``, plus ``(src, <atac>_noregion)`` for MULTIVI's ATAC."""
    import torch
    from scvi import REGISTRY_KEYS

    key_of = {
        RNA: REGISTRY_KEYS.X_KEY,
        ATAC: REGISTRY_KEYS.ATAC_X_KEY,
        PROTEIN: REGISTRY_KEYS.PROTEIN_EXP_KEY,
    }
    module = model.module
    module.eval()
    out: dict[tuple[str, str], list[np.ndarray]] = {}
    loader = model._make_data_loader(adata=model.adata, indices=cells, batch_size=batch_size)
    with torch.inference_mode():
        for tensors in loader:
            for src_role, src in roles.items():
                t = dict(tensors)
                for role in roles:
                    if role != src_role:
                        t[key_of[role]] = torch.zeros_like(t[key_of[role]])
                for role, y in generate(module, t).items():
                    base = role.removesuffix("_noregion")
                    if base not in roles:  # an output of a modality the data does not have
                        continue
                    dst = roles[base] + role[len(base) :]
                    out.setdefault((src, dst), []).append(y.cpu().numpy().copy())
    return {k: np.concatenate(v) for k, v in out.items()}

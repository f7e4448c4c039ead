"""Explainable sub-networks: plain ``nn.Module`` maps from model inputs to what is explained.

Each model exposes a documented hook (see ``contracts.md``); this module turns the hooks into
modules that :mod:`mmint.explain.relevance` can hand to shap:

- :func:`translator` -- ``x_src (n, p_src) -> x_hat_dst (n, p_dst)`` in dst's model-input space
  (UnitedNet: ``TranslationNet``; CVQVAE: ``CVQVAE.translator``; MultiVI: the posterior mean of
  src's encoder decoded by dst's decoder, built here; PCA: its ridge map as a linear module);
- :func:`group_network` -- ``[x_m1, x_m2, ...] (n, sum p_m) -> group probabilities (n, K)``
  (UnitedNet's ``GroupNet``; ``None`` for models without a group head);
- :class:`Columns` -- keeps only some outputs, so that shap explains just those.

Where a hook applies a function (``torch.sigmoid``, ``torch.softmax``) outside a module, the
module built here puts it in an ``nn.Sigmoid`` / ``nn.Softmax`` module instead, so that shap's
``DeepExplainer`` sees every non-linearity (it only rescales gradients of modules it knows).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from mmint import keys
from mmint.errors import InputError
from mmint.models.base import Integrator


class Columns(nn.Module):
    """``net`` with only the output columns ``index`` (a 2-D output ``(n, len(index))``)."""

    def __init__(self, net: nn.Module, index: list[int] | np.ndarray) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("index", torch.as_tensor(np.asarray(index), dtype=torch.long))

    def forward(self, x: Tensor) -> Tensor:
        """The selected outputs of ``net(x)``."""
        return self.net(x).index_select(1, self.index)


class _MultiVITranslator(nn.Module):
    """MultiVI: src's posterior mean, decoded by dst (``MultiVI.translate`` for one batch)."""

    def __init__(self, module: nn.Module, src: str, dst: str, batch_code: int = 0) -> None:
        super().__init__()
        self.module, self.src, self.dst, self.batch_code = module, src, dst, batch_code

    def forward(self, x: Tensor) -> Tensor:
        """Prediction of dst from src's model input ``x``."""
        z = self.module.encoders[self.src](x)[0]
        batch = {keys.BATCH: torch.full((x.shape[0],), self.batch_code, device=x.device)}
        return self.module.predict(z, batch, self.dst)


def translator(model: Integrator, src: str, dst: str, batch_code: int = 0) -> nn.Module:
    """The ``src -> dst`` translation of ``model`` as a module on src's model input.

    Parameters
    ----------
    model
        A fitted integrator (UnitedNet, CVQVAE, MultiVI or the PCA baseline).
    src, dst
        Modality names (``src == dst`` is the reconstruction).
    batch_code
        Batch used by decoders that take the batch as a covariate (UnitedNet with
        ``batch_correction``, CVQVAE with ``decoder_batch``, MultiVI with several batches).
    """
    for m in (src, dst):
        if m not in model.modalities:
            raise InputError(
                f"unknown modality '{m}'", "explain.pairs", f"use one of {model.modalities}"
            )
    name = getattr(model, "name", type(model).__name__)
    if name == "unitednet":
        from mmint.models.unitednet import TranslationNet

        net: nn.Module = TranslationNet(model.module, src, dst, batch_code=batch_code)
    elif name == "cvqvae":
        net = model.translator(src, dst, batch_code=batch_code)
    elif name == "multivi":
        net = _MultiVITranslator(model.module, src, dst, batch_code)
    elif hasattr(model, "translator"):
        net = model.translator(src, dst)
    else:
        raise InputError(
            f"model '{name}' has no translation hook for explain",
            "mmint.explain.subnets.translator",
            "use a unitednet, cvqvae, multivi or pca run",
        )
    return net.eval()


def group_network(model: Integrator) -> nn.Module | None:
    """Concatenated model inputs (modality order) -> the best head's group probabilities.

    ``None`` when the model has no group head (the baselines, UnitedNet ``pgc_only``). The
    group layer's rows are L2-normalised first, as before every forward of the model.
    """
    if getattr(model, "name", None) != "unitednet" or model.task == "pgc_only":
        return None
    from mmint.models.unitednet import GroupNet

    return GroupNet(model.module).eval()


def group_input_widths(model: Integrator) -> dict[str, int]:
    """Input width per modality (the blocks of :func:`group_network`'s input)."""
    return {m: int(model.spec.n_features[m]) for m in model.modalities}

"""Explainable sub-networks: plain ``nn.Module`` maps from model inputs to what is explained.

Each model implements the explain hooks of :class:`~mmint.models.base.Integrator` in its own
package; this module asks for them (never for a model by name) and hands the modules to
:mod:`mmint.explain.relevance`:

- :func:`translator` -- ``x_src (n, p_src) -> x_hat_dst (n, p_dst)`` in dst's model-input space
  (:meth:`Integrator.translator`);
- :func:`group_network` -- ``[x_m1, x_m2, ...] (n, sum p_m) -> group probabilities (n, K)``
  (:meth:`Integrator.group_network`; ``None`` for models without a group head);
- :class:`Columns` -- keeps only some outputs, so that shap explains just those.

The hooks put every non-linearity in a module (``nn.Sigmoid``, ``nn.Softmax``), so that shap's
``DeepExplainer`` sees it (it only rescales gradients of modules it knows).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

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


def translator(model: Integrator, src: str, dst: str, batch_code: int = 0) -> nn.Module:
    """The ``src -> dst`` translation of ``model`` as a module on src's model input.

    Parameters
    ----------
    model
        A fitted integrator that implements :meth:`Integrator.translator`.
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
    return model.translator(src, dst, batch_code=batch_code).eval()


def group_network(model: Integrator) -> nn.Module | None:
    """Concatenated model inputs (modality order) -> the best head's group probabilities.

    ``None`` when the model has no group head (the baselines, UnitedNet ``pgc_only``).
    """
    net = model.group_network()
    return None if net is None else net.eval()


def group_input_widths(model: Integrator) -> dict[str, int]:
    """Input width per modality (the blocks of :func:`group_network`'s input)."""
    return {m: int(model.spec.n_features[m]) for m in model.modalities}

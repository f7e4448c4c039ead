"""UnitedNet's sub-networks for explainers: a translation ``x_src -> x_hat_dst`` and the best
head's group probabilities from the concatenated inputs."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from mmint.models.unitednet.module import UnitedNetModule
from mmint.nn.batch import AppendConstant


class TranslationNet(nn.Sequential):
    """``x_src -> x_hat_dst`` (probabilities for a binary target): a hook for explainers.

    A plain sequence of modules (encoder, [batch covariate], decoder, [sigmoid]), so that
    explainers that walk the module graph (shap's DeepExplainer) can use it as it is. With
    batch-conditioned decoders the covariate is fixed: batch ``batch_code``, or with ``None``
    the uniform mix of the batches (a prediction averaged over batches in its input).
    """

    def __init__(
        self, module: UnitedNetModule, src: str, dst: str, batch_code: int | None = None
    ) -> None:
        k = module.n_covariates
        layers: dict[str, nn.Module] = {"encoder": module.encoders[src]}
        if k:
            cov = torch.full((k,), 1.0 / k)
            if batch_code is not None:
                cov = torch.zeros(k)
                cov[batch_code] = 1.0
            layers["covariate"] = AppendConstant(cov)
        layers["decoder"] = module.decoders[dst]
        if module.binary[dst]:
            layers["sigmoid"] = nn.Sigmoid()
        super().__init__(OrderedDict(layers))
        self.binary = module.binary[dst]

    @property
    def cov(self) -> Tensor:
        """The decoder covariate row ``(1, n_batches)`` (``(1, 0)`` without one)."""
        if "covariate" in self._modules:
            return self.covariate.row
        return torch.zeros(1, 0)


class GroupNet(nn.Module):
    """Concatenated inputs of all modalities -> the best head's group probabilities.

    A hook for explainers; every cell is taken to have every modality. It holds only the
    encoders and the best head (chosen, and its group-layer rows L2-normalised as before
    every forward of the model, when the hook is built), with the softmax as a module, so
    that shap's DeepExplainer can walk it.
    """

    def __init__(self, module: UnitedNetModule) -> None:
        super().__init__()
        head = module.heads[module.best()]
        head.normalize_()
        self.encoders = nn.ModuleList(module.encoders[m] for m in module.modalities)
        self.widths = [e.net[0].in_features for e in self.encoders]
        self.fuser, self.projector, self.classifier = head.fuser, head.projector, head.classifier
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x: Tensor) -> Tensor:
        """Group probabilities ``(B, K)``."""
        parts = torch.split(x, self.widths, dim=1)
        z = torch.stack([e(p) for e, p in zip(self.encoders, parts, strict=True)], dim=1)
        mask = x.new_ones(x.shape[0], len(self.widths))
        return self.softmax(self.classifier(self.projector(self.fuser(z, mask))))

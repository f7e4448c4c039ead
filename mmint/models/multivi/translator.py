"""MultiVI's explain hook: ``src``'s posterior mean decoded by ``dst`` as one module."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmint import keys
from mmint.models.multivi.module import MultiVAE


class Translator(nn.Module):
    """:meth:`MultiVI.translate <mmint.models.multivi.plan.MultiVI.translate>` for cells of one
    batch (``batch_code``), as a module on ``src``'s model input."""

    def __init__(self, module: MultiVAE, src: str, dst: str, batch_code: int = 0) -> None:
        super().__init__()
        self.module, self.src, self.dst, self.batch_code = module, src, dst, batch_code

    def forward(self, x: Tensor) -> Tensor:
        """Prediction of ``dst`` from ``src``'s model input ``x``."""
        z = self.module.encoders[self.src](x)[0]
        batch = {keys.BATCH: torch.full((x.shape[0],), self.batch_code, device=x.device)}
        return self.module.predict(z, batch, self.dst)

"""CVQVAE-style cross-modal VQ-VAE (Liu, Greenberg & Shomorony, MLCB 2022)."""

from mmint.models.cvqvae.module import CVQVAELoss, CVQVAEModule, InputProjection
from mmint.models.cvqvae.plan import CVQVAE

__all__ = ["CVQVAE", "CVQVAELoss", "CVQVAEModule", "InputProjection"]

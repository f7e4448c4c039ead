"""CVQVAE-style cross-modal VQ-VAE (Liu, Greenberg & Shomorony, MLCB 2022)."""

from mmint.models.cvqvae.module import CVQVAEModule, InputProjection
from mmint.models.cvqvae.plan import CVQVAE

__all__ = ["CVQVAE", "CVQVAEModule", "InputProjection"]

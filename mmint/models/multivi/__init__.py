"""MultiVI-style integrator: per-modality Gaussian encoders mixed into one joint posterior."""

from mmint.models.multivi.module import MultiVAE
from mmint.models.multivi.plan import MultiVI

__all__ = ["MultiVAE", "MultiVI"]

"""UnitedNet: multi-task cross-modal prediction and group identification (Tang et al. 2023).

``module`` holds the networks and loss computations, ``losses`` the pure loss functions and
``plan`` the LightningModule with the schedules. See ``docs/unitednet.md``.
"""

from mmint.models.unitednet.hooks import GroupNet, TranslationNet
from mmint.models.unitednet.module import UnitedNetModule
from mmint.models.unitednet.plan import UnitedNet

__all__ = ["GroupNet", "TranslationNet", "UnitedNet", "UnitedNetModule"]

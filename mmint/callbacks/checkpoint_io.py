"""Lightning checkpoints written atomically (:func:`mmint.io.atomic_path`): a fit killed while
it saves ``last.ckpt`` leaves the previous one whole, so the rerun resumes from it; a failed
save is one :class:`mmint.io.WriteFailed` line naming the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from mmint.io import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` into a temporary file beside the checkpoint, then a rename (Lightning's
    own save goes through a temporary file in the system's temp folder and a copy)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        """Save ``checkpoint`` at ``path`` (``storage_options`` are not supported)."""
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        with atomic_path(Path(path)) as tmp:
            torch.save(checkpoint, tmp)

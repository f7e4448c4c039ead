"""A brief fit of any model on a data module, quiet (for the data-layer tests)."""

from __future__ import annotations

import lightning as L


def fit_briefly(model, dm, epochs: int = 1):
    """``epochs`` epochs through Lightning (no logger, checkpoints or sanity check) for a model
    that trains in epochs, else its ``fit_data``; returns the model."""
    if not model.trains_in_epochs:
        return model.fit_data(dm)
    L.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        accelerator="cpu",
    ).fit(model, datamodule=dm)
    return model

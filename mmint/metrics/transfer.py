"""Label-transfer metrics (``holdout_batch`` splits): accuracy and macro F1."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score


def transfer_scores(true_labels: np.ndarray, pred_labels: np.ndarray) -> dict[str, float]:
    """Accuracy and macro F1 of labels transferred to the held-out cells.

    Parameters
    ----------
    true_labels
        True labels of the scored cells, shape (n_cells,).
    pred_labels
        Transferred (predicted) labels, shape (n_cells,).

    Returns
    -------
    dict
        ``{"transfer_accuracy", "transfer_macro_f1"}``. Macro F1 is
        :func:`sklearn.metrics.f1_score` with ``average="macro"``: the unweighted mean F1 over
        every label present in the true **or** the predicted labels (a label predicted but
        absent from the truth scores F1 = 0), with ``zero_division=0``.
    """
    true_labels = np.asarray(true_labels).ravel()
    pred_labels = np.asarray(pred_labels).ravel()
    if true_labels.shape != pred_labels.shape:
        raise ValueError(
            f"true and predicted labels differ in length: {true_labels.size} vs {pred_labels.size}"
        )
    if true_labels.size == 0:
        raise ValueError("no cells to score")
    return {
        "transfer_accuracy": float(accuracy_score(true_labels, pred_labels)),
        "transfer_macro_f1": float(
            f1_score(true_labels, pred_labels, average="macro", zero_division=0)
        ),
    }

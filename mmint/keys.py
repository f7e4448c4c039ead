"""Names of the entries in a batch dict (the contracts' batch keys), defined in one place."""

INDEX = "index"
BATCH = "batch"
LABEL = "label"
UNKNOWN_LABEL = -1
#: training batches only: the index of the pass over the training cells within the epoch
#: (models with several passes per epoch, e.g. UnitedNet's epoch alternation, run the phase
#: of that pass)
PHASE = "phase"


def counts_key(modality: str) -> str:
    """Key of the raw counts of ``modality`` (present for ``counts`` modalities only)."""
    return f"counts/{modality}"


def mask_key(modality: str) -> str:
    """Key of the 0/1 float mask saying which cells of the batch have ``modality``."""
    return f"mask/{modality}"

"""Names of the entries in a batch dict (the contracts' batch keys), defined in one place."""

INDEX = "index"
BATCH = "batch"
LABEL = "label"
UNKNOWN_LABEL = -1


def counts_key(modality: str) -> str:
    """Key of the raw counts of ``modality`` (present for ``counts`` modalities only)."""
    return f"counts/{modality}"


def mask_key(modality: str) -> str:
    """Key of the 0/1 float mask saying which cells of the batch have ``modality``."""
    return f"mask/{modality}"

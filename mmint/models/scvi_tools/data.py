"""mmint's cells and features as the MuData / AnnData scvi-tools models are set up on."""

from __future__ import annotations

from typing import Any

import numpy as np

from mmint.errors import InputError

#: scvi-tools' setup_mudata role of a modality
RNA, ATAC, PROTEIN = "rna_layer", "atac_layer", "protein_layer"


def modality_roles(dm: Any) -> dict[str, str]:
    """``{role: modality}``: counts with the ``clr`` transform are protein (ADT), other counts
    RNA, binary modalities ATAC; a continuous modality has no scvi-tools role."""
    roles: dict[str, str] = {}
    for m, mod in dm.data.modalities.items():
        if mod.kind == "binary":
            role = ATAC
        elif mod.kind == "counts" and dm.transform_names[m] == "clr":
            role = PROTEIN
        elif mod.kind == "counts":
            role = RNA
        else:
            raise InputError(
                f"scvi-tools models take count or binary modalities; '{m}' is {mod.kind}",
                f"data modality {m}",
                "use a dataset whose modalities are counts (RNA, ADT) or binary (ATAC)",
            )
        if role in roles:
            raise InputError(
                f"two modalities ({roles[role]}, {m}) would both be the {role.split('_')[0]}",
                "data modalities",
                "give scvi-tools one RNA and at most one ATAC and one ADT modality",
            )
        roles[role] = m
    if RNA not in roles:
        raise InputError(
            "no RNA counts modality", "data modalities", "scvi-tools models need RNA counts"
        )
    return roles


def raw_matrix(dm: Any, m: str):
    """The raw values mmint's model input of ``m`` was made from, as float32 CSR: counts for
    RNA and ADT, ``x > 0`` for binary (mmint's binary input)."""
    import scipy.sparse as sp

    mod = dm.data.modalities[m]
    x = sp.csr_matrix(dm.transforms[m].select(mod.x), dtype=np.float32)
    return (x > 0).astype(np.float32) if mod.kind == "binary" else x


def batch_column(dm: Any):
    """The batch of every cell as a categorical of batch names."""
    import pandas as pd

    return pd.Categorical(np.asarray(dm.batch_names)[dm.batch_codes])


def build_mudata(dm: Any, dense_protein: bool = False) -> tuple[Any, dict[str, str]]:
    """MuData of the same cells and features mmint's models see (raw RNA counts, binarised
    ATAC, raw ADT counts; the batch in the RNA modality's ``obs``) and the roles
    (``dense_protein``: the ADT counts as a dense array, which totalVI's prior fit needs)."""
    import anndata as ad
    import mudata as md
    import pandas as pd

    md.set_options(pull_on_update=False)
    roles = modality_roles(dm)
    names = dm.data.names.astype(str)
    mods = {}
    for role, m in roles.items():
        feats = np.asarray(dm.data.modalities[m].var_names)[dm.transforms[m].features].astype(str)
        x = raw_matrix(dm, m)
        x = x.toarray() if dense_protein and role == PROTEIN else x
        a = ad.AnnData(x, obs=pd.DataFrame(index=names), var=pd.DataFrame(index=feats))
        if role == RNA:
            a.obs["batch"] = batch_column(dm)
        mods[m] = a
    return md.MuData(mods), roles

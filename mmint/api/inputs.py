"""Data given in memory (a MuData, AnnData per modality, a :class:`~mmint.data.PairedData`) as
the command line's ``data=custom`` files, and keyword overrides as Hydra overrides.

A run reads its data from files, as ``mmint fit data=custom 'data.paths=...'`` does: the API
writes in-memory data next to the run (``<run>/input/``), so the run directory, its
``config.yaml`` and its metrics are those of the command line on the same files.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmint.errors import InputError

#: a keyword override ``model__max_epochs=3`` is the command line's ``model.max_epochs=3``
SEPARATOR = "__"


def to_overrides(overrides: Mapping[str, Any]) -> list[str]:
    """Keyword overrides as Hydra override strings.

    ``model__max_epochs=3`` and ``**{"model.max_epochs": 3}`` both give ``model.max_epochs=3``;
    a leading ``+`` or ``++`` in a dotted key is kept (``**{"+data.n_top_features": ...}``).
    Values are Python values (lists, dicts, None, strings with any characters).
    """
    from mmint.benchmark.grid import format_value

    out = []
    for key, value in overrides.items():
        bare = key.lstrip("+~")
        prefix = key[: len(key) - len(bare)]
        out.append(f"{prefix}{bare.replace(SEPARATOR, '.')}={format_value(value)}")
    return out


def _write_anndatas(adatas: Mapping[str, Any], folder: Path) -> dict[str, str]:
    paths = {}
    folder.mkdir(parents=True, exist_ok=True)
    for m, a in adatas.items():
        if isinstance(a, str | Path):
            paths[str(m)] = str(Path(a).expanduser().absolute())
            continue
        path = folder / f"{m}.h5ad"
        a.write_h5ad(path)
        paths[str(m)] = str(path)
    return paths


def _paired_overrides(data: Any, folder: Path) -> list[str]:
    """A :class:`~mmint.data.PairedData` written as one ``.h5ad`` per modality (the cells that
    have the modality), with its kinds, keys and join."""
    import anndata as ad

    from mmint.benchmark.grid import format_value
    from mmint.data.backed import is_lazy

    adatas = {}
    for m, mod in data.modalities.items():
        if is_lazy(mod.x):
            raise InputError(
                f"modality '{m}' is read from its file (data.backed)",
                mod.where or m,
                "pass the files instead: {modality: 'file.h5ad'} with data__backed=True",
            )
        rows = mod.present.nonzero()[0]
        adatas[m] = ad.AnnData(
            X=mod.x[rows], obs=data.obs.iloc[rows].copy(), var=mod.var_names.to_frame(index=True)
        )
    paths = _write_anndatas(adatas, folder)
    complete = all(mod.present.all() for mod in data.modalities.values())
    return [
        "data=custom",
        f"data.paths={format_value(paths)}",
        f"data.kinds={format_value({m: mod.kind for m, mod in data.modalities.items()})}",
        f"data.label_key={format_value(data.label_key)}",
        f"data.batch_key={format_value(data.batch_key)}",
        f"data.class_key={format_value(data.class_key)}",
        f"data.exclude_labels={format_value(list(data.exclude_labels))}",
        f"data.join={'strict' if complete else 'outer'}",
    ]


def data_choice(data: Any) -> str:
    """The ``data=`` config choice ``data`` gets: its name for a dataset name, else
    ``custom`` (nothing is written)."""
    if isinstance(data, str) and not data.endswith((".h5mu", ".h5ad")):
        from mmint.data.registry import dataset_config

        dataset_config(data)  # an unknown name: the command line's one-line error
        return data
    return "custom"


def data_overrides(data: Any, folder: str | Path) -> list[str]:
    """The command line's ``data=...`` overrides for ``data``; in-memory data is written to
    ``folder`` first.

    Parameters
    ----------
    data
        A dataset name (``synthetic``, a shared dataset), a ``.h5mu`` path, a MuData, a
        ``{modality: AnnData or .h5ad path}`` mapping, or a :class:`~mmint.data.PairedData`.
        For a MuData, files and AnnData the kinds and keys are overrides as on the command
        line (``data__kinds={...}``, ``data__label_key=...``).
    folder
        Where in-memory data is written (``<run>/input``).
    """
    from mmint.benchmark.grid import format_value

    folder = Path(folder)
    if isinstance(data, Path) or (isinstance(data, str) and data.endswith((".h5mu", ".h5ad"))):
        return [
            "data=custom",
            f"data.paths={format_value(str(Path(data).expanduser().absolute()))}",
        ]
    if isinstance(data, str):
        from mmint.data.registry import dataset_config

        dataset_config(data)  # an unknown name: the command line's one-line error
        return [f"data={data}"]
    if isinstance(data, Mapping):
        return ["data=custom", f"data.paths={format_value(_write_anndatas(data, folder))}"]
    if hasattr(data, "mod") and hasattr(data, "write_h5mu"):  # a MuData
        import mudata as md

        md.set_options(pull_on_update=False)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "data.h5mu"
        data.write_h5mu(path)
        return ["data=custom", f"data.paths={format_value(str(path))}"]
    if hasattr(data, "modalities") and hasattr(data, "obs"):  # a PairedData
        return _paired_overrides(data, folder)
    raise InputError(
        f"cannot read data of type {type(data).__name__}",
        "data",
        "pass a MuData, a {modality: AnnData} dict, a PairedData or a dataset name",
    )


def relabel(err: InputError, folder: str | Path) -> InputError:
    """``err`` with the files written to ``folder`` named as what the user gave:
    ``<folder>/data.h5mu`` -> ``MuData``, ``<folder>/<m>.h5ad`` -> ``AnnData 'm'``."""
    import re

    base = re.escape(str(Path(folder)))

    def named(text: str) -> str:
        text = re.sub(base + r"/data\.h5mu", "MuData", text)
        return re.sub(base + r"/([^/\s,;()]+)\.h5ad", r"AnnData '\1'", text)

    return InputError(named(err.what), named(err.where), named(err.fix))

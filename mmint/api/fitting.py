"""``mmint.fit`` and ``mmint.validate``: ``mmint fit`` / ``mmint validate`` from Python.

The config is composed from the same tree and overrides as the command line
(:func:`mmint.cli.compose_run`); the fit is :func:`mmint.fit.run_fit`, so a run written here
equals the command line's on the same data and seed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmint.api.inputs import data_choice, data_overrides, relabel, to_overrides
from mmint.errors import InputError

if TYPE_CHECKING:
    from mmint.api.run import Run


def compose_config(overrides: list[str], command: str = "fit") -> dict[str, Any]:
    """The config ``mmint <command> <overrides>`` runs with, as a plain dict.

    Raises
    ------
    mmint.errors.InputError
        With the command line's one line: an unknown model or dataset, a key that does not
        exist, a value Hydra cannot parse.
    """
    from mmint.cli import _check_group_choices, compose_run

    _check_group_choices(overrides)
    return compose_run([f"command={command}", *overrides])


def fit(
    data: Any = "synthetic",
    model: str = "unitednet",
    seed: int = 0,
    out: str | Path | None = None,
    **overrides: Any,
) -> Run:
    """Fit one model on one dataset and write its run directory, as ``mmint fit`` does.

    Parameters
    ----------
    data
        A dataset name (``"synthetic"``, a shared dataset), a MuData, a ``{modality:
        AnnData}`` dict (or ``.h5ad`` paths), a ``.h5mu`` path, or a
        :class:`~mmint.data.PairedData`. In-memory data is written to ``<out>/input/`` and read
        back as ``data=custom`` (the run's ``config.yaml`` names those files).
    model
        ``unitednet``, ``multivi``, ``cvqvae``, ``pca`` or a comparator (``mmint/conf/model``).
    seed
        Split, initialisation and metric seed.
    out
        The run directory; ``None`` writes a new temporary folder (``Run.dir`` says where).
        A folder holding an unfinished run of the same config resumes it.
    **overrides
        The command line's ``key=value`` overrides, with ``__`` for the dot:
        ``model__max_epochs=50`` is ``model.max_epochs=50``, ``logger="csv"`` is
        ``logger=csv``, ``data__kinds={"rna": "counts", "adt": "counts"}`` is
        ``'data.kinds={rna: counts, adt: counts}'``. Dotted keys work through a dict:
        ``**{"model.max_epochs": 50, "+data.n_top_features": {"rna": 2000}}``.

    Returns
    -------
    Run
        The finished run (its metrics, latents and files).

    Raises
    ------
    mmint.errors.InputError
        Bad arguments or data, with the one line the command line prints after ``error:``.

    Examples
    --------
    >>> run = mmint.fit(mdata, model="multivi", model__max_epochs=50,
    ...                 data__kinds={"rna": "counts", "atac": "binary"},
    ...                 data__label_key="cell_type")  # doctest: +SKIP
    >>> run.metrics["ari"], run.write_to(mdata)  # doctest: +SKIP
    """
    from mmint.api.run import Run
    from mmint.fit import run_fit

    run_dir = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix=f"mmint_{model}_"))
    given = [f"model={model}", f"seed={int(seed)}", *to_overrides(overrides)]
    compose_config([f"data={data_choice(data)}", *given])  # bad keys fail before data is written
    folder = run_dir / "input"
    try:
        cfg = compose_config([*data_overrides(data, folder), *given])
        run_fit(cfg, run_dir, announce=lambda line: print(line, flush=True))
    except InputError as err:
        raise relabel(err, folder) from None
    run = Run(run_dir)
    for line in run.metrics.get("warnings") or []:
        print(f"warning: {line}")
    return run


def validate(data: Any = "synthetic", **overrides: Any) -> str:
    """Load the data and build the split as ``fit`` would, as ``mmint validate`` does;
    return its summary (modalities, cells, labels, batches, split sizes). Writes nothing
    (in-memory data goes through a temporary folder).

    Parameters
    ----------
    data, **overrides
        As for :func:`fit`.

    Raises
    ------
    mmint.errors.InputError
        When the data is not usable, with the command line's one line.
    """
    from mmint.cli import validate as validate_config

    given = to_overrides(overrides)
    compose_config([f"data={data_choice(data)}", *given], "validate")
    with tempfile.TemporaryDirectory(prefix="mmint_validate_") as folder:
        try:
            cfg = compose_config([*data_overrides(data, Path(folder)), *given], "validate")
            return validate_config(cfg)
        except InputError as err:
            raise relabel(err, folder) from None

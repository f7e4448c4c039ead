"""``mmint explain run=<run directory> [explain.<option>=...]``.

The ``mmint`` entry point composes the root config with Hydra and calls :func:`main`. Options
are the keys of :data:`mmint.explain.runs.DEFAULTS` under ``explain``; ``trainer.num_threads``
sets torch's threads. Bad input raises :class:`~mmint.errors.InputError` (exit 2).
"""

from __future__ import annotations

from typing import Any

from mmint.errors import InputError


def main(cfg: Any) -> None:
    """Explain the run directory ``cfg.run`` and print where the results are."""
    import torch

    from mmint.config import plain
    from mmint.explain.runs import explain_run, options

    cfg = plain(cfg)
    run = cfg.get("run")
    if not run:
        raise InputError("no run directory given", "mmint explain", "pass run=<run directory>")
    opts = options(cfg.get("explain") or {})
    threads = (cfg.get("trainer") or {}).get("num_threads")
    if threads:
        torch.set_num_threads(int(threads))
    summary = explain_run(run, opts)
    out = opts["out"] or f"{run}/explain"
    used = ", ".join(f"{k}: {v}" for k, v in summary["explainers"].items()) or "none"
    print(
        f"explained {summary['model']} on {summary['data']} ({summary['groups']} groups: "
        f"{summary['n_groups']}); explainers used: {used}\nwritten to: {out}"
    )

"""Optional dependencies of the comparators, with a one-line error naming the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from mmint.errors import InputError

#: import name -> (package on PyPI, mmint extra that installs it)
PACKAGES: dict[str, tuple[str, str]] = {
    "scvi": ("scvi-tools", "scvi"),
    "mofapy2": ("mofapy2", "mofa"),
    "muon": ("muon", "wnn"),
}


def require(module: str, model: str) -> ModuleType:
    """Import ``module`` for ``model``, or raise an :class:`InputError` naming the extra.

    Parameters
    ----------
    module
        Import name (a key of :data:`PACKAGES`).
    model
        The model that needs it (for the message).
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        package, extra = PACKAGES[module]
        raise InputError(
            f"model '{model}' needs {package}, which is not installed ({err.msg})",
            f"model={model}",
            f"pip install 'mmint[{extra}]' (or 'mmint[comparators]' for every comparator)",
        ) from None


def package_versions(*packages: str) -> dict[str, str | None]:
    """Installed versions of ``packages`` (None when one is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for pkg in packages:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out

"""mmint: fair, fast comparisons of multi-modal single-cell integrators.

The Python API, the command line's twin (``docs/tutorials/``), is loaded on first use so that
``import mmint`` stays light:

- :func:`mmint.fit` (``mmint fit``) -> :class:`mmint.Run`; :func:`mmint.load_run` reads a
  finished run directory; :func:`mmint.validate` (``mmint validate``);
- :func:`mmint.benchmark` (``mmint benchmark``) -> the suite's ``results.csv`` as a DataFrame;
- :mod:`mmint.pl`: ``umap``, ``curves`` and ``leaderboard`` figures.

``mmint.fit`` and ``mmint.benchmark`` are also the modules ``mmint/fit.py`` (``run_fit``,
...) and ``mmint/benchmark/``: those modules are made callable, so ``mmint.fit(data, ...)``
and ``from mmint.fit import run_fit`` both work.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

#: public name -> the module that defines it
_API = {
    "validate": "mmint.api.fitting",
    "Run": "mmint.api.run",
    "load_run": "mmint.api.run",
}
#: functions named as a module of the package (``mmint/fit.py``, ``mmint/benchmark/``): the
#: module is made callable as the function, so both uses work
_CALLABLE_MODULES = {"fit": "mmint.api.fitting", "benchmark": "mmint.api.bench"}

__all__ = ["Run", "benchmark", "fit", "load_run", "pl", "validate"]


class _CallableModule(types.ModuleType):
    """A module of the package that is also the API function of the same name."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        name = self.__name__.rpartition(".")[2]
        function = getattr(importlib.import_module(_CALLABLE_MODULES[name]), name)
        return function(*args, **kwargs)


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        # the import system binds a submodule here once it is loaded: make it callable
        if name in _CALLABLE_MODULES and type(value) is types.ModuleType:
            value.__class__ = _CallableModule
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    if name in (*_CALLABLE_MODULES, "pl"):
        return importlib.import_module(f"mmint.{name}")
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'mmint' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

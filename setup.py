"""Ships the Hydra config tree: ``configs/`` goes into wheels as ``mmint/conf``.

Everything else is in ``pyproject.toml``. A source checkout (and an editable install) reads
``configs/`` where it is; see :func:`mmint.config.config_dir`.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildWithConfigs(build_py):
    """``build_py`` that also copies ``configs/`` to ``<build>/mmint/conf``."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads configs/ in the checkout
        target = Path(self.build_lib) / "mmint" / "conf"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(ROOT / "configs", target, ignore=shutil.ignore_patterns("__pycache__"))


setup(cmdclass={"build_py": BuildWithConfigs})

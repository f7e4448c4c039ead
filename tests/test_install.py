"""A non-editable install works: the wheel ships the config tree, and ``mmint fit`` run from
another folder with the installed package finds its configs.

Offline and fast: the wheel is built without build isolation from a copy of the sources, and
installed with ``--no-deps`` into a fresh venv that sees the test environment's packages (a
``.pth`` line; the test environment's own editable mmint stays invisible there).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "mmint")
TINY = [
    "data.simulate.n_cells=200",
    "data.simulate.n_types=4",
    "data.simulate.n_major=2",
    "+data.simulate.n_features={rna: 50, atac: 80, ephys: 10}",
]


def _run(args: list, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, **kw)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:  # a copy: an in-tree build would leave build/ in the checkout
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, src / name)
    dist = tmp_path_factory.mktemp("dist")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    args = ["wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", dist, src]
    proc = _run([*pip, *args])
    assert proc.returncode == 0, proc.stderr
    return next(dist.glob("mmint-*.whl"))


def test_the_wheel_ships_every_config(wheel):
    configs = ROOT / "mmint" / "conf"
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("mmint/conf/")}
    expected = {f"mmint/conf/{p.relative_to(configs).as_posix()}" for p in configs.rglob("*.yaml")}
    assert "mmint/conf/config.yaml" in expected
    assert shipped == expected


def test_fit_runs_from_the_installed_wheel_in_another_folder(wheel, tmp_path):
    venv = tmp_path / "venv"
    assert _run([sys.executable, "-m", "venv", "--without-pip", venv]).returncode == 0
    python = venv / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(_run([python, "-c", purelib]).stdout.strip()).resolve()
    (site / "test_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--python", python]
    proc = _run([*pip, "install", "--no-deps", "--no-index", "-q", wheel])
    assert proc.returncode == 0, proc.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("MMINT_CONFIG_DIR", "PYTHONPATH")}
    env.update(WANDB_MODE="disabled", CI="true")
    work = tmp_path / "elsewhere"
    work.mkdir()

    where = _run(
        [python, "-c", "import mmint.config as c; print(c.config_dir())"], cwd=work, env=env
    )
    assert Path(where.stdout.strip()) == site / "mmint" / "conf", where.stderr

    fit = [venv / "bin" / "mmint", "fit", "model=pca", "logger=none", "hydra.run.dir=run", *TINY]
    proc = _run([*fit, "eval.scib=false", "eval.leiden=false"], cwd=work, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    metrics = json.loads((work / "run" / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["split"]["n_train"] == 160

    # MMINT_CONFIG_DIR still wins over the shipped tree
    env["MMINT_CONFIG_DIR"] = str(tmp_path)
    proc = _run([venv / "bin" / "mmint", "validate"], cwd=work, env=env)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: no config tree (config.yaml) found")

"""Hydra's multirun flag anywhere on the line, a submitit-local sweep of two fits, and the
SLURM launcher config."""

from __future__ import annotations

import json

import pytest
import yaml

from mmint.cli import split_hydra_flags
from mmint.data.registry import config_dir

from .helpers import TINY, mmint


@pytest.mark.parametrize(
    ("args", "flags", "rest"),
    [
        (["-m", "seed=0,1"], ["-m"], ["seed=0,1"]),
        (["seed=0,1", "-m"], ["-m"], ["seed=0,1"]),
        (["a=1", "--multirun", "b=2"], ["--multirun"], ["a=1", "b=2"]),
        (["a=1", "--cfg", "job", "b=2"], ["--cfg", "job"], ["a=1", "b=2"]),
        (["--cfg=hydra", "a=1"], ["--cfg=hydra"], ["a=1"]),
        (["a=1", "--info", "b=2"], ["--info"], ["a=1", "b=2"]),
        (["--info", "defaults", "a=1"], ["--info", "defaults"], ["a=1"]),
    ],
)
def test_hydra_flags_anywhere(args, flags, rest):
    assert split_hydra_flags(args) == (flags, rest)


def test_submitit_local_sweep_runs_two_fits(tmp_path):
    """The form of the SLURM config's comment, with the local launcher: -m after the
    overrides, two seeds, two run directories with their metrics."""
    out = mmint(
        "fit",
        "model=pca",
        *TINY,
        "seed=0,1",
        "hydra/launcher=submitit_local",
        "-m",
        "hydra.sweep.dir=sweep",
        cwd=tmp_path,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    seeds = []
    for seed in (0, 1):
        run = tmp_path / f"sweep/pca_synthetic_{seed}"
        m = json.loads((run / "metrics.json").read_text())
        assert m["status"] == "ok" and m["model"] == "pca"
        seeds.append(m["seed"])
    assert seeds == [0, 1]
    assert list((tmp_path / "sweep/.submitit").iterdir())  # ran as submitit jobs


def test_slurm_launcher_composes_with_its_documented_keys(tmp_path, capsys):
    from hydra import compose, initialize_config_dir

    from mmint.cli import main

    path = config_dir() / "hydra/launcher/slurm.yaml"
    written = yaml.safe_load(path.read_text())
    documented = {k for k in written if k != "defaults"}
    assert {"timeout_min", "cpus_per_task", "gpus_per_node", "tasks_per_node"} <= documented
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", ["hydra/launcher=slurm"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher["_target_"].endswith("submitit_launcher.SlurmLauncher")
    for key in documented:
        assert launcher[key] == written[key], key
    job = mmint(
        "fit", "--cfg", "job", "hydra/launcher=slurm", "model=multivi", "seed=3", cwd=tmp_path
    )
    assert job.returncode == 0, job.stderr[-2000:]
    shown = yaml.safe_load(job.stdout)
    assert shown["model"]["name"] == "multivi" and shown["seed"] == 3
    with pytest.raises(SystemExit) as info:
        main(["fit", "-m", "hydra/launcher=slurm", "--cfg", "job"])
    assert info.value.code == 2
    assert capsys.readouterr().err.startswith("error: -m and --cfg cannot be combined")

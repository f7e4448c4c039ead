"""DDP with 2 CPU processes on tiny data: the started processes find their entry point,
gradients stay synchronised, rank 0 alone evaluates and writes, cost and curves are recorded."""

from __future__ import annotations

import gc
import json
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from mmint.cli import compose
from mmint.distributed import ParameterSync, n_devices, plan_for
from mmint.errors import InputError
from mmint.fit import run_fit

from .helpers import TINY, metrics, mmint

DDP = ["trainer.accelerator=cpu", "trainer.devices=2"]


def _fit_in_process(cfg: dict, run_dir) -> None:
    """``run_fit`` with rank 0 in this process; a failure is reported without its traceback.

    The traceback of a failed DDP fit holds the DDP wrapper, whose gloo process group has
    threads in this process; kept alive (pytest keeps the last failure's traceback), it is
    inherited by the children that later tests fork, and freeing it there deadlocks them (a
    condition variable of threads that do not exist in the child). Dropped here, it is
    freed in this process."""
    try:
        run_fit(cfg, run_dir)
        return
    except Exception as err:  # noqa: BLE001 - reported below, without the frames
        message = f"{type(err).__name__}: {err}"
    gc.collect()
    pytest.fail(f"the DDP fit failed: {message}", pytrace=False)


def _check_ddp_run(run_dir, epochs: int, exact: bool = True) -> dict:
    m = metrics(run_dir)
    assert m["status"] == "ok" and m["world_size"] == 2 and m["epochs"] == epochs
    assert m["seconds_per_epoch"] > 0 and m["cells_per_second"] > 0
    assert m["ari"] is not None and m["foscttm"] is not None
    curves = pd.read_csv(run_dir / "curves.csv")
    assert len(curves) >= 2 and curves["latent_distance"].notna().all()
    sync = json.loads((run_dir / "logs/ddp.json").read_text())
    assert len(sync["parameter_checksums"]) == 2
    assert sync["parameters_equal"] if exact else sync["max_relative_difference"] < 1e-6
    assert sync["epoch"] == epochs - 1
    assert not (run_dir / ".ddp").exists()  # the launch folder is cleaned up
    return m


def test_ddp_from_the_command_line(tmp_path):
    """`mmint fit ... trainer.strategy=ddp`: the started process finds its entry point."""
    out = mmint(
        "fit",
        "model=multivi",
        *TINY,
        *DDP,
        "trainer.strategy=ddp",
        "model.max_epochs=3",
        "hydra.run.dir=run",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "can't open file" not in out.stderr and "Traceback" not in out.stderr
    _check_ddp_run(tmp_path / "run", 3)
    # the other rank trained along: its log shows it joined as rank 1 of 2
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in (tmp_path / "run/logs/ddp_rank1.log").read_text()


@pytest.mark.parametrize(
    ("model", "strategy"),
    [("unitednet", "ddp"), ("cvqvae", "ddp_find_unused_parameters_true")],
)
def test_ddp_in_process(model, strategy, tmp_path):
    """From the library (rank 0 is this process); the process environment is left as it was.
    UnitedNet: manual optimization, alternating phases, several optimizers.

    UnitedNet's parameters agree to float rounding only: its group layer renormalises its
    weight in place in every forward pass, and only rank 0 runs the per-epoch curve scores."""
    import os

    before = {k: os.environ.get(k) for k in ("MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK")}
    cfg = compose(
        "fit", [f"model={model}", *TINY, *DDP, f"trainer.strategy={strategy}", "model.max_epochs=3"]
    )
    _fit_in_process(cfg, tmp_path)
    _check_ddp_run(tmp_path, 3, exact=model != "unitednet")
    assert {k: os.environ.get(k) for k in before} == before
    assert not torch.distributed.is_initialized()


def test_pca_ignores_devices(tmp_path):
    cfg = compose("fit", ["model=pca", *TINY, *DDP, "trainer.strategy=ddp"])
    assert run_fit(cfg, tmp_path)["world_size"] == 1


def test_plans():
    assert n_devices(2) == 2 and n_devices("3") == 3 and n_devices([0, 1]) == 2
    assert n_devices("auto") == 1 and n_devices(-1) == 1
    assert plan_for({"devices": 1, "strategy": "ddp"}, True) is None
    plan = plan_for({"devices": 2, "strategy": "ddp"}, True)
    assert plan.world_size == 2 and plan.find_unused_parameters
    assert not plan_for({"devices": 2, "strategy": "ddp"}, False).find_unused_parameters
    assert not plan_for(
        {"devices": 2, "strategy": "ddp_find_unused_parameters_false"}, True
    ).find_unused_parameters
    assert plan_for({"devices": 2, "strategy": "ddp_spawn"}, True).world_size == 2
    with pytest.raises(InputError, match="strategy 'fsdp' on 2 devices"):
        plan_for({"devices": 2, "strategy": "fsdp"}, True)


def test_parameter_sync_detects_unsynchronised_processes(tmp_path):
    module = torch.nn.Linear(3, 2)
    (tmp_path / "logs").mkdir()

    def trainer(gathered):
        strategy = SimpleNamespace(all_gather=lambda t: gathered(t))
        return SimpleNamespace(
            strategy=strategy, is_global_zero=True, world_size=2, current_epoch=4
        )

    check = ParameterSync(tmp_path)
    check.on_train_epoch_end(trainer(lambda t: torch.stack([t, t])), module)
    assert json.loads((tmp_path / "logs/ddp.json").read_text())["parameters_equal"]
    check.on_train_epoch_end(trainer(lambda t: torch.stack([t, t * (1 + 1e-9)])), module)
    sync = json.loads((tmp_path / "logs/ddp.json").read_text())
    assert not sync["parameters_equal"] and sync["max_relative_difference"] < 1e-6
    with pytest.raises(RuntimeError, match="parameters differ across the DDP processes"):
        check.on_train_epoch_end(trainer(lambda t: torch.stack([t, t * 1.001])), module)
    assert not json.loads((tmp_path / "logs/ddp.json").read_text())["parameters_equal"]


def test_a_failed_in_process_fit_keeps_no_frames(monkeypatch):
    """What a failed fit held (there: the DDP wrapper) is freed when the failure is reported."""
    import weakref

    class Held:
        pass

    refs = []

    def failing(cfg, run_dir):
        held = Held()
        refs.append(weakref.ref(held))
        raise RuntimeError("Application timeout caused pair closure")

    monkeypatch.setattr(f"{__name__}.run_fit", failing)
    with pytest.raises(
        pytest.fail.Exception, match="the DDP fit failed: RuntimeError: App"
    ) as info:
        _fit_in_process({}, None)
    # pytest keeps a failure alive (sys.last_value): it must not reach the fit's frames
    assert info.value.__context__ is None and refs[0]() is None

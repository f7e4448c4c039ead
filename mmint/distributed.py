"""DDP on one machine with processes that mmint starts itself.

Lightning's own DDP launcher re-runs the command line (``sys.argv``) in every child process.
That breaks for ``mmint fit`` (the console script rewrites ``sys.argv`` for Hydra, so the
children got ``python3 '.../mmint fit'``), would re-run a whole suite inside
``mmint benchmark``, and would re-run pytest in a test. Here the parent starts
``python -m mmint.ddp_rank <launch file> <rank>`` for ranks 1..n-1; every process builds the
same data module and model from the same config and joins the same process group, and only
rank 0 goes on to evaluate and write the run directory.

Launchers that start the processes themselves (``torchrun``, ``srun`` with one task per
device) are left to Lightning: nothing is started here when ``LOCAL_RANK`` or a multi-task
SLURM job is present.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import lightning as L
import torch
from lightning.fabric.plugins.environments import LightningEnvironment

from mmint.callbacks.divergence import TrainingDiverged
from mmint.errors import InputError

T = TypeVar("T")

READY_TIMEOUT_S = 600.0
#: environment variables torch.distributed / Lightning set in rank 0 (restored after a fit)
_DIST_ENV = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK")


def n_devices(devices: Any) -> int:
    """Number of processes a ``trainer.devices`` value asks for (``auto``/``-1``: 1 on CPU)."""
    if isinstance(devices, list | tuple):
        return len(devices)
    if isinstance(devices, str):
        text = devices.strip()
        if text.isdigit():
            return int(text)
        if "," in text:
            return len([d for d in text.split(",") if d.strip()])
        return 1
    return int(devices) if isinstance(devices, int) and devices > 0 else 1


def external_launcher() -> bool:
    """Whether another launcher (torchrun, srun with several tasks) started the processes."""
    if "LOCAL_RANK" in os.environ:
        return True
    return int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1


def external_rank() -> int:
    """This process's global rank under an external launcher (0 otherwise)."""
    if not external_launcher():
        return 0
    for key in ("RANK", "SLURM_PROCID"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    return 0


def external_strategy(trainer_cfg: dict[str, Any], manual_optimization: bool) -> Any:
    """Under torchrun / srun: Lightning's DDP with its own cluster environment, with
    ``find_unused_parameters`` as :func:`plan_for` chooses it; None when not launched so."""
    strategy = str(trainer_cfg.get("strategy") or "auto")
    if not external_launcher() or not (strategy == "auto" or strategy.startswith("ddp")):
        return None
    from lightning.pytorch.strategies import DDPStrategy

    unused = not strategy.endswith("_false") and (strategy.endswith("_true") or manual_optimization)
    return DDPStrategy(find_unused_parameters=unused)


@dataclass
class DDPPlan:
    """How a fit runs under DDP with mmint-started processes."""

    world_size: int
    find_unused_parameters: bool
    timeout_s: float
    rank: int = 0
    port: int = 0
    children: list[subprocess.Popen] = field(default_factory=list)
    folder: Path | None = None
    saved_env: dict[str, str | None] = field(default_factory=dict)

    @property
    def is_child(self) -> bool:
        """Whether this process is one of the started ones (rank > 0)."""
        return self.rank > 0

    def strategy(self) -> Any:
        """The Lightning strategy for this process."""
        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy(
            cluster_environment=_Environment(self.rank, self.world_size, self.port),
            find_unused_parameters=self.find_unused_parameters,
            timeout=timedelta(seconds=self.timeout_s),
            start_method="popen",
        )


def plan_for(trainer_cfg: dict[str, Any], manual_optimization: bool) -> DDPPlan | None:
    """The DDP plan of a trainer config, or None when mmint does not start processes.

    Several devices with ``auto`` or any ``ddp*`` strategy (``ddp_spawn`` too: spawned
    processes would keep the callbacks' curves and timing to themselves) run as processes
    started here. ``ddp`` runs with ``find_unused_parameters=True`` for models that optimise
    manually (every mmint integrator: several optimizers or phases, each backward reaching
    only some parameters, which DDP's reducer only accepts with that flag);
    ``ddp_find_unused_parameters_false`` turns it off.
    """
    strategy = str(trainer_cfg.get("strategy") or "auto")
    world = n_devices(trainer_cfg.get("devices", 1))
    if world <= 1 or external_launcher():
        return None
    if strategy != "auto" and not strategy.startswith("ddp"):
        raise InputError(
            f"strategy '{strategy}' on {world} devices is not supported",
            "trainer.strategy",
            "use trainer.strategy=ddp (or ddp_find_unused_parameters_true)",
        )
    if strategy.endswith("find_unused_parameters_false"):
        unused = False
    else:
        unused = strategy.endswith("find_unused_parameters_true") or manual_optimization
    return DDPPlan(world, unused, float(trainer_cfg.get("ddp_timeout_s") or 300))


class ParameterSync(L.Callback):
    """After every training epoch, checks that the parameters are the same in every process
    (DDP averages the gradients, so equal starts and equal steps must stay equal) and raises
    when they are not; rank 0 writes the checksums of the last epoch to ``logs/ddp.json``.

    Checksums within a relative ``rtol`` pass (``parameters_equal`` says whether they are
    bitwise equal): a model that changes its parameters in place during a forward pass (as
    UnitedNet's group layer normalisation) drifts at float rounding when only rank 0 runs
    the per-epoch curve scores; gradients that are not synchronised differ by far more.
    """

    rtol = 1e-6

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import torch

        with torch.no_grad():
            flat = torch.cat([p.detach().double().flatten().cpu() for p in pl_module.parameters()])
            weights = torch.arange(1, flat.numel() + 1, dtype=torch.float64)
            mine = torch.stack([flat.sum(), (flat * weights).sum() / flat.numel()])
        sums = (
            trainer.strategy.all_gather(mine.to(next(pl_module.parameters()).device))
            .cpu()
            .reshape(-1, 2)
        )
        equal = bool(torch.equal(sums, sums[:1].expand_as(sums)))
        spread = float(((sums - sums[:1]).abs() / sums[:1].abs().clamp_min(1e-12)).max())
        if trainer.is_global_zero:
            from mmint.io import write_json

            write_json(
                self.run_dir / "logs" / "ddp.json",
                {
                    "world_size": trainer.world_size,
                    "epoch": trainer.current_epoch,
                    "parameter_checksums": sums.tolist(),
                    "parameters_equal": equal,
                    "max_relative_difference": spread,
                },
            )
        if spread > self.rtol:
            raise RuntimeError(
                f"parameters differ across the DDP processes after epoch "
                f"{trainer.current_epoch} (checksums {sums[:, 0].tolist()}): gradients were "
                "not synchronised"
            )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Environment(LightningEnvironment):
    """A fixed rank, world size and port on this host; the processes exist already."""

    def __init__(self, rank: int, world_size: int, port: int) -> None:
        super().__init__()
        self._rank, self._main_port, self._world_size = rank, port, world_size

    @property
    def creates_processes_externally(self) -> bool:
        return True

    @property
    def main_address(self) -> str:
        return "127.0.0.1"

    def local_rank(self) -> int:
        return self._rank

    def node_rank(self) -> int:
        return 0


def launch(plan: DDPPlan, cfg: dict[str, Any], run_dir: Path, ckpt_path: str | None) -> None:
    """Start ranks 1..n-1 (rank 0 is this process); their output goes to ``logs/ddp_rank<r>.log``."""
    plan.saved_env = {k: os.environ.get(k) for k in _DIST_ENV}
    plan.port = _free_port()
    plan.folder = Path(run_dir) / ".ddp"
    plan.folder.mkdir(parents=True, exist_ok=True)
    (Path(run_dir) / "logs").mkdir(exist_ok=True)
    launch_file = plan.folder / "launch.json"
    payload = {
        "cfg": cfg,
        "run_dir": str(run_dir),
        "ckpt_path": ckpt_path,
        "world_size": plan.world_size,
        "port": plan.port,
        "find_unused_parameters": plan.find_unused_parameters,
        "timeout_s": plan.timeout_s,
        "parent": os.getpid(),
    }
    launch_file.write_text(json.dumps(payload))
    for rank in range(1, plan.world_size):
        (plan.folder / f"ready.{rank}").unlink(missing_ok=True)
        log = open(Path(run_dir) / "logs" / f"ddp_rank{rank}.log", "w")  # noqa: SIM115
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        plan.children.append(
            subprocess.Popen(
                [sys.executable, "-m", "mmint.ddp_rank", str(launch_file), str(rank)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=os.getcwd(),
            )
        )
        log.close()


def _last_line(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    errors = [ln for ln in lines if ln.startswith("error:") or "Error" in ln]
    return (errors or lines or [""])[-1]


def child_failure(plan: DDPPlan, run_dir: Path) -> str | None:
    """A one-line description of the first started process that failed, or None."""
    for rank, proc in enumerate(plan.children, start=1):
        code = proc.poll()
        if code not in (None, 0):
            log = Path(run_dir) / "logs" / f"ddp_rank{rank}.log"
            return f"DDP process rank {rank} exited with code {code}: {_last_line(log)} ({log})"
    return None


def wait_ready(plan: DDPPlan, run_dir: Path) -> None:
    """Wait until every started process has built its data and model (or raise if one died),
    so that no process waits for a dead peer in the process-group rendezvous."""
    assert plan.folder is not None
    deadline = time.monotonic() + READY_TIMEOUT_S
    pending = set(range(1, plan.world_size))
    while pending:
        failure = child_failure(plan, run_dir)
        if failure:
            raise RuntimeError(failure)
        pending = {r for r in pending if not (plan.folder / f"ready.{r}").exists()}
        if pending and time.monotonic() > deadline:
            raise RuntimeError(f"DDP processes {sorted(pending)} did not start in time")
        if pending:
            time.sleep(0.2)


def finish(plan: DDPPlan, run_dir: Path, ok: bool) -> str | None:
    """Wait for the started processes after a fit (kill them after a failure); return a
    failure line if one of them failed."""
    deadline = time.monotonic() + (60.0 if ok else 5.0)
    for proc in plan.children:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    failure = child_failure(plan, run_dir) if ok else None
    for key, value in plan.saved_env.items():  # rank 0's process goes on (a suite, a test)
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    if plan.folder is not None:
        for f in plan.folder.glob("*"):
            f.unlink(missing_ok=True)
        plan.folder.rmdir()
    return failure


def mark_ready(plan: DDPPlan) -> None:
    """Tell rank 0 that this started process is ready to join the process group."""
    assert plan.folder is not None
    (plan.folder / f"ready.{plan.rank}").write_text(str(os.getpid()))


def run_ddp(
    plan: DDPPlan, cfg: dict[str, Any], run_dir: Path, resume: Path | None, train: Callable[[], T]
) -> T:
    """Rank 0 of a DDP fit: start the other ranks, ``train()`` with them, wait for them."""
    launch(plan, cfg, run_dir, str(resume) if resume else None)
    ok = False
    try:
        wait_ready(plan, run_dir)
        try:
            out = train()
        except Exception as err:
            # a peer that died makes this rank's collective fail: report the peer's error
            failure = child_failure(plan, run_dir)
            if failure and not isinstance(err, TrainingDiverged):
                raise RuntimeError(failure) from err
            raise
        ok = True
    finally:
        failure = finish(plan, run_dir, ok)
        close_process_group()
    if failure:
        raise RuntimeError(failure)
    return out


def close_process_group() -> None:
    """Leave the process group so that a later fit in this process can start another."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()

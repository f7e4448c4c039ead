"""What the profilers share: the machine a table was measured on, fresh child processes that
answer with one ``RESULT`` line, a quiet CPU trainer, the fit pipeline's setup from Hydra
overrides, markdown tables, and mmint's own peak-RSS reading."""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any


def machine(packages: tuple[str, ...] = ()) -> dict[str, Any]:
    """Usable and online cores, CPU model, platform, RAM (GiB total / available), the 1-minute
    load, Python, and the versions of ``packages`` (None when one is not installed)."""
    info: dict[str, Any] = {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load": load(),
        "ram_gib": float("nan"),
        "available_gib": float("nan"),
    }
    try:
        cpu = Path("/proc/cpuinfo").read_text().split("model name", 1)[1]
        info["cpu"] = cpu.split(":", 1)[1].splitlines()[0].strip()
        mem = [ln.split() for ln in Path("/proc/meminfo").read_text().splitlines()]
        kb = {ln[0].rstrip(":"): int(ln[1]) for ln in mem if len(ln) > 1 and ln[1].isdigit()}
        info["ram_gib"], info["available_gib"] = kb["MemTotal"] / 2**20, kb["MemAvailable"] / 2**20
    except (OSError, KeyError, IndexError):
        pass
    for name in packages:
        try:
            info[name] = version(name)
        except PackageNotFoundError:
            info[name] = None
    return {**info, "packages": packages}


def load() -> str:
    """The 1, 5 and 15-minute load averages, ``a/b/c``."""
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def peak_rss_mb() -> float:
    """Peak RSS of this process in MiB, :func:`mmint.callbacks.timing.peak_rss_mb` (imported
    late: the data profiler times its imports)."""
    from mmint.callbacks.timing import peak_rss_mb as reading

    return reading()


def command(script: str) -> str:
    """This invocation as a shell line, for a table's header."""
    return shlex.join(["python", f"benchmarks/{script}", *sys.argv[1:]])


def header(title: str, script: str, info: dict[str, Any]) -> list[str]:
    """A table page's first lines: title, script, command, machine (``info`` from
    :func:`machine` at the start), load at the start and now, package versions."""
    versions = ", ".join(f"{k} {info[k] or '-'}" for k in info.get("packages", ()))
    return [
        f"# {title}\n\nWritten by `benchmarks/{script}` on {datetime.now(UTC):%Y-%m-%d %H:%M UTC}.\n",
        f"- command: `{command(script)}`",
        f"- machine: {info['nproc']} usable cores ({info['cpu_count']} online), {info['cpu']}, "
        f"{info['ram_gib']:.1f} GiB RAM ({info['available_gib']:.1f} GiB available at start), "
        f"{info['platform']}, Python {info['python']}",
        f"- load average (1/5/15 min): {info['load']} at start, {load()} at the end (a shared "
        "machine: with a load above the core count, read the times as upper bounds)",
        f"- versions: {versions}; one torch thread",
    ]


def emit(result: Any) -> None:
    """A child's answer to :func:`child`: one ``RESULT`` line of JSON on stdout."""
    print("RESULT " + json.dumps(result), flush=True)


def child(args: list[str], env: dict[str, str] | None = None) -> Any:
    """Run ``python <args>`` in a fresh process (its own peak RSS and caches; its stderr
    passes through) and return what it gave :func:`emit`, or exit when it gave nothing."""
    env = {**os.environ, **(env or {})}
    out = subprocess.run([sys.executable, *args], env=env, stdout=subprocess.PIPE, text=True)
    lines = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    if not lines:
        sys.exit(f"{shlex.join(args)} failed (exit {out.returncode})")
    return json.loads(lines[-1][7:])


def trainer(**kwargs: Any):
    """A Lightning trainer on the CPU without logger, checkpoints, progress bar or summary."""
    import lightning as L

    quiet = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    quiet.update(enable_model_summary=False, accelerator="cpu", num_sanity_val_steps=0)
    return L.Trainer(**{**quiet, **kwargs})


def fit_setup(overrides: list[str]) -> tuple[dict, tuple]:
    """The fit config from Hydra ``overrides`` and the fit pipeline's setup of it:
    ``(cfg, (name, max_epochs, hparams, datamodule, model))``."""
    from mmint.cli import compose
    from mmint.config import plain
    from mmint.fit import _setup

    os.environ.setdefault("CI", "true")
    cfg = plain(compose("fit", overrides))
    return cfg, _setup(cfg)


def table(head: list[str], rows: list[list[Any]], align: str = "") -> list[str]:
    """Markdown table lines; ``align`` has one letter per column, ``r`` right-aligned."""
    rule = "|" + "".join("---:|" if a == "r" else "---|" for a in align.ljust(len(head), "l"))
    return [f"| {' | '.join(head)} |", rule, *(f"| {' | '.join(map(str, r))} |" for r in rows)]

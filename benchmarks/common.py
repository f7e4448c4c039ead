"""What the profilers share: the machine a table was measured on, its load, package versions,
and peak RSS (mmint's own reading, :func:`mmint.callbacks.timing.peak_rss_mb`)."""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from mmint.callbacks.timing import peak_rss_mb  # noqa: F401 - the one peak-RSS helper


def machine(packages: tuple[str, ...] = ()) -> dict[str, Any]:
    """Usable and online cores, CPU model, platform, RAM (GiB total / available), the 1-minute
    load, Python, and the versions of ``packages`` (None when one is not installed)."""
    usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    info: dict[str, Any] = {
        "nproc": len(usable) if usable is not None else os.cpu_count(),
        "cpu_count": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_1min": round(os.getloadavg()[0], 2),
        "ram_gib": float("nan"),
        "available_gib": float("nan"),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        mem = Path("/proc/meminfo").read_text().splitlines()
        kb = {ln.split(":")[0]: int(ln.split()[1]) for ln in mem if ln.split()[1].isdigit()}
        info["ram_gib"] = kb["MemTotal"] / 2**20
        info["available_gib"] = kb.get("MemAvailable", 0) / 2**20
    except (OSError, KeyError, IndexError):
        pass
    info.update(package_versions(*packages))
    return info


def package_versions(*names: str) -> dict[str, str | None]:
    """Installed versions of ``names`` (None for a missing one)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def load() -> str:
    """The 1, 5 and 15-minute load averages, ``a/b/c``."""
    return "/".join(f"{v:.1f}" for v in os.getloadavg())

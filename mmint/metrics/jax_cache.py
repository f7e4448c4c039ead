"""A persistent JAX compilation cache, so scib-metrics' JIT compilation is paid once per machine.

scib-metrics compiles its jitted kernels (LISI, silhouette, kBET, KMeans) for every new shape in
every process; the first ``evaluate`` of a process spent most of its time there. JAX can keep
compiled executables on disk: :func:`enable_jax_cache` points it at
``$MMINT_JAX_CACHE`` or else ``$XDG_CACHE_HOME/mmint/jax`` (``~/.cache/mmint/jax``) and caches
every compilation (no minimum compile time), so a later process with the same shapes loads the
executable instead of compiling it. Results are the same executables, so the same numbers.

Since the numpy ports of :mod:`mmint.metrics.scib_numpy` and :mod:`mmint.metrics.scib_kmeans`,
only kBET and PCR comparison still run scib-metrics' JAX code.
"""

from __future__ import annotations

import os
from pathlib import Path

_enabled: Path | None = None


def cache_dir() -> Path:
    """The cache folder: ``$MMINT_JAX_CACHE``, else ``$XDG_CACHE_HOME/mmint/jax``."""
    if os.environ.get("MMINT_JAX_CACHE"):
        return Path(os.environ["MMINT_JAX_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "mmint" / "jax"


def enable_jax_cache(path: str | Path | None = None) -> Path | None:
    """Turn on JAX's persistent compilation cache (once per process).

    Returns the folder in use, or ``None`` when it cannot be created (the cache is then off and
    compilation happens as before).
    """
    global _enabled
    if _enabled is not None and path is None:
        return _enabled
    folder = Path(path) if path is not None else cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:  # read-only home, no home: compile as before
        return None
    import jax

    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    _enabled = folder
    return folder


__all__ = ["cache_dir", "enable_jax_cache"]

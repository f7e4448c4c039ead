"""The persistent JAX compilation cache: a compilation in one process is stored on disk and
loaded, not compiled, by the next."""

from __future__ import annotations

import os
import subprocess
import sys

from mmint.metrics.jax_cache import cache_dir

SCRIPT = """
import jax, jax.numpy as jnp
from jax._src import monitoring
from mmint.metrics.jax_cache import enable_jax_cache
hits = []
monitoring.register_event_listener(lambda name, **kw: hits.append(name))
print("DIR", enable_jax_cache())
print("VALUE", float(jax.jit(lambda x: (x * 3 + 1).sum())(jnp.arange(7.0))))
print("HIT", any("cache_hits" in h for h in hits))
"""


def _run(env: dict[str, str]) -> dict[str, str]:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True
    ).stdout
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def test_second_process_loads_the_compilation(tmp_path):
    env = {**os.environ, "MMINT_JAX_CACHE": str(tmp_path / "jax"), "JAX_PLATFORMS": "cpu"}
    first = _run(env)
    assert first["DIR"] == str(tmp_path / "jax")
    assert any((tmp_path / "jax").iterdir())  # the executable was written
    second = _run(env)
    assert first["VALUE"] == second["VALUE"] == "70.0"
    assert first["HIT"] == "False" and second["HIT"] == "True"


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("MMINT_JAX_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "mmint" / "jax"
    monkeypatch.setenv("MMINT_JAX_CACHE", str(tmp_path / "x"))
    assert cache_dir() == tmp_path / "x"

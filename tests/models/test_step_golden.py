"""One training step of each model gives the same gradients and outputs as the recorded
reference (``golden/steps.json``, written by ``golden/step_reference.py``), on any CPU.

Tolerance: ``rtol=1e-7, atol=1e-8``. The step runs in float64. Measured on an AMD EPYC (AVX-512)
host, the same step under ``ATEN_CPU_CAPABILITY=default``, ``=avx2`` and the native capability,
and on 1 or 2 threads, differs from the native one-thread step by at most 2.3e-11 (CVQVAE-style
outputs after the Adam step; every gradient within 3e-14), so the tolerance is over 400 times the
largest difference seen between kernels. A change of any loss by a factor of 1 + 1e-5 moves
gradients by 1e-5 relative, 100 times the tolerance: ``test_a_changed_loss_fails`` shows that
such a change is caught for every model.

The inputs are CPU-independent too: the step once failed on a host without AVX-512 by up to
5e-7 because numpy's float32 ``log1p`` of the counts rounds differently under AVX-512; the
transforms now compute in float64 and round once (``tests/data/test_transforms_any_cpu.py``),
and ``steps.json`` was regenerated on the AVX2 host (all differences to the former reference
were in the counts modality's paths, at most 5e-7).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmint.models import loss_output

from .golden.step_reference import MODELS, load_reference, one_step

RTOL, ATOL = 1e-7, 1e-8


def mismatches(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> list[str]:
    """The keys of ``want`` whose tensor ``got`` does not match within the tolerance."""
    assert sorted(got) == sorted(want)
    bad = []
    for key, value in want.items():
        assert got[key].dtype == value.dtype == torch.float64, key
        if not torch.allclose(got[key], value, rtol=RTOL, atol=ATOL):
            bad.append(f"{key} (max diff {(got[key] - value).abs().max().item():.2e})")
    return bad


@pytest.mark.parametrize("name", sorted(MODELS))
def test_one_step_matches_the_reference(name):
    got = one_step(name)
    assert any(k.startswith("grad/") for k in got)
    assert mismatches(got, load_reference()[name]) == []


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_changed_loss_fails(name, monkeypatch):
    """Every model's optimised loss scaled by 1 + 1e-5 (a one-line change of a loss) is caught."""
    init = loss_output.LossOutput.__init__

    def scaled(self, loss, *args, **kwargs):
        init(self, loss * (1 + 1e-5), *args, **kwargs)

    monkeypatch.setattr(loss_output.LossOutput, "__init__", scaled)
    assert mismatches(one_step(name), load_reference()[name])


@pytest.mark.parametrize("capability", ["default", "avx2"])
def test_the_reference_holds_on_other_cpu_kernels(capability):
    """The comparison in a fresh process whose ATen kernels are another instruction set's
    (``default``: no vector instructions), on two threads."""
    env = dict(os.environ, ATEN_CPU_CAPABILITY=capability, MMINT_GOLDEN_THREADS="2")
    here = Path(__file__)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            "matches",
            f"{here}::test_one_step_matches_the_reference",
        ],
        cwd=here.parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert f"{len(MODELS)} passed" in proc.stdout

"""One training step of each model gives the same gradients and outputs as the recorded
reference (``golden/steps.json``, written by ``golden/step_reference.py`` from the code before
the refactors and speed work it guards)."""

from __future__ import annotations

import pytest
import torch

from .golden.step_reference import MODELS, load_reference, one_step


@pytest.mark.parametrize("name", sorted(MODELS))
def test_one_step_matches_the_reference(name):
    want = load_reference()[name]
    got = one_step(name)
    assert sorted(got) == sorted(want)
    assert any(k.startswith("grad/") for k in got)
    for key, value in want.items():
        torch.testing.assert_close(got[key], value, rtol=1e-5, atol=1e-5, msg=key)

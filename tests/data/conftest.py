"""Fixtures shared by the data-layer tests."""

from __future__ import annotations

import pytest

from .wide import patch_densifying


@pytest.fixture
def no_densify(monkeypatch):
    """Every densifying call raises on a wide matrix (:func:`wide.patch_densifying`)."""
    patch_densifying(monkeypatch)

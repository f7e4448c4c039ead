"""A model's config as ``mmint fit model=<name>`` composes it (presets with their defaults
list applied), as a plain dict."""

from __future__ import annotations

from typing import Any

from mmint.cli import compose
from mmint.config import plain


def model_config(name: str) -> dict[str, Any]:
    """The composed ``model`` group of ``mmint fit model=<name>``."""
    return plain(compose("fit", [f"model={name}"]))["model"]

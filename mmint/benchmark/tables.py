"""Formatting for the report's markdown tables: numbers, ``mean ± sd`` and tables."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

NA = "n/a"


def fmt(value: float, digits: int = 3) -> str:
    """A number, or ``-`` for missing."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"


def fmt_pm(mean: float, sd: float, digits: int = 3) -> str:
    """``mean ± sd`` (``mean`` alone with one seed)."""
    if mean is None or not np.isfinite(mean):
        return "-"
    if sd is None or not np.isfinite(sd):
        return fmt(mean, digits)
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def fmt_signed(value: float, digits: int = 3) -> str:
    """``+0.123`` / ``-0.045``."""
    if value is None or not np.isfinite(value):
        return "-"
    return f"{value:+.{digits}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub markdown table of preformatted cells (pandas' ``to_markdown``, cells kept as
    written: no re-parsing of numbers)."""
    table = pd.DataFrame([[str(c) for c in r] for r in rows], columns=list(header))
    return table.to_markdown(index=False, disable_numparse=True)

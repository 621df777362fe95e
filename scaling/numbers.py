"""Numbers as files and people read them: JSON-safe floats and short text forms.

``fit.json`` and ``predict --json`` write a non-finite number as ``null``; reports and the command
line print numbers with a few significant digits and a placeholder where there is none; run names
and the planner's tables print counts as ``225K``, ``1M``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def finite_or_none(x: Any) -> float | None:
    """``x`` as a float, or ``None`` where it is ``None``, NaN or infinite (JSON ``null``)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def nan_if_none(x: Any) -> float:
    """``x`` as a float, NaN where it is ``None`` (the reverse of :func:`finite_or_none`)."""
    return math.nan if x is None else float(x)


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars made plain and non-finite floats made ``None``, recursively."""
    if isinstance(obj, Mapping):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, float | np.floating):
        return finite_or_none(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def fmt_g(x: float | None, digits: int = 4, missing: str = "–") -> str:
    """``x`` to ``digits`` significant digits, or ``missing`` where there is no finite value."""
    if x is None or not math.isfinite(x):
        return missing
    return f"{x:.{digits}g}"


def short(x: float) -> str:
    """``x`` to 3 significant digits with a K/M/G/T suffix; rounded before the unit is picked, so
    999,936 reads ``1M``, not ``1e+03K``."""
    x = float(f"{x:.3g}")
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if x >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"

"""Cells and tables of ``report.md``: numbers, intervals and percentages as text, a Markdown
table.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from scaling.numbers import fmt_g


def sci(x: float | None) -> str:
    """``x`` to three significant digits."""
    return fmt_g(x, 3)


def interval(ci: tuple[float, float] | None, fmt: Callable[[float | None], str] = fmt_g) -> str:
    """``[lo, hi]`` with ``fmt``; a dash when there is no interval or an end is not finite."""
    if not ci or any(v is None or not math.isfinite(v) for v in ci):
        return "–"
    return f"[{fmt(ci[0])}, {fmt(ci[1])}]"


def pct(x: float | None) -> str:
    """A fraction as a percentage to two decimals; a dash when missing or not finite."""
    return f"{100 * x:.2f}%" if x is not None and math.isfinite(x) else "–"


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table of ``rows`` under ``header``."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)

"""Reports: every section present, plots written and referenced."""

from __future__ import annotations

import re

from synthetic_runs import grid_runs

from scaling.analysis.fitting import FitOptions, fit_law
from scaling.analysis.report import write_report


def _check(report: str, out) -> None:
    for name in re.findall(r"\]\(([^)]+\.png)\)", report):
        assert (out / name).stat().st_size > 5000, name


def test_approach3_report(tmp_path) -> None:
    runs = grid_runs(n=80, seed=1)
    result = fit_law(runs, "chinchilla", FitOptions(grid_stride=60, bootstrap=20, workers=1))
    text = write_report(result, runs, tmp_path).read_text()
    for section in (
        "## Data",
        "## Fitted law",
        "## Compute-optimal allocation",
        "## Law comparison",
        "## Backtest",
        "## Warnings",
        "## Plots",
        "## Method",
    ):
        assert section in text, section
    assert "95% interval" in text and "`alpha`" in text
    for png in ("loss_vs_compute.png", "allocation.png", "residuals.png", "bootstrap.png"):
        assert f"]({png})" in text
    _check(text, tmp_path)

"""Reports: every section present, plots written and referenced."""

from __future__ import annotations

import re

from synthetic_runs import grid_runs

from scaling.analysis.fitting.fit import FitOptions, fit_law
from scaling.analysis.report.markdown import write_report


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
    # the law is right, so the backtest's extrapolation errs by about the 0.3% noise only
    backtest = re.search(r"mean \|relative error\| ([0-9.]+)%", text)
    assert backtest and float(backtest.group(1)) < 1.0
    # data drawn from the Chinchilla law: that law has the least held-out error
    rmse = {
        law: float(value)
        for law, value in re.findall(
            r"^\| `(\w+)` \|.*\| ([0-9.e-]+) \| [0-9.]+% \| [0-9.]+% \|$", text, re.M
        )
    }
    assert (
        set(rmse) == {"chinchilla", "kaplan", "kaplan_e"}
        and min(rmse, key=rmse.get) == "chinchilla"
    )
    for png in ("loss_vs_compute.png", "allocation.png", "residuals.png", "bootstrap.png"):
        assert f"]({png})" in text
    _check(text, tmp_path)


def test_a_law_of_model_size_alone_gets_a_report_without_a_compute_frontier(tmp_path) -> None:
    """Kaplan's L(N) has no compute-optimal frontier to draw or predict: the report is written
    (it crashed in the loss-vs-compute plot) and the law's own section is there."""
    runs = grid_runs(law="kaplan_n", params={"alpha_N": 0.076, "N_c": 8.8e13}, n=40, seed=2)
    result = fit_law(runs, "kaplan_n", FitOptions(grid_stride=60, bootstrap=10, workers=1))
    text = write_report(result, runs, tmp_path).read_text()
    assert "## Fitted law" in text and "`alpha_N`" in text
    _check(text, tmp_path)

"""The loss frontier's doubt about its own form (issue 21, item 1): approach 2's interval beyond
the ladder widens by the bend its own leave-top-budgets-out backtests show, and stays as it was
inside the data and where the form is right."""

from __future__ import annotations

import math
from dataclasses import replace
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bench_modules import load_benchmark

from scaling.analysis.fitting.fit import FitOptions, fit
from scaling.analysis.fitting.results import FitResult, load_fit, save_fit
from scaling.analysis.prediction.predict import Predictor

BUDGETS = (1e17, 3e17, 9e17, 2.7e18)  # 4 budgets x3 apart: the frontier is a pure power law
TARGET = 10 * BUDGETS[-1]
NOISE = 5e-4  # small, so that the noise's share of the backtest errors is small


def power_law(C: float) -> float:
    return (1e30 / C) ** 0.05


def bending(C: float) -> float:  # Hoffmann et al.'s E with a power law above it
    return 1.69 + (5.75e17 / C) ** 0.15


@cache
def ladder_fit(frontier_name: str) -> FitResult:
    """Approach 2 on IsoFLOP profiles that are exact parabolas in ln N around minima on the
    named frontier (so each vertex lies on it), 6 sizes a budget, NOISE multiplicative."""
    frontier = {"power_law": power_law, "bending": bending}[frontier_name]
    rng = np.random.default_rng(0)
    rows = []
    for c in BUDGETS:
        u0 = math.log(0.1 * c**0.5)
        u = u0 + math.log(10) * np.linspace(-0.6, 0.6, 6)
        loss = (frontier(c) + 0.2 * (u - u0) ** 2) * np.exp(NOISE * rng.normal(size=u.size))
        N = np.exp(u)
        rows.append(pd.DataFrame({"params": N, "tokens": c / (6 * N), "loss": loss, "flops": c}))
    runs = pd.concat(rows, ignore_index=True)
    return fit(runs, approach=2, options=FitOptions(bootstrap=200, seed=0, level=0.9))


def curvature_of(frontier, C: float, h: float = 1e-3) -> float:
    """d^2 ln L / d(ln C)^2 by central differences."""
    x = math.log(C)
    f = [math.log(frontier(math.exp(x + k * h))) for k in (-1, 0, 1)]
    return (f[0] - 2 * f[1] + f[2]) / h**2


def without_misfit(result: FitResult) -> FitResult:
    """The fit as a fit.json written before the misfit was recorded."""
    frontier = {k: v for k, v in result.frontier.items() if k != "misfit"}
    return replace(result, frontier=frontier)


def test_the_misfit_measures_the_bend_of_the_frontier() -> None:
    """The curvature the backtests find is the true frontier's (computed here), and about none
    where the frontier is the power law the fit assumes."""
    kappa_true = float(np.mean([curvature_of(bending, c) for c in BUDGETS]))
    assert kappa_true > 4e-3  # a bend that costs ~3% at 10x beyond these budgets
    bend = ladder_fit("bending").frontier["misfit"]
    straight = ladder_fit("power_law").frontier["misfit"]
    assert 0.6 * kappa_true < bend["curvature"] < 1.5 * kappa_true
    assert straight["scale"] < 0.2 * kappa_true
    # every held-out vertex above a power law through the budgets below it (the bend's sign)
    assert all(p["error"] > 0 for p in bend["points"])


def test_beyond_the_ladder_the_interval_holds_the_truth_the_bare_bootstrap_missed() -> None:
    result = ladder_fit("bending")
    truth = bending(TARGET)
    with_it = Predictor(result).at_budget(TARGET)
    bare = Predictor(without_misfit(result)).at_budget(TARGET)
    assert with_it.loss == bare.loss  # the point estimate is the frontier's
    assert not bare.loss_ci[0] <= truth <= bare.loss_ci[1]  # the power law's ~3% miss
    assert with_it.loss_ci[0] <= truth <= with_it.loss_ci[1]
    assert with_it.loss_pi[0] <= truth <= with_it.loss_pi[1]
    assert with_it.loss_pi[1] - with_it.loss_pi[0] > 3 * (bare.loss_pi[1] - bare.loss_pi[0])
    # the size a user trains there (verify's interval): the same doubt
    run = Predictor(result).at_size(with_it.params, with_it.tokens)
    assert run.loss_pi[0] <= truth <= run.loss_pi[1]
    # where the form is right the interval stays within 1% of the prediction (and holds the truth)
    right = Predictor(ladder_fit("power_law")).at_budget(TARGET)
    assert right.loss_pi[0] <= power_law(TARGET) <= right.loss_pi[1]
    assert (right.loss_pi[1] - right.loss_pi[0]) / 2 < 0.01 * right.loss


def test_inside_the_ladder_nothing_changes(tmp_path: Path) -> None:
    result = ladder_fit("bending")
    for C in (BUDGETS[0], 5e17, BUDGETS[-1]):
        assert Predictor(result).at_budget(C) == Predictor(without_misfit(result)).at_budget(C)
    # fit.json keeps the misfit, and the same fit prints the same digits
    save_fit(result, tmp_path / "fit.json")
    again = Predictor(load_fit(tmp_path / "fit.json")).at_budget(TARGET)
    assert again.loss_pi == Predictor(result).at_budget(TARGET).loss_pi


def test_a_frontier_of_large_budgets_is_fitted() -> None:
    """Budgets above ~2e17 FLOPs lie beyond the start grid's C_c, whose starts all descended to
    a flat L = 1 (alpha_C = 0): the fit starts from the points themselves too."""
    from scaling.analysis.fitting.frontier import fit_loss_frontier

    for truth in (lambda C: (1e25 / C) ** 0.15, lambda C: 1.69 + (5.75e17 / C) ** 0.15):
        for n in (3, 5):  # budgets 1e18..1e19: a power law, then with an irreducible term
            Cs = np.geomspace(1e18, 1e19, n)
            fr = fit_loss_frontier(Cs, np.array([truth(c) for c in Cs]), FitOptions())
            result = replace(ladder_fit("power_law"), frontier=fr)
            assert Predictor(result).frontier_loss(2e19) == pytest.approx(truth(2e19), rel=0.01)


def _bench():  # type: ignore[no-untyped-def]
    return load_benchmark("bench_coverage")


@pytest.mark.slow
def test_the_90_percent_interval_covers_new_runs_under_the_wrong_form() -> None:
    """benchmarks/bench_coverage.py, smaller: 4 budgets drawn from a Chinchilla law with an
    irreducible term (a frontier the fitted power law does not contain), asked 10x beyond;
    before the misfit the 90% PI covered about 10% of new runs."""
    row = _bench().cell("irreducible", 4, tables=100, bootstrap=200)
    assert row["n"] == 100
    assert row["coverage"] >= 0.85


def _steepening_ladder(n_budgets: int, seed: int):  # type: ignore[no-untyped-def]
    bench = _bench()
    return bench, bench.ladder("steepening", n_budgets, seed)


def test_approach_3_holds_the_bend_its_law_does_not_contain(tmp_path: Path) -> None:
    """Chinchilla's law fitted to a truth whose frontier steepens (benchmarks/bench_coverage.py):
    10x beyond, the bare bootstrap's interval misses the true loss of the size it predicts; with
    the law's form error from its own held-out budgets it holds it. The backtests saw the bend:
    the held-out budgets fell below the law (negative errors, a negative curvature)."""
    bench, runs = _steepening_ladder(4, seed=0)
    result = fit(runs, approach=3, options=FitOptions(bootstrap=100, seed=0, level=0.9))
    misfit = result.misfit
    assert misfit["curvature"] < 0 and all(p["error"] < 0 for p in misfit["points"])
    bare = replace(result, misfit=None)
    at = Predictor(result).at_budget(bench.TARGET)
    truth = float(bench.steepening(at.params, at.tokens))
    run, bare_run = (Predictor(r).at_size(at.params, at.tokens) for r in (result, bare))
    assert not bare_run.loss_pi[0] <= truth <= bare_run.loss_pi[1]
    assert run.loss_pi[0] <= truth <= run.loss_pi[1]
    # inside the budgets nothing changes; fit.json keeps it
    inside = runs.iloc[0]
    assert Predictor(result).at_size(inside.params, inside.tokens) == Predictor(bare).at_size(
        inside.params, inside.tokens
    )
    save_fit(result, tmp_path / "fit.json")
    again = load_fit(tmp_path / "fit.json")
    assert again.misfit["scale"] == misfit["scale"] and again.misfit["budgets"] == misfit["budgets"]
    assert Predictor(again).at_size(at.params, at.tokens).loss_pi == run.loss_pi


def test_the_report_shows_the_form_error_the_interval_holds() -> None:
    """report.md says what the held-out budgets measured and how much doubt predict adds 3x and
    10x beyond (more at 10x); a fit without a misfit has no such section."""
    import re

    from scaling.analysis.report.heldout_sections import form_error_section

    result = ladder_fit("bending")
    text = "\n".join(form_error_section(result))
    assert text.startswith("## The form's error beyond the data")
    rows = [line for line in text.splitlines() if line.startswith("| ") and "e+" in line]
    assert len(rows) == len(result.frontier["misfit"]["points"]) >= 1
    at3, at10 = (float(v) for v in re.findall(r"x \([0-9.e+]+ FLOPs\): ([0-9.]+)%", text))
    assert 0 < at3 < at10
    assert form_error_section(without_misfit(result)) == []

"""Approach 2 (IsoFLOP) statistics and approach 1's curve smoothing, on hand-made designs.

Each test pins one feature of :mod:`..fitting.isoflop` / :mod:`..fitting.envelope`:
grouping by planned budget, a fixed budget set across resamples, inverse-variance weights from
the delta method, ``b = 1 - a``, the running median before the envelope, and the subsample label.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom
from synthetic_runs import CHINCHILLA_TRUE, curve_runs, isoflop_runs

import scaling.analysis.fitting.isoflop as iso
from scaling.analysis.fitting.allocation import chinchilla_optimal
from scaling.analysis.fitting.envelope import envelope, fit_envelope, smooth_curve
from scaling.analysis.fitting.fit import FitOptions, fit, fit_isoflop
from scaling.analysis.fitting.frontier import fit_power_law
from scaling.analysis.fitting.laws import get_law

A_TRUE = CHINCHILLA_TRUE["beta"] / (CHINCHILLA_TRUE["alpha"] + CHINCHILLA_TRUE["beta"])


def shifted_design(
    budgets: tuple[float, ...],
    shifts: tuple[float, ...],
    sizes: int = 9,
    span: float = 1.2,
    noise: float = 0.0,
    seed: int = 0,
) -> pd.DataFrame:
    """IsoFLOP runs of the Chinchilla law; budget ``i``'s sizes are centred ``shifts[i]`` decades
    from its true optimum (negative: the optimum sits towards the largest size)."""
    rng = np.random.default_rng(seed)
    law = get_law("chinchilla")
    rows = []
    for c, shift in zip(budgets, shifts, strict=True):
        n_opt, _ = chinchilla_optimal(CHINCHILLA_TRUE, c)
        N = float(n_opt) * np.logspace(shift - span / 2, shift + span / 2, sizes)
        D = c / (6 * N)
        loss = law.predict(CHINCHILLA_TRUE, N=N, D=D) * np.exp(noise * rng.standard_normal(sizes))
        rows.append(pd.DataFrame({"params": N, "tokens": D, "loss": loss, "flops": c}))
    return pd.concat(rows, ignore_index=True)


def test_recovers_a_and_b_is_exactly_one_minus_a() -> None:
    result = fit_isoflop(isoflop_runs(noise=0.002, seed=3), FitOptions(bootstrap=200, seed=0))
    a = result.allocation["a"]
    assert a == pytest.approx(A_TRUE, abs=0.02)
    lo, hi = result.ci["a"]
    assert lo < a < hi  # (a parabola in log N is biased on this law: the interval may miss A_TRUE)
    # b and D_coef follow from C = 6ND: no separately fitted b, in the fit and in every resample
    assert result.allocation["b"] == 1.0 - a and result.exponents["b"] == 1.0 - a
    assert result.allocation["D_coef"] == pytest.approx(1 / (6 * result.allocation["N_coef"]))
    s = result.bootstrap.samples
    assert result.bootstrap.kind == "bootstrap" and result.bootstrap.n_failed == 0
    np.testing.assert_array_equal(s["b"], 1.0 - s["a"])
    np.testing.assert_allclose(s["D_coef"], 1 / (6 * s["N_coef"]), rtol=1e-12)


def test_delta_method_matches_the_spread_of_the_vertex_under_noise() -> None:
    u = np.log(np.geomspace(1e7, 1e9, 9))
    truth = 0.05 * (u - np.log(1.2e8)) ** 2 + 3.0  # vertex at N = 1.2e8
    sigma = 0.004
    p = iso.fit_parabola(u, truth)
    assert np.exp(p.vertex) == pytest.approx(1.2e8, rel=1e-9)
    se = np.sqrt(p.vertex_variance(sigma**2))
    rng = np.random.default_rng(1)
    draws = [
        iso.fit_parabola(u, truth + sigma * rng.standard_normal(u.size)).vertex for _ in range(4000)
    ]
    assert np.std(draws) == pytest.approx(se, rel=0.08)


def test_planned_flops_groups_runs_whose_counted_flops_differ() -> None:
    runs = isoflop_runs(budgets=(1e17, 1e18, 1e19), noise=0.001)
    runs["planned_flops"] = runs["flops"]
    # counted compute off the plan by ±0.08 decades (alternating): > the 0.05-decade tolerance
    runs["flops"] = runs["flops"] * 10.0 ** np.where(np.arange(len(runs)) % 2, 0.08, -0.08)
    labels, how = iso.budget_labels(runs, runs["flops"].to_numpy(), 0.05)
    assert how == "planned_flops" and np.unique(labels).size == 3
    result = fit_isoflop(runs)
    assert [m.n_runs for m in result.isoflop] == [9, 9, 9]
    for m, c in zip(result.isoflop, (1e17, 1e18, 1e19), strict=True):
        group = runs[runs["planned_flops"] == c]["flops"]
        assert m.flops == pytest.approx(np.exp(np.log(group).mean()))  # geometric mean of flops
    assert result.allocation["a"] == pytest.approx(A_TRUE, abs=0.03)
    # the tolerance grouping (no planned_flops, or one missing) splits every budget in two
    assert len(fit_isoflop(runs.drop(columns="planned_flops")).isoflop) == 6
    partial = runs.assign(planned_flops=runs["planned_flops"].where(runs.index > 0))
    assert iso.budget_labels(partial, runs["flops"].to_numpy(), 0.05)[1] == "tolerance"
    assert any("planned_flops is missing on 1 of 27" in w for w in fit_isoflop(partial).warnings)


def test_an_edge_budget_stays_in_every_resample(monkeypatch: pytest.MonkeyPatch) -> None:
    # the top budget's optimum lies 0.05 decades inside its largest size: noise pushes it out
    runs = shifted_design((1e17, 1e18, 1e19, 1e20), (0.0, 0.0, 0.0, -0.55), noise=0.004, seed=2)
    seen = {}
    real = iso.frontier_result

    def spy(**kwargs):
        seen.update(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(iso, "frontier_result", spy)
    result = fit_isoflop(runs, FitOptions(bootstrap=300, seed=0))
    top = result.isoflop[-1]
    assert top.used and 0.1 < top.outside_fraction < 0.9
    assert all(m.outside_fraction < 0.05 for m in result.isoflop[:-1])
    assert any("fell outside the sampled sizes" in w for w in result.warnings)
    # every resample carries the same four budgets, the top one extrapolated where it left
    points = seen["replicates"].points
    assert sum(p is None for p in points) == result.bootstrap.n_failed == 0
    assert {len(c) for c, _ in points} == {4}
    tops = np.array([n[-1] for _, n in points])
    assert np.mean(tops > top.params_range[1]) == pytest.approx(top.outside_fraction, abs=0.02)
    assert np.isfinite(result.bootstrap.samples["a"]).all()


def test_a_resample_with_a_non_convex_parabola_fails() -> None:
    # a flat, noisy budget: its parabola is convex on the full data, not in every resample
    runs = shifted_design((1e17, 1e18, 1e19), (0.0,) * 3, sizes=5, span=0.6, noise=0.01, seed=1)
    result = fit_isoflop(runs, FitOptions(bootstrap=200, seed=0))
    assert all(m.used for m in result.isoflop)
    failed = result.bootstrap.n_failed
    assert 0 < failed < 200 and np.isnan(result.bootstrap.samples["a"]).sum() == failed
    assert any(f"{failed} of 200 bootstrap resamples failed" in w for w in result.warnings)


def test_the_weighted_fit_down_weights_a_noisy_vertex() -> None:
    budgets = (1e17, 1e18, 1e19, 1e20, 1e21)
    runs = shifted_design(budgets, (0.0,) * 5, noise=0.0005, seed=4)
    # the top budget: noisy losses (alternating ±0.02) and a tilt that biases its vertex
    top = runs["flops"] == 1e21
    u = np.log(runs.loc[top, "params"].to_numpy())
    runs.loc[top, "loss"] += 0.02 * (-1.0) ** np.arange(u.size) + 0.01 * (u - u.mean())
    result = fit_isoflop(runs)
    se = [m.log_params_se for m in result.isoflop]
    assert se[-1] > 10 * max(se[:-1])
    Cs = np.array([m.flops for m in result.isoflop])
    Ns = np.array([m.params for m in result.isoflop])
    unweighted = fit_power_law(Cs, Ns).exponent
    assert abs(unweighted - A_TRUE) > 0.01  # the biased vertex pulls an unweighted fit off
    assert abs(result.allocation["a"] - A_TRUE) < 0.3 * abs(unweighted - A_TRUE)
    # by hand with numpy: each budget's parabola, its vertex and the delta-method variance of the
    # vertex from the coefficients' covariance s^2 (X'X)^-1, s^2 = RSS / (n - 3); then the least
    # squares line of ln N* on ln C, each vertex weighted by 1 / variance
    log_c, vertex, variance = [], [], []
    for c, budget in runs.groupby("flops"):
        u, loss = np.log(budget["params"].to_numpy()), budget["loss"].to_numpy()
        (q2, q1, q0), cov = np.polyfit(u, loss, 2, cov="unscaled")
        rss = np.sum((loss - (q2 * u**2 + q1 * u + q0)) ** 2)
        grad = np.array([q1 / (2 * q2**2), -1 / (2 * q2), 0.0])  # of -q1 / (2 q2)
        log_c.append(np.log(c))
        vertex.append(-q1 / (2 * q2))
        variance.append(grad @ cov @ grad * rss / (u.size - 3))
    variance = np.array(variance)
    assert variance.min() > 0.01 * np.median(variance)  # no variance floor applies here
    np.testing.assert_allclose(np.log(Ns), vertex, rtol=1e-9)
    np.testing.assert_allclose(se, np.sqrt(variance), rtol=1e-6)
    by_hand = np.polyfit(log_c, vertex, 1, w=1 / np.sqrt(variance))[0]  # w multiplies residuals
    assert result.allocation["a"] == pytest.approx(by_hand, rel=1e-9)


def test_weighted_power_law_by_hand() -> None:
    C = np.array([1e18, 1e19, 1e20])
    y = np.array([1e8, 1e8 * 10**0.5, 1e10])  # the first two lie on a slope of 0.5
    assert fit_power_law(C, y, np.array([1.0, 1.0, 0.0])).exponent == pytest.approx(0.5)
    # ln C = 0, 1, 2 and ln y = 0, 2, 2 weighted 1, 1, 2: weighted means 5/4 and 3/2, slope
    # sum w dx dz / sum w dx^2 = (15/8 - 1/8 + 3/4) / (25/16 + 1/16 + 9/8) = 10/11 (unweighted: 1)
    C, y = np.exp([0.0, 1.0, 2.0]), np.exp([0.0, 2.0, 2.0])
    assert fit_power_law(C, y, np.array([1.0, 1.0, 2.0])).exponent == pytest.approx(10 / 11)
    assert fit_power_law(C, y).exponent == pytest.approx(1.0)
    assert fit_power_law(C, y).exponent == pytest.approx(np.polyfit(np.log(C), np.log(y), 1)[0])


def test_running_median_removes_a_dip_and_keeps_a_monotone_curve() -> None:
    curve = np.linspace(4.0, 3.0, 12)
    np.testing.assert_array_equal(smooth_curve(curve), curve)
    dipped = curve.copy()
    dipped[6] = 2.0
    assert smooth_curve(dipped)[6] > 3.3


def test_envelope_is_taken_over_smoothed_curves() -> None:
    curves = curve_runs()
    grid, n_best, *_ = envelope(curves)
    smallest = curves["params"].min()
    assert not np.any(n_best[grid > 1e18] == smallest)
    # one evaluation of the smallest model dips far below every curve, late in its run
    mine = curves.index[curves["params"] == smallest]
    at = mine[-10]
    glitched = curves.copy()
    glitched.loc[at, "loss"] = 0.8 * curves["loss"].min()
    assert glitched.loc[at, "flops"] > 1e18
    g_grid, g_best, *_ = envelope(glitched)
    assert not np.any(g_best[g_grid > 1e18] == smallest)
    result = fit_envelope(glitched)
    assert result.allocation["a"] == pytest.approx(fit_envelope(curves).allocation["a"], abs=1e-3)


BEYOND_TRIALS = 80  # noisy tables (about 9 s in all: 200 resamples each)
BEYOND_LEVEL = 0.9


@lru_cache(maxsize=2)
def _beyond_the_ladder(misfit: bool = True) -> tuple[float, tuple[tuple[float, float, float], ...]]:
    """Approach 2's expected loss at 10x the largest budget on BEYOND_TRIALS noisy tables: the
    true loss and each table's (estimate, interval low, interval high). IsoFLOP profiles are
    parabolas in ln N around minima on a known power law, 1% noise, 6 sizes a budget. Without
    ``misfit`` the interval is the bootstrap's alone (the frontier's form error left out)."""
    alpha_c, c_c, k_n, a = 0.05, 1e30, 0.1, 0.5
    budgets, target = (1e17, 3e17, 1e18), 1e19

    def table(seed: int) -> pd.DataFrame:
        rng = np.random.default_rng(seed)
        rows = []
        for c in budgets:
            u0 = np.log(k_n * c**a)
            u = u0 + np.log(10) * np.linspace(-0.6, 0.6, 6)
            loss = ((c_c / c) ** alpha_c + 0.2 * (u - u0) ** 2) * np.exp(0.01 * rng.normal(size=6))
            rows.append(pd.DataFrame({"params": np.exp(u), "tokens": c / (6 * np.exp(u)),
                                      "loss": loss, "flops": c}))  # fmt: skip
        return pd.concat(rows, ignore_index=True)

    from scaling.analysis.prediction.predict import Predictor

    out = []
    for seed in range(BEYOND_TRIALS):
        options = FitOptions(bootstrap=200, seed=seed, level=BEYOND_LEVEL)
        result = fit_isoflop(table(seed), options)
        if not misfit:
            frontier = {k: v for k, v in result.frontier.items() if k != "misfit"}
            result = replace(result, frontier=frontier)
        p = Predictor(result).at_budget(target)
        assert p.loss_ci is not None
        out.append((p.loss, *p.loss_ci))
    return (c_c / target) ** alpha_c, tuple(out)


def test_the_loss_predicted_beyond_the_ladder_carries_the_frontiers_uncertainty() -> None:
    """The interval of the expected loss at 10x the largest budget comes from the frontier
    refitted on every resample (before, it was missing and a new run's interval held the
    run-to-run noise only): its width matches the estimate's real spread over the noisy tables.
    The frontier's form error, which widens it beyond the data, is left out (test_misfit.py)."""
    truth, trials = _beyond_the_ladder(misfit=False)
    points = np.array([t[0] for t in trials])
    assert all(lo < p < hi for p, lo, hi in trials)
    halves = np.array([(hi - lo) / 2 for _, lo, hi in trials])
    spread = 1.645 * np.std(points)  # the 90% half-width the estimate really has
    assert 0.6 < np.mean(halves) / spread < 1.4
    assert abs(np.mean(points) / truth - 1) < 0.01  # no bias from the resampling


def test_the_90_percent_interval_beyond_the_ladder_covers_the_true_loss_90_percent() -> None:
    """Each table's interval covers the true loss or not: with a 90% interval the hits are
    Binomial(n, 0.9), and a correct interval falls below its 1st percentile in at most 1% of
    seed sets; fewer hits say the interval is too narrow."""
    truth, trials = _beyond_the_ladder()
    hits = sum(lo <= truth <= hi for _, lo, hi in trials)
    assert hits >= binom.ppf(0.01, len(trials), BEYOND_LEVEL)  # 65 of 80


def test_approach1_uncertainty_is_labelled_a_subsample() -> None:
    result = fit(curve_runs(), approach=1, options=FitOptions(bootstrap=20, seed=0))
    assert result.bootstrap.kind == "subsample"
    # the loss frontier is refitted on every subsample too: an interval of the expected loss
    from scaling.analysis.prediction.predict import Predictor

    p = Predictor(result).at_budget(3 * result.ranges["C"][1])
    assert p.loss_ci is not None and p.loss_ci[0] < p.loss < p.loss_ci[1]
    np.testing.assert_array_equal(
        result.bootstrap.samples["b"], 1.0 - result.bootstrap.samples["a"]
    )
    assert result.allocation["b"] == 1.0 - result.allocation["a"]


def test_an_edge_minimum_says_which_sizes_to_add() -> None:
    """The health line names the side: a minimum below the sampled sizes asks for smaller ones
    (make demo's case: the optimum lay below the prior's sizes), above them for larger ones."""
    from types import SimpleNamespace

    from scaling.analysis.fitting.results import IsoflopMinimum
    from scaling.analysis.prediction.health import _support

    def minimum(params: float) -> IsoflopMinimum:
        return IsoflopMinimum(2e11, params, 1e6, 2.0, 5, (2.2e4, 1.7e5), (1, 0, 0), True, False)

    below = _support(SimpleNamespace(approach=2, isoflop=[minimum(1.2e4)]))
    above = _support(SimpleNamespace(approach=2, isoflop=[minimum(4e5)]))
    assert any("add smaller sizes" in line for line in below)
    assert any("add larger sizes" in line for line in above)

"""Whether a fit can support a prediction: a verdict with one line per problem.

``fit.json`` carries ``health: {"ok": bool, "problems": [...]}``; ``scaling predict`` refuses an
unhealthy fit (exit status 3) unless ``--allow-unhealthy``, and the report puts the verdict at
its top.  A problem is something that makes the fit's extrapolation unreliable, not a matter of
taste:

* the optimiser did not converge, or a parameter sits on a bound of the search box;
* fewer than :data:`RUNS_PER_PARAMETER` runs per free parameter (approach 3), or fewer than two
  budgets with an interior IsoFLOP minimum, or a minimum at the edge of its budget's sizes
  (approach 2);
* more than :data:`MAX_FAILED_SHARE` of the bootstrap refits failing;
* a suspect run (a final loss far above its IsoFLOP budget's or seed group's,
  :mod:`scaling.analysis.fitting.outliers`) that decides a vertex (other suspects are warnings);
* the loss frontier's own fit (approaches 1 and 2) did not converge;
* a backtest (hold out the top budgets whole, fit the rest, predict the held-out ones:
  :func:`scaling.analysis.report.stats.backtest`) that missed by more than
  :func:`backtest_limit` (the product's goal of :data:`PREDICTION_GOAL` at
  :data:`GOAL_DISTANCE` times beyond the data, scaled to the backtest's own distance, plus the
  held-out runs' noise), or none at all: "not backtested: <why>; <what to add>" (fewer than two
  budgets left to fit, a failed refit, nothing held out to predict).

Warnings (``health["warnings"]``) are what the fit cannot pin but a question may not need: a
parameter whose bootstrap interval is so wide it is not determined (a scale parameter spanning
more than :data:`MAX_SCALE_DECADES` decades, an exponent wider than :data:`MAX_EXPONENT_WIDTH`),
or a term of the law below
:data:`~scaling.analysis.fitting.laws.NEGLIGIBLE_TERM` of the loss at every run. Whether a
question is answered is judged at the point asked (:mod:`.question`): how far beyond the data
and how wide its interval is there. The widths are read at
  :data:`GATE_LEVEL` from the bootstrap samples, whatever ``--level`` the fit reports, so a refit
  at another level passes what this one passes. Each cause is said once: the fitted parameters
  are judged (approach 3: the law's own; approaches 1 and 2: ``a`` and the compute-optimal size at
  the geometric centre of the fitted compute, not ``N_coef`` at C = 1, which trades off against
  ``a`` across tens of decades), never the quantities derived from them (``b = 1 − a``,
  ``D_coef = 1 / (6 N_coef)``, approach 3's ``a``, ``b``, ``G``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from scaling.analysis.fitting.bootstrap import percentile_interval
from scaling.analysis.fitting.laws import NEGLIGIBLE_TERM, get_law
from scaling.analysis.fitting.outliers import suspect_line
from scaling.analysis.fitting.results import FitResult

RUNS_PER_PARAMETER = 2
MAX_SCALE_DECADES = 3.0
MAX_EXPONENT_WIDTH = 0.3
MAX_FAILED_SHARE = 0.2
PREDICTION_GOAL = 0.015  # the product's goal: a prediction within 1.5% ...
GOAL_DISTANCE = 10.0  # ... at 10x beyond the largest fitted compute
NOISE_ALLOWANCE = 2.0  # the held-out runs' own noise a backtest may show, in sigma_log
GATE_LEVEL = 0.9  # the interval level the width gates read, whatever level a fit reports
_EXPONENTS = ("a", "alpha", "beta", "alpha_N", "alpha_D", "alpha_C")
CENTRE_SIZE = "N_opt at the centre"  # approaches 1-2: the size gated instead of N_coef
BACKTEST_MISS = "the backtest ("  # how the line of a backtest that missed begins


def assess(
    result: FitResult,
    *,
    backtest: Mapping[str, Any] | None = None,
    N: np.ndarray | None = None,
    D: np.ndarray | None = None,
) -> dict[str, Any]:
    """The health verdict of ``result``: ``{"ok": bool, "problems": [...], "warnings": [...]}``,
    one line each.

    ``backtest`` (:func:`scaling.analysis.report.stats.backtest`) and the fitted runs' ``N``,
    ``D`` add the checks that need them (without ``backtest`` the backtest is not checked:
    ``scaling fit`` always passes one for approaches 2 and 3).
    """
    problems = _convergence(result) + _support(result) + _failed_refits(result)
    warnings = _widths(result)
    deciding, other = _suspects(result)
    problems, warnings = problems + deciding, warnings + other
    if N is not None and D is not None:
        warnings += _negligible_terms(result, N, D)
    if backtest is not None:
        problems += _backtest(backtest, result.noise)
    return {"ok": not problems, "problems": problems, "warnings": warnings}


def _convergence(result: FitResult) -> list[str]:
    conv = result.convergence
    out = []
    if not conv.converged:
        out.append(f"the optimiser did not converge ({conv.message})")
    if result.frontier is not None and not result.frontier.get("converged", True):
        out.append("the loss frontier's fit did not converge: its predicted losses are not fitted")
    if conv.on_bounds:
        out.append(
            f"parameter(s) {', '.join(conv.on_bounds)} on a bound of the search box: the law "
            "is degenerate for these runs"
        )
    return out


def _support(result: FitResult) -> list[str]:
    if result.approach == 3:
        P = get_law(result.law).n_params
        need = RUNS_PER_PARAMETER * P
        if result.n_points < need:
            return [
                f"{result.n_points} runs for {P} free parameters: at least {need} are needed "
                "before the law can be trusted beyond the data"
            ]
        return []
    if result.approach != 2:
        return []
    out = []
    for m in result.isoflop:
        if m.at_edge or not m.used:
            lo, hi = m.params_range
            below = (
                m.params is not None and math.isfinite(m.params) and m.params <= math.sqrt(lo * hi)
            )
            out.append(
                f"the IsoFLOP minimum of budget C={m.flops:.3g} lies at or beyond the edge of "
                f"its sizes {lo:.3g}..{hi:.3g}: add {'smaller' if below else 'larger'} sizes"
            )
    return out


def _suspects(result: FitResult) -> tuple[list[str], list[str]]:
    """Suspect runs (:mod:`scaling.analysis.fitting.outliers`): those deciding a vertex are
    problems, the others warnings."""
    suspects = (result.outliers or {}).get("suspects") or []
    deciding = [suspect_line(s) for s in suspects if s.get("decides_vertex")]
    return deciding, [suspect_line(s) for s in suspects if not s.get("decides_vertex")]


def gated_samples(result: FitResult) -> dict[str, np.ndarray]:
    """The bootstrap samples of the quantities the width gates judge: the fitted parameters, not
    what is derived from them (module docstring)."""
    samples = result.bootstrap.samples if result.bootstrap is not None else {}
    if result.approach == 3:
        return {k: np.asarray(samples[k]) for k in get_law(result.law).param_names if k in samples}
    out = {k: np.asarray(samples[k]) for k in ("a",) if k in samples}
    if "a" in samples and "N_coef" in samples and result.ranges.get("C"):
        lo, hi = result.ranges["C"]
        centre = math.sqrt(lo * hi)
        out[CENTRE_SIZE] = np.asarray(samples["N_coef"]) * centre ** np.asarray(samples["a"])
    return out


def _failed_refits(result: FitResult) -> list[str]:
    boot = result.bootstrap
    if boot is None or not boot.n_resamples:
        return []
    if boot.n_failed / boot.n_resamples > MAX_FAILED_SHARE:
        return [
            f"{boot.n_failed} of {boot.n_resamples} bootstrap refits failed: the fit is "
            "unstable under resampling"
        ]
    return []


def _widths(result: FitResult) -> list[str]:
    out = []
    for name, values in gated_samples(result).items():
        interval = percentile_interval(values, GATE_LEVEL, min_values=2)
        if interval is None:
            continue
        lo, hi = interval
        if name in _EXPONENTS:
            if hi - lo > MAX_EXPONENT_WIDTH:
                out.append(
                    f"exponent {name} is not determined: its {GATE_LEVEL:.0%} interval is "
                    f"[{lo:.3g}, {hi:.3g}]"
                )
        elif lo > 0 and math.log10(hi / lo) > MAX_SCALE_DECADES:
            what = (
                "the compute-optimal size at the data's centre"
                if name == CENTRE_SIZE
                else f"parameter {name}"
            )
            out.append(
                f"{what} is not determined: its {GATE_LEVEL:.0%} interval "
                f"[{lo:.3g}, {hi:.3g}] spans {math.log10(hi / lo):.0f} decades"
            )
    return out


def _negligible_terms(result: FitResult, N: np.ndarray, D: np.ndarray) -> list[str]:
    if result.approach != 3:
        return []
    return [
        f"the {name} term is below {NEGLIGIBLE_TERM:g} of the loss at every run: its "
        "parameters are not identified by these runs"
        for name, share in get_law(result.law).term_shares(result.params, N, D).items()
        if share < NEGLIGIBLE_TERM
    ]


def backtest_distance(bt: Mapping[str, Any]) -> float:
    """How far the backtest extrapolated: the geometric mean of the held-out budgets over the
    largest fitted one (1 without both)."""
    train, test = bt.get("train_budgets") or [], bt.get("test_budgets") or []
    if not train or not test:
        return 1.0
    return float(np.exp(np.mean(np.log(test)))) / max(train)


def backtest_limit(bt: Mapping[str, Any], noise: Mapping[str, Any] | None) -> float:
    """The largest mean relative error a backtest may show: :data:`PREDICTION_GOAL` scaled to
    its distance (``goal * ln r / ln GOAL_DISTANCE``, r from :func:`backtest_distance`), plus
    :data:`NOISE_ALLOWANCE` times the run-to-run noise (a held-out run misses the mean curve by
    its own noise however right the law)."""
    r = max(backtest_distance(bt), 1.0)
    sigma = float(noise["sigma_log"]) if noise and noise.get("sigma_log") is not None else 0.0
    sigma = sigma if math.isfinite(sigma) else 0.0
    return PREDICTION_GOAL * math.log(r) / math.log(GOAL_DISTANCE) + NOISE_ALLOWANCE * sigma


def _backtest(bt: Mapping[str, Any], noise: Mapping[str, Any] | None) -> list[str]:
    if "not_backtested" in bt:
        return [f"not backtested: {bt['not_backtested']}"]
    err = bt.get("mean_abs_rel")
    limit = backtest_limit(bt, noise)
    if err is not None and math.isfinite(err) and err > limit:
        test = ", ".join(f"{c:.3g}" for c in bt.get("test_budgets") or [])
        return [
            f"{BACKTEST_MISS}{bt.get('held_out', 'held out the top budgets')}: C = {test}, "
            f"{backtest_distance(bt):.2g}x beyond the budgets fitted) missed the held-out "
            f"losses by {100 * err:.1f}% on average (limit {100 * limit:.2g}%: the "
            f"{100 * PREDICTION_GOAL:g}% goal at {GOAL_DISTANCE:g}x scaled to that distance, "
            f"plus {NOISE_ALLOWANCE:g} sigma of run noise)"
        ]
    return []


def backtest_misses_only(health: Mapping[str, Any]) -> bool:
    """Whether every problem of a fit's ``health`` is a backtest that missed."""
    problems = list(health.get("problems") or [])
    return bool(problems) and all(p.startswith(BACKTEST_MISS) for p in problems)


def problem_line(health: Mapping[str, Any]) -> str:
    """The first problem and how many more, for a one-line refusal."""
    problems = list(health.get("problems") or [])
    if not problems:
        return "no problem found"
    more = f" (and {len(problems) - 1} more problem(s); see report.md)" if len(problems) > 1 else ""
    return problems[0] + more

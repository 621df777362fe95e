"""The loss frontier's doubt about its own form, beyond the largest fitted budget (approach 2).

The frontier ``L_opt(C)`` is a power law (with an irreducible term from 5 budgets on). A true
frontier that bends otherwise is missed by an amount that grows with the distance beyond the
data, and a bootstrap around the fitted form does not see it. The misfit is measured on the
ladder itself:

* **Backtests.** For each ``k`` that leaves at least two budgets, and at least as many as the
  form has parameters, the top ``k`` budgets are held out, the same form is refitted on the rest
  and predicts each held-out vertex: the error ``r = ln(L_vertex / L_predicted)``. The same
  refit on every bootstrap resample's vertex losses gives the covariance ``S`` of ``r`` that the
  runs' noise alone would make.
* **A missed curvature.** A smooth bend is a curvature ``kappa`` of ``ln L`` in ``ln C``. A fit
  through budgets ``x_1 .. x_m`` (``x = ln C``) misses a point ``x`` beyond them by about
  ``kappa q``, ``q`` what a least-squares line through them misses of ``x^2 / 2`` at ``x``,
  counted from its miss at the largest of them (:func:`unit_miss`). Least squares of
  ``r = kappa q + noise``, each error weighted by the inverse of its resampled variance, gives
  ``kappa_hat``, and ``S`` its variance ``V`` (:func:`curvature_estimate`). Generalised least
  squares with the full ``S`` was measured to be fragile: its weights alternate in sign to
  cancel the noise the held-out points share, and cancel most of a bend that is not exactly a
  curvature with it.
* **The model error** at a budget ``C`` beyond the data has the standard deviation
  ``scale * q(C)`` in log loss, ``scale = sqrt(kappa_hat^2 + V)``: the root mean square of
  ``kappa`` given the backtests (a flat prior on it), the bend's size with its uncertainty. Its
  sign is not used: a bend the backtests see does not go on at the same curvature (shifting the
  prediction by ``kappa_hat q`` covered 64-85% of new runs in ``benchmarks/bench_coverage.py``).
  Inside the fitted budgets it is 0.

:mod:`scaling.analysis.prediction.predict` draws it (seeded normal draws, :func:`model_errors`)
onto every bootstrap resample of the frontier, so ``loss_ci`` and ``loss_pi`` hold it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

Array = np.ndarray

METHOD = (
    "the top k budgets held out (each k leaving >= 2 and >= the form's parameters), the form "
    "refitted on the rest and on every bootstrap resample, the held-out vertices predicted; the "
    "curvature of ln L in ln C those errors imply (inverse-variance weighted least squares, its "
    "variance from the resamples' covariance); model error sd = sqrt(curvature^2 + variance) * "
    "unit_miss(C) beyond the largest budget"
)
MIN_RESAMPLES = 20  # fewer finite backtest resamples than this: no noise covariance, no misfit
DRAWS_PER_SAMPLE = 16  # model-error draws paired with each bootstrap resample of the frontier
STREAM = 21  # the draws' random stream beside the fit's seed (not the run-noise draws' stream)


def unit_miss(x_fit: Array, x: Array | float) -> Array:
    """What a least-squares line through ``x_fit`` misses of ``x^2 / 2`` at ``x``, minus its miss
    at ``max(x_fit)``: a unit curvature's extrapolation error beyond the fitted points (0 at the
    largest of them). ``x`` in ``ln C``."""
    xf = np.asarray(x_fit, dtype=float)
    centre = xf.mean()
    g = (xf - centre) ** 2 / 2  # centred: the same line, better conditioned than x^2 at x ~ 40
    dx = xf - centre
    slope = float(np.sum(dx * (g - g.mean())) / np.sum(dx * dx))

    def miss(u: Array | float) -> Array:
        du = np.asarray(u, dtype=float) - centre
        return du**2 / 2 - (g.mean() + slope * du)

    return np.asarray(miss(x) - miss(xf.max()), dtype=float)


def curvature_estimate(r: Array, resampled: Array, q: Array) -> tuple[float, float] | None:
    """``(kappa_hat, V)`` of ``r = kappa q + e``: weighted least squares, each error weighted by
    the inverse of its resampled variance, and the variance of that estimate from the full
    covariance of the rows of ``resampled`` (one row per bootstrap resample; non-finite rows
    dropped): the held-out points share fitted budgets and held-out vertices, so their errors are
    correlated. None with fewer than :data:`MIN_RESAMPLES` finite rows."""
    rows = np.asarray(resampled, dtype=float)
    rows = rows[np.all(np.isfinite(rows), axis=1)]
    if rows.shape[0] < MIN_RESAMPLES:
        return None
    return weighted_curvature(r, np.atleast_2d(np.cov(rows, rowvar=False)), q)


def weighted_curvature(r: Array, S: Array, q: Array) -> tuple[float, float] | None:
    """``(kappa_hat, V)`` of ``r = kappa q + e`` with ``e``'s covariance ``S``: least squares
    weighted by the inverse variances (``S``'s diagonal), its variance through the full ``S``."""
    # noise-free resamples (every variance 0) weigh the points equally
    tau2 = np.maximum(np.diag(S), 1e-16)
    w = q / tau2
    norm = float(w @ q)
    if not (math.isfinite(norm) and norm > 0):
        return None
    w = w / norm
    return float(w @ r), float(w @ S @ w)


def model_error_sd(
    misfit: Mapping[str, Any] | None, fitted_flops: Array | Sequence[float], C: float
) -> float:
    """Standard deviation of the frontier's form error in log loss at budget ``C``: 0 inside
    the fitted budgets and without a recorded misfit (a fit.json written before it was)."""
    if not misfit or misfit.get("scale") is None or not math.isfinite(float(misfit["scale"])):
        return 0.0
    x_fit = np.log(np.asarray(fitted_flops, dtype=float))
    x = math.log(C)
    if x <= x_fit.max():
        return 0.0
    return float(misfit["scale"]) * float(unit_miss(x_fit, x))


def model_errors(n: int, sd: float, seed: int) -> Array:
    """``(n, DRAWS_PER_SAMPLE)`` seeded normal draws of the model error in log loss (zeros when
    ``sd`` is 0): the same digits for the same fit."""
    if sd <= 0:
        return np.zeros((n, 1))
    rng = np.random.default_rng([seed, STREAM])
    return sd * rng.standard_normal((n, DRAWS_PER_SAMPLE))

"""A power law of compute, ``x*(C) = a C^b``, fitted to per-budget optima with intervals.

**The laws** ``ln x* = ln a + b ln C`` are fitted by weighted least squares over the budgets with
an optimum, weights ``1 / Var(ln x*)`` (floored at 1% of their median).  Intervals are the
regression's standard errors: the covariance ``(X^T W X)^-1`` of the vertex variances, scaled up
by the reduced chi-square of the scatter about the line when there are residual degrees of
freedom (``n - 2 > 0``) and it exceeds 1 (then Student t quantiles, else normal ones); without
vertex variances, ordinary least squares with ``s^2`` of the residuals (none with two budgets).
They are stated in the rule document (``method``) and cover the fit at its ``level``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import ndtri, stdtrit  # not scipy.stats: it breaks where torch cannot import

from scaling.analysis.fitting.isoflop import VARIANCE_FLOOR, VARIANCE_FLOOR_RATIO
from scaling.errors import DataError

Array = np.ndarray

DEFAULT_LEVEL = 0.9


@dataclass(frozen=True)
class LawFit:
    """``x*(C) = coef * C^exponent`` by (weighted) least squares in log space, with intervals."""

    coef: float
    exponent: float
    ci_coef: tuple[float, float] | None
    ci_exponent: tuple[float, float] | None
    cov: tuple[tuple[float, float], tuple[float, float]] | None  # of (ln coef, exponent)
    quantile: float | None  # the t or normal quantile of the intervals
    dof: int
    interval: str  # how the intervals were computed, one line
    n_budgets: int

    def __call__(self, compute: float) -> float:
        return self.coef * compute**self.exponent

    def value_interval(self, compute: float) -> tuple[float, float] | None:
        """The interval of ``x*(compute)`` at the fit's level (delta method in log space)."""
        if self.cov is None or self.quantile is None:
            return None
        g = np.array([1.0, math.log(compute)])
        var = float(g @ np.array(self.cov) @ g)
        if not (math.isfinite(var) and var >= 0):
            return None
        half = self.quantile * math.sqrt(var)
        centre = math.log(self(compute))
        return math.exp(centre - half), math.exp(centre + half)

    def to_dict(self) -> dict[str, Any]:
        return {
            "coef": self.coef,
            "exponent": self.exponent,
            "ci": {
                "coef": None if self.ci_coef is None else list(self.ci_coef),
                "exponent": None if self.ci_exponent is None else list(self.ci_exponent),
            },
            "cov_log_coef_exponent": None if self.cov is None else [list(r) for r in self.cov],
            "quantile": self.quantile,
            "dof": self.dof,
            "interval": self.interval,
            "n_budgets": self.n_budgets,
        }


def fit_power_law(
    compute: Sequence[float],
    values: Sequence[float],
    log_se: Sequence[float] | None = None,
    level: float = DEFAULT_LEVEL,
    se_dof: int | None = None,
) -> LawFit:
    """``ln values = ln a + b ln compute`` by least squares, weighted by ``1 / log_se^2`` when
    every ``log_se`` is known (estimated with ``se_dof`` degrees of freedom: Student t quantiles;
    None: normal ones), with the intervals of the module's text."""
    x, y = np.log(np.asarray(compute, float)), np.log(np.asarray(values, float))
    n = x.size
    if n < 2 or np.ptp(x) <= 0:
        raise DataError("a power law in C needs optima at two compute budgets or more")
    xc = float(x.mean())
    X = np.stack([np.ones(n), x - xc], axis=1)
    dof = n - 2
    var = None if log_se is None else np.asarray(log_se, float) ** 2
    known = var is not None and bool(np.all(np.isfinite(var) & (var > 0)))
    two_sided = (1.0 + level) / 2.0
    cov: Array | None
    if known:
        assert var is not None
        floor = max(VARIANCE_FLOOR, VARIANCE_FLOOR_RATIO * float(np.median(var)))
        w = 1.0 / np.maximum(var, floor)
        cov = np.linalg.inv(X.T @ (w[:, None] * X))
        beta = cov @ X.T @ (w * y)
        resid = y - X @ beta
        chi2 = float(w @ resid**2) / dof if dof > 0 else math.nan
        if dof > 0 and chi2 > 1.0:
            cov = cov * chi2
            q = float(stdtrit(dof, two_sided))
            how = (
                f"weighted least squares on {n} budget optima, the vertex variances' covariance "
                f"scaled by the scatter about the line (reduced chi-square {chi2:.3g}), Student "
                f"t with {dof} dof"
            )
        else:
            scatter = f" (reduced chi-square {chi2:.3g} <= 1)" if dof > 0 else ""
            if se_dof:
                q = float(stdtrit(se_dof, two_sided))
                quantiles = f"Student t with the {se_dof} dof of the pooled parabola residuals"
            else:
                q = float(ndtri(two_sided))
                quantiles = "normal quantiles"
            how = (
                f"weighted least squares on {n} budget optima, the covariance of the per-budget "
                f"vertex variances (delta method){scatter}, {quantiles}"
            )
    else:
        beta, *_ = np.linalg.lstsq(X, y, rcond=None)
        resid = y - X @ beta
        if dof > 0:
            s2 = float(resid @ resid) / dof
            cov = s2 * np.linalg.inv(X.T @ X)
            q = float(stdtrit(dof, two_sided))
            how = (
                f"ordinary least squares on {n} budget optima (no vertex variances), the "
                f"residual standard errors, Student t with {dof} dof"
            )
        else:
            cov, q = None, None
            how = (
                "none: two budget optima and no vertex variances (no residual degrees of "
                "freedom); add a budget, or grid points around each optimum"
            )
    # from (intercept at mean ln C, slope) to (ln coef, exponent): ln a = beta0 - xc * beta1
    J = np.array([[1.0, -xc], [0.0, 1.0]])
    ln_a, b = float(beta[0] - xc * beta[1]), float(beta[1])
    ci_a = ci_b = cov_out = None
    if cov is not None and q is not None:
        full = J @ cov @ J.T
        se_a, se_b = math.sqrt(max(full[0, 0], 0.0)), math.sqrt(max(full[1, 1], 0.0))
        ci_a = (math.exp(ln_a - q * se_a), math.exp(ln_a + q * se_a))
        ci_b = (b - q * se_b, b + q * se_b)
        cov_out = (
            (float(full[0, 0]), float(full[0, 1])),
            (float(full[1, 0]), float(full[1, 1])),
        )
    return LawFit(
        coef=math.exp(ln_a),
        exponent=b,
        ci_coef=ci_a,
        ci_exponent=ci_b,
        cov=cov_out,
        quantile=q,
        dof=dof,
        interval=how,
        n_budgets=n,
    )

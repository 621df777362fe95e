"""Approaches 1 and 2 after their compute-optimal points: power laws in C and the loss frontier.

Both approaches end with points ``(C, N_opt, L_opt)``; from them come ``N_opt = k_N C^a`` and
``D_opt = k_D C^b`` by least squares in log space (Hoffmann et al. 2022, §3.1-3.2) and the loss
frontier ``L_opt(C) = E + (C_c/C)^alpha_C`` (Kaplan et al. 2020, eq. 1.3).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from scaling.analysis.allocation import extreme_allocation_warning
from scaling.analysis.bootstrap import resample_weights
from scaling.analysis.laws import get_law
from scaling.analysis.optimize import minimise_law
from scaling.analysis.results import Bootstrap, Convergence, FitOptions, FitResult, IsoflopMinimum
from scaling.counting import tokens_from_compute

Array = np.ndarray

# One bootstrap replicate: resample counts per row -> the (C, N_opt) points refitted.
PointsFn = Callable[[Array], tuple[Array, Array]]


@dataclass(frozen=True)
class PowerLaw:
    """``y = coef * C^exponent``, least squares in log space."""

    exponent: float
    coef: float

    def __call__(self, C: Array | float) -> Array:
        return self.coef * np.asarray(C, dtype=float) ** self.exponent


def fit_power_law(C: Array, y: Array) -> PowerLaw:
    """Least squares of ``log y = log coef + exponent log C`` (Hoffmann et al. 2022, §3.1-3.2)."""
    slope, intercept = np.polyfit(np.log(C), np.log(y), 1)
    return PowerLaw(exponent=float(slope), coef=float(np.exp(intercept)))


def _allocation_laws(C: Array, N: Array) -> tuple[PowerLaw, PowerLaw]:
    """``N_opt = k_N C^a`` and ``D_opt = k_D C^b`` through compute-optimal points."""
    return fit_power_law(C, N), fit_power_law(C, tokens_from_compute(C, N))


def frontier_result(
    *,
    approach: int,
    points: Sequence[IsoflopMinimum],
    runs_n: int,
    ranges: Mapping[str, tuple[float, float]],
    options: FitOptions,
    warnings: list[str],
    minima: tuple[IsoflopMinimum, ...],
    bootstrap_fn: PointsFn,
    bootstrap_groups: Array | None,
    n_rows: int,
) -> FitResult:
    """The :class:`FitResult` of approach 1 or 2 from its compute-optimal ``points``.

    ``bootstrap_fn`` recomputes the points of one resample (counts per row, ``n_rows`` rows,
    drawn within ``bootstrap_groups`` when given).
    """
    Cs = np.array([p.flops for p in points])
    Ns = np.array([p.params for p in points])
    Ls = np.array([p.loss for p in points])
    fit_n, fit_d = _allocation_laws(Cs, Ns)
    exponents = {"a": fit_n.exponent, "b": fit_d.exponent}
    allocation = {
        "a": fit_n.exponent,
        "b": fit_d.exponent,
        "N_coef": fit_n.coef,
        "D_coef": fit_d.coef,
    }
    frontier = fit_loss_frontier(Cs, Ls, options)
    for c in (Cs.min(), Cs.max()):
        warning = extreme_allocation_warning(c, float(fit_d(c) / fit_n(c)))
        if warning:
            warnings.append(warning)
    boot = None
    if options.bootstrap > 0:
        W = resample_weights(n_rows, options.bootstrap, options.seed, groups=bootstrap_groups)
        a_s, b_s, kn_s, kd_s = (np.full(options.bootstrap, np.nan) for _ in range(4))
        for r in range(options.bootstrap):
            c_r, n_r = bootstrap_fn(W[r])
            if c_r.size < 2 or np.unique(c_r).size < 2:
                continue
            pn, pd_ = _allocation_laws(c_r, n_r)
            a_s[r], kn_s[r], b_s[r], kd_s[r] = pn.exponent, pn.coef, pd_.exponent, pd_.coef
        boot = Bootstrap(
            n_resamples=options.bootstrap,
            seed=options.seed,
            level=options.level,
            samples={"a": a_s, "b": b_s, "N_coef": kn_s, "D_coef": kd_s},
            n_failed=int(np.isnan(a_s).sum()),
        )
    return FitResult(
        law="chinchilla",
        approach=approach,
        params={},
        exponents=exponents,
        allocation=allocation,
        objective=None,
        n_points=runs_n,
        ranges=ranges,
        options=options,
        convergence=Convergence(True, "closed-form least squares", 1, 0),
        warnings=tuple(warnings),
        bootstrap=boot,
        isoflop=minima,
        frontier=frontier,
    )


def fit_loss_frontier(Cs: Array, Ls: Array, options: FitOptions) -> dict[str, Any] | None:
    """``L_opt(C) = E + (C_c/C)^alpha_C`` through the compute-optimal losses (Kaplan eq. 1.3)."""
    if Cs.size < 2 or np.unique(Cs).size < 2:
        return None
    name = "kaplan_c_e" if Cs.size >= 5 else "kaplan_c"
    law = get_law(name)
    X = law.design(C=Cs)
    opts = replace(options, grid_stride=1, polish=3, extra_starts=())
    theta, objective, conv, _ = minimise_law(law, X, np.log(Ls), opts)
    return {
        "law": name,
        "equation": law.equation,
        "params": law.to_params(theta),
        "objective": objective,
        "converged": conv.converged,
        "points": {"flops": Cs.tolist(), "loss": Ls.tolist()},
    }

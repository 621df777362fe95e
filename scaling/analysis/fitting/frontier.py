"""Approaches 1 and 2 after their compute-optimal points: power laws in C and the loss frontier.

Both approaches end with points ``(C, N_opt, L_opt)``.  From them ``N_opt = k_N C^a`` is fitted
by least squares of ``log N_opt = log k_N + a log C`` (Hoffmann et al. 2022, §3.1-3.2), weighted
when the estimator gives each point a weight (approach 2: the inverse variance of its ``log N*``;
approach 1: equal weights).  The data allocation follows from ``C = 6 N D``
(:mod:`scaling.counting`) and is not fitted separately: ``D_opt = C / (6 N_opt) = k_D C^b`` with
``b = 1 - a`` and ``k_D = 1 / (6 k_N)``, in the point estimate and in every resample.  The loss
frontier ``L_opt(C) = E + (C_c/C)^alpha_C`` (Kaplan et al. 2020, eq. 1.3) is fitted through the
points' losses (E from :data:`IRREDUCIBLE_FROM` points on), and for approach 2 its form error
beyond the largest budget is measured by holding out the top budgets (:mod:`.misfit`).

Uncertainty comes from :class:`Replicates`: the compute-optimal points of each resample, drawn by
the estimator (approach 2: a residual bootstrap; approach 1: a subsample of runs), refitted here
with the same weights as the point estimate.  A resample the estimator marks failed (``None``) is
NaN in every sample and counted in ``n_failed``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from scaling.analysis.fitting.allocation import extreme_allocation_warning
from scaling.analysis.fitting.laws import Law, frontier_law, get_law
from scaling.analysis.fitting.misfit import METHOD as MISFIT_METHOD
from scaling.analysis.fitting.misfit import curvature_estimate, unit_miss
from scaling.analysis.fitting.optimize import (
    TIGHT_STOP,
    batched_lbfgs,
    make_objective,
    minimise_law,
)
from scaling.analysis.fitting.results import (
    Bootstrap,
    Convergence,
    FitOptions,
    FitResult,
    IsoflopMinimum,
)
from scaling.counting import tokens_from_compute

Array = np.ndarray


@dataclass(frozen=True)
class PowerLaw:
    """``y = coef * C^exponent``, least squares in log space."""

    exponent: float
    coef: float

    def __call__(self, C: Array | float) -> Array:
        return self.coef * np.asarray(C, dtype=float) ** self.exponent


@dataclass(frozen=True)
class Replicates:
    """Compute-optimal points of each resample: ``(C, N_opt)`` arrays, ``None`` where it failed.

    ``kind`` is :attr:`Bootstrap.kind`: ``"bootstrap"`` or ``"subsample"``.
    """

    points: Sequence[tuple[Array, Array] | None]
    kind: str = "bootstrap"
    # each resample's compute-optimal losses, aligned with its points (None: not drawn), from
    # which the loss frontier is refitted per resample (its interval at any C)
    losses: Sequence[Array | None] | None = None


def fit_power_law(C: Array, y: Array, weights: Array | None = None) -> PowerLaw:
    """Least squares of ``log y = log coef + exponent log C``, each point weighted by ``weights``
    (inverse variances of ``log y``; equal weights when ``None``)."""
    x, z = np.log(np.asarray(C, dtype=float)), np.log(np.asarray(y, dtype=float))
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=float)
    xm, zm = np.sum(w * x) / np.sum(w), np.sum(w * z) / np.sum(w)
    slope = np.sum(w * (x - xm) * (z - zm)) / np.sum(w * (x - xm) ** 2)
    with np.errstate(over="ignore"):  # a degenerate resample's slope: coef inf, judged later
        coef = float(np.exp(zm - slope * xm))
    return PowerLaw(exponent=float(slope), coef=coef)


def allocation_from(fit_n: PowerLaw) -> dict[str, float]:
    """``a, b, N_coef, D_coef`` of ``N_opt = k_N C^a``; ``D_opt = C / 6N_opt`` gives ``b = 1 - a``
    and ``D_coef = 1 / (6 k_N)``."""
    return {
        "a": fit_n.exponent,
        "b": 1.0 - fit_n.exponent,
        "N_coef": fit_n.coef,
        "D_coef": float(tokens_from_compute(1.0, fit_n.coef)),
    }


def _bootstrap(replicates: Replicates, weights: Array | None, options: FitOptions) -> Bootstrap:
    """Refit ``N_opt(C)`` on each resample's points (same weights); ``b`` is ``1 - a``."""
    n = len(replicates.points)
    samples = {k: np.full(n, np.nan) for k in ("a", "b", "N_coef", "D_coef")}
    for r, pts in enumerate(replicates.points):
        if pts is None:
            continue
        c_r, n_r = pts
        if c_r.size < 2 or np.unique(c_r).size < 2 or not np.all(np.isfinite(n_r)):
            continue
        fit_r = fit_power_law(c_r, n_r, weights)
        if not (np.isfinite(fit_r.coef) and fit_r.coef > 0):  # a degenerate slope: failed
            continue
        alloc = allocation_from(fit_r)
        for k, v in alloc.items():
            samples[k][r] = v
    return Bootstrap(
        n_resamples=n,
        seed=options.seed,
        level=options.level,
        samples=samples,
        n_failed=int(np.isnan(samples["a"]).sum()),
        kind=replicates.kind,
    )


def frontier_result(
    *,
    approach: int,
    points: Sequence[IsoflopMinimum],
    runs_n: int,
    ranges: Mapping[str, tuple[float, float]],
    options: FitOptions,
    warnings: list[str],
    minima: tuple[IsoflopMinimum, ...],
    replicates: Replicates | None,
    weights: Array | None = None,
) -> FitResult:
    """The :class:`FitResult` of approach 1 or 2 from its compute-optimal ``points``.

    ``weights`` (one per point, inverse variances of ``log N_opt``) weight the fit of
    ``N_opt(C)`` and every refit of ``replicates``, whose points must line up with ``points``
    when weights are given.
    """
    Cs = np.array([p.flops for p in points])
    Ns = np.array([p.params for p in points])
    Ls = np.array([p.loss for p in points])
    fit_n = fit_power_law(Cs, Ns, weights)
    allocation = allocation_from(fit_n)
    frontier = fit_loss_frontier(Cs, Ls, options)
    for c in (Cs.min(), Cs.max()):
        n_c = float(fit_n(c))
        warning = extreme_allocation_warning(c, float(tokens_from_compute(c, n_c)) / n_c)
        if warning:
            warnings.append(warning)
    boot = _bootstrap(replicates, weights, options) if replicates is not None else None
    if frontier is not None and replicates is not None and replicates.losses is not None:
        frontier["samples"] = frontier_samples(frontier, replicates, options)
        if approach == 2:
            frontier["misfit"] = frontier_misfit(frontier, replicates, options)
    return FitResult(
        law="chinchilla",
        approach=approach,
        params={},
        exponents={"a": allocation["a"], "b": allocation["b"]},
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


# The loss frontier is fitted by least squares in log loss: Huber's kink (delta 1e-3, meant for
# hundreds of runs with outliers) would make a fit through a handful of minima an L1 fit whose
# warm refits stall at the kinks, and the resampled frontier would not move. No log-residual of a
# compute-optimal loss comes near 1, so this delta is plain least squares.
FRONTIER_HUBER_DELTA = 1.0


def frontier_samples(
    frontier: Mapping[str, Any], replicates: Replicates, options: FitOptions
) -> dict[str, list[float | None]]:
    """The frontier's parameters refitted on each resample's compute-optimal losses (the same
    law and objective, started from the point estimate; None where the resample failed): what
    makes the loss predicted at a budget an interval, not the point estimate plus run noise.

    Resamples that share their compute points (approach 2: every one) are refitted together,
    one batched L-BFGS over all of them (each row its own losses)."""
    law = get_law(frontier["law"])
    start = np.array(law.from_params(frontier["params"]), dtype=float)
    n = len(replicates.points)
    thetas = np.full((n, start.size), np.nan)
    groups: dict[tuple[float, ...], list[int]] = {}
    losses_of = replicates.losses or [None] * len(replicates.points)
    for r, (pts, losses) in enumerate(zip(replicates.points, losses_of, strict=True)):
        if pts is None or losses is None:
            continue
        c_r, l_r = np.asarray(pts[0], dtype=float), np.asarray(losses, dtype=float)
        if np.unique(c_r).size >= 2 and np.all(np.isfinite(l_r)) and np.all(l_r > 0):
            groups.setdefault(tuple(c_r), []).append(r)
    for cs, members in groups.items():
        Y = np.log(np.array([losses_of[r] for r in members], dtype=float))
        thetas[np.array(members)] = _refit_rows(law, np.array(cs), Y, start)
    out: dict[str, list[float | None]] = {k: [] for k in law.param_names}
    for theta in thetas:
        values = law.to_params(theta) if np.all(np.isfinite(theta)) else {}
        for k in law.param_names:
            out[k].append(float(values[k]) if k in values else None)
    return out


def _frontier_starts(law: Law, Cs: Array, Ls: Array) -> tuple[tuple[float, ...], ...]:
    """Starts from the points themselves, beside the law's grid: a power law through ``L - E``
    in logs, for E = 0 and (with an irreducible term) E at a few shares of the least loss. The
    grid's ``log C_c`` (10 to 40) lies below ``log C`` of budgets above ~2e17 FLOPs, where every
    grid start puts the loss below 1 and descends to ``alpha_C = 0`` (a flat L = 1)."""
    lower, upper = np.array(law.lower), np.array(law.upper)
    shares = (0.0, 0.5, 0.8, 0.95) if law.irreducible else (0.0,)
    starts = []
    for share in shares:
        floor = share * float(Ls.min())
        line = fit_power_law(Cs, Ls - floor)
        alpha = -line.exponent
        if not (alpha > 0 and np.isfinite(line.coef) and line.coef > 0):
            continue
        theta = [alpha, math.log(line.coef) / alpha]  # L - E = coef C^-alpha = (C_c/C)^alpha
        if law.irreducible:
            theta.append(math.log(max(floor, 1e-3 * float(Ls.min()))))
        starts.append(tuple(np.clip(theta, lower, upper).tolist()))
    return tuple(starts)


def _refit_rows(law: Law, Cs: Array, Y: Array, start: Array) -> Array:
    """The frontier refitted on each row of log losses ``Y`` at budgets ``Cs`` (one batched
    L-BFGS from ``start``): parameters per row, NaN where a refit failed."""
    fg = make_objective(law, law.design(C=Cs), Y, FRONTIER_HUBER_DELTA)
    rows = np.arange(Y.shape[0])
    x0 = np.tile(start, (Y.shape[0], 1))
    lower, upper = np.array(law.lower), np.array(law.upper)
    batch = batched_lbfgs(fg, x0, lower, upper, rows=rows, **TIGHT_STOP)
    ok = np.isin(batch.status, (0, 1)) & np.isfinite(batch.f)
    return np.where(ok[:, None], batch.x, np.nan)


# From this many compute-optimal points the frontier has an irreducible term (kaplan_c_e).
IRREDUCIBLE_FROM = 5


def _fit_form(
    law: Law, Cs: Array, Ls: Array, options: FitOptions, near: Array | None = None
) -> tuple[Array, float, bool]:
    """``law`` through ``(Cs, Ls)`` by least squares in log loss: parameters, objective,
    converged. From the law's grid and :func:`_frontier_starts`; with ``near`` (a fit of the
    same law to more of the points) from it and those starts only (the backtests' refits: on
    180 of them never a worse optimum than with the grid, in 40% of the time)."""
    starts = _frontier_starts(law, Cs, Ls)
    if near is not None:
        starts += (tuple(np.asarray(near, dtype=float).tolist()),)
    opts = replace(
        options,
        grid_stride=1,
        polish=3,
        extra_starts=starts,
        use_grid=near is None,
        huber_delta=FRONTIER_HUBER_DELTA,
    )
    theta, objective, conv, _ = minimise_law(law, law.design(C=Cs), np.log(Ls), opts)
    return theta, objective, conv.converged


def fit_loss_frontier(Cs: Array, Ls: Array, options: FitOptions) -> dict[str, Any] | None:
    """``L_opt(C) = E + (C_c/C)^alpha_C`` through the compute-optimal losses (Kaplan eq. 1.3)."""
    if Cs.size < 2 or np.unique(Cs).size < 2:
        return None
    law = frontier_law(irreducible=Cs.size >= IRREDUCIBLE_FROM)
    theta, objective, converged = _fit_form(law, Cs, Ls, options)
    return {
        "law": law.name,
        "equation": law.equation,
        "params": law.to_params(theta),
        "objective": objective,
        "objective_kind": "least squares in log loss",
        "converged": converged,
        "points": {"flops": Cs.tolist(), "loss": Ls.tolist()},
    }


def frontier_misfit(
    frontier: Mapping[str, Any], replicates: Replicates, options: FitOptions
) -> dict[str, Any] | None:
    """The form error of a fitted ``frontier`` beyond its points (:mod:`.misfit`): the top ``k``
    budgets held out for each ``k`` leaving at least two budgets and at least as many as its law
    has parameters, the law refitted on the rest (the point estimate, and every resample's vertex
    losses for the noise), each held-out vertex predicted. None with no such ``k`` or too few
    finite resamples."""
    law = get_law(frontier["law"])
    near = law.from_params(frontier["params"])
    Cs = np.asarray(frontier["points"]["flops"], dtype=float)
    order = np.argsort(Cs)
    Cs, Ls = Cs[order], np.asarray(frontier["points"]["loss"], dtype=float)[order]
    n = Cs.size
    rows = [np.asarray(v, dtype=float)[order] if v is not None else np.full(n, np.nan)
            for v in (replicates.losses or [])]  # fmt: skip
    if n < 3 or np.unique(Cs).size < n or not rows:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        R = np.log(np.array(rows))  # (resamples, budgets)
    x = np.log(Cs)
    errors, resampled, q, points = [], [], [], []
    for k in range(1, n - max(2, len(law.param_names)) + 1):
        m = n - k
        theta, _, _ = _fit_form(law, Cs[:m], Ls[:m], options, near=near)
        held = law.design(C=Cs[m:])
        r = np.log(Ls[m:]) - law.log_model(theta[None, :], held)[0][0]
        ok = np.all(np.isfinite(R[:, :m]), axis=1)
        r_star = np.full((R.shape[0], n - m), np.nan)
        if ok.any():
            thetas = _refit_rows(law, Cs[:m], R[ok, :m], theta)
            with np.errstate(over="ignore", invalid="ignore"):
                r_star[ok] = R[ok, m:] - law.log_model(thetas, held)[0]
        unit = unit_miss(x[:m], x[m:])
        errors.append(r)
        resampled.append(r_star)
        q.append(unit)
        finite = r_star[np.all(np.isfinite(r_star), axis=1)]
        noise_sd = finite.std(axis=0, ddof=1) if finite.shape[0] > 1 else np.full(n - m, np.nan)
        points += [
            {"fitted_up_to": float(Cs[m - 1]), "flops": float(c), "error": float(e),
             "noise_sd": float(t), "unit_miss": float(u)}
            for c, e, t, u in zip(Cs[m:], r, noise_sd, unit, strict=True)
        ]  # fmt: skip
    if not errors:
        return None
    estimate = curvature_estimate(
        np.concatenate(errors), np.concatenate(resampled, axis=1), np.concatenate(q)
    )
    if estimate is None:
        return None
    kappa, variance = estimate
    return {
        "method": MISFIT_METHOD,
        "curvature": kappa,
        "curvature_se": math.sqrt(variance),
        "scale": math.sqrt(kappa**2 + variance),
        "points": points,
    }

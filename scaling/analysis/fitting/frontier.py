"""Approaches 1 and 2 after their compute-optimal points: power laws in C and the loss frontier.

Both approaches end with points ``(C, N_opt, L_opt)``.  From them ``N_opt = k_N C^a`` is fitted
by least squares of ``log N_opt = log k_N + a log C`` (Hoffmann et al. 2022, §3.1-3.2), weighted
when the estimator gives each point a weight (approach 2: the inverse variance of its ``log N*``;
approach 1: equal weights).  The data allocation follows from ``C = 6 N D``
(:mod:`scaling.counting`) and is not fitted separately: ``D_opt = C / (6 N_opt) = k_D C^b`` with
``b = 1 - a`` and ``k_D = 1 / (6 k_N)``, in the point estimate and in every resample.  The loss
frontier ``L_opt(C) = E + (C_c/C)^alpha_C`` (Kaplan et al. 2020, eq. 1.3) is fitted through the
points' losses.

Uncertainty comes from :class:`Replicates`: the compute-optimal points of each resample, drawn by
the estimator (approach 2: a residual bootstrap; approach 1: a subsample of runs), refitted here
with the same weights as the point estimate.  A resample the estimator marks failed (``None``) is
NaN in every sample and counted in ``n_failed``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from scaling.analysis.fitting.allocation import extreme_allocation_warning
from scaling.analysis.fitting.laws import frontier_law, get_law
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
    lower, upper = np.array(law.lower), np.array(law.upper)
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
        fg = make_objective(law, law.design(C=np.array(cs)), Y, FRONTIER_HUBER_DELTA)
        x0 = np.tile(start, (len(members), 1))
        rows = np.arange(len(members))
        batch = batched_lbfgs(fg, x0, lower, upper, rows=rows, **TIGHT_STOP)
        ok = np.isin(batch.status, (0, 1)) & np.isfinite(batch.f)
        thetas[np.array(members)[ok]] = batch.x[ok]
    out: dict[str, list[float | None]] = {k: [] for k in law.param_names}
    for theta in thetas:
        values = law.to_params(theta) if np.all(np.isfinite(theta)) else {}
        for k in law.param_names:
            out[k].append(float(values[k]) if k in values else None)
    return out


def fit_loss_frontier(Cs: Array, Ls: Array, options: FitOptions) -> dict[str, Any] | None:
    """``L_opt(C) = E + (C_c/C)^alpha_C`` through the compute-optimal losses (Kaplan eq. 1.3)."""
    if Cs.size < 2 or np.unique(Cs).size < 2:
        return None
    law = frontier_law(irreducible=Cs.size >= 5)
    X = law.design(C=Cs)
    opts = replace(
        options, grid_stride=1, polish=3, extra_starts=(), huber_delta=FRONTIER_HUBER_DELTA
    )
    theta, objective, conv, _ = minimise_law(law, X, np.log(Ls), opts)
    return {
        "law": law.name,
        "equation": law.equation,
        "params": law.to_params(theta),
        "objective": objective,
        "objective_kind": "least squares in log loss",
        "converged": conv.converged,
        "points": {"flops": Cs.tolist(), "loss": Ls.tolist()},
    }

"""Approach 2 (IsoFLOP) of Hoffmann et al. 2022: parabolas per compute budget, then ``N_opt(C)``.

**Budgets.** When the run table has a ``planned_flops`` column with a finite positive value on
every row, runs that share a planned budget form one budget, however far apart their counted
``flops`` lie (a warning says when they span more than 0.3 decades).  Otherwise runs are sorted
by ``flops`` and a run within ``FitOptions.isoflop_tolerance`` decades of the previous one joins
its budget.  Either way a budget's ``C`` is the geometric mean of its runs' ``flops``.

**Vertices.** Per budget a least-squares parabola of loss against ``u = ln N`` gives the
compute-optimal size at its vertex, ``ln N* = -c1 / (2 c2)`` (their Fig. 3).  The set of budgets
used is decided once, on the full data: a budget is used when it has three or more distinct sizes,
a convex parabola and a vertex strictly inside its sizes.  Every other budget is named in a
warning (and, if it has a parabola, listed with ``used=False``); none is dropped silently.

**Vertex variance and the weighted fit.** ``Var(ln N*)`` is estimated by the delta method on the
parabola's coefficient covariance ``s² (XᵀX)⁻¹``, with ``s² = RSS / (n − 3)`` of that budget (for
a budget of exactly three runs, the residual variance pooled over the used budgets; with no
residual degrees of freedom anywhere the variances are unknown and the fit is unweighted).  Its
square root is recorded as ``IsoflopMinimum.log_params_se``.  ``ln N* = ln k_N + a ln C`` is then
fitted by weighted least squares with weights ``1 / Var``, each variance floored at
``VARIANCE_FLOOR_RATIO`` times their median (and at ``VARIANCE_FLOOR``), so that no budget
outweighs the median one more than 100-fold (:mod:`..fitting.frontier`).  ``b = 1 − a``
and ``D_coef = 1 / (6 k_N)`` follow from ``C = 6 N D``; neither is fitted separately.

**Bootstrap.** A residual bootstrap at the fixed design: an IsoFLOP design chooses its model
sizes, it does not sample them, so each resample keeps every run's size and budget and draws new
losses ``fitted + r*``, ``r*`` drawn with replacement from that budget's leverage-adjusted,
centred residuals ``e_i / sqrt(1 − h_i)`` (Davison & Hinkley 1997, Alg. 6.3; the pooled ones for
a budget of three runs; with three runs in every budget there is nothing to resample and every
resample fails).  Resampling runs instead would remove sizes from a budget (with six
runs the largest is missing from a third of resamples), push its vertex outside the remaining
sizes and give ``a`` a heavy tail that is an artefact of the resampling.  Every used budget
contributes its vertex to every resample, even when that vertex falls outside the budget's sizes
(it is kept, extrapolated); ``IsoflopMinimum.outside_fraction`` is how often that happened (a
non-convex parabola counts), with a warning above ``OUTSIDE_WARN_FRACTION``.  A resample in which
a used budget's parabola is not convex has no vertex there: it is a failed resample (NaN,
counted in ``n_failed``, with a warning).  Each resample is refitted with the full data's weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from scaling.analysis.columns import columns, ranges
from scaling.analysis.fitting.frontier import Replicates, frontier_result
from scaling.analysis.fitting.results import FitOptions, FitResult, IsoflopMinimum
from scaling.counting import tokens_from_compute
from scaling.errors import DataError

Array = np.ndarray

PLANNED = "planned_flops"  # run-table column of a run's planned budget (scaling.analysis.table)
VARIANCE_FLOOR_RATIO = 1e-2  # no vertex variance below this share of their median
VARIANCE_FLOOR = 1e-12  # nor below this (noise-free data): then the weights are equal
OUTSIDE_WARN_FRACTION = 0.10  # warn when a vertex leaves its sizes in more resamples than this
SPREAD_WARN_DECADES = 0.3  # warn when one budget's runs span more decades of counted compute

# The report's method text for approach 2 (scaling.analysis.report may quote it).
METHOD_TEXT = (
    "Runs were grouped into compute budgets (by planned_flops when every run has one, else "
    "within the isoflop tolerance of counted compute); per budget a least-squares parabola of "
    "loss against log N gives the optimal size at its vertex (Hoffmann et al. 2022, approach 2). "
    "Budgets with fewer than three sizes, a non-convex parabola or a vertex outside their sizes "
    "were left out and named in the warnings. log N_opt = log k_N + a log C was fitted by "
    "weighted least squares, each vertex weighted by the inverse of its delta-method variance; "
    "b = 1 - a and D_opt = C / (6 N_opt) follow from C = 6ND."
)
RESAMPLING_TEXT = (
    "Intervals are percentile intervals over a residual bootstrap at the fixed design: each "
    "resample keeps every run's size and budget, draws its loss as the parabola's fitted value "
    "plus a residual resampled within its budget, and keeps every budget's vertex (extrapolated "
    "where it leaves the budget's sizes); a resample with a non-convex parabola counts as failed."
)


def group_budgets(flops: Array, tolerance_decades: float) -> Array:
    """Label runs with a budget id: sorted runs whose log10 C are within ``tolerance`` share one."""
    order = np.argsort(flops, kind="stable")
    logc = np.log10(flops[order])
    labels_sorted = np.concatenate([[0], np.cumsum(np.diff(logc) > tolerance_decades)])
    labels = np.empty_like(labels_sorted)
    labels[order] = labels_sorted
    return labels


BUDGET_RUNS = 3  # runs of an IsoFLOP budget (a parabola): most budgets with fewer, no budgets


def budget_labels(runs: pd.DataFrame, flops: Array, tolerance_decades: float) -> tuple[Array, str]:
    """Budget id per run and how it was formed: by ``planned_flops`` when every row has a finite
    positive one, else by :func:`group_budgets` (``"tolerance"``)."""
    if PLANNED in runs:
        planned = pd.to_numeric(runs[PLANNED], errors="coerce").to_numpy(dtype=float)
        if planned.size and bool(np.all(np.isfinite(planned) & (planned > 0))):
            return np.unique(planned, return_inverse=True)[1], PLANNED
    return group_budgets(flops, tolerance_decades), "tolerance"


@dataclass(frozen=True)
class Parabola:
    """Least-squares ``loss = q2 v² + q1 v + q0`` in ``v = ln N − center`` over one budget."""

    center: float
    design: Array  # (n, 3): columns v², v, 1
    q: Array  # (q2, q1, q0)
    pinv: Array  # (3, n): q = pinv @ loss
    fitted: Array
    resid: Array

    @property
    def dof(self) -> int:
        return int(self.resid.size - 3)

    @property
    def rss(self) -> float:
        return float(self.resid @ self.resid)

    @property
    def convex(self) -> bool:
        return bool(self.q[0] > 0)

    @property
    def vertex(self) -> float:
        """``ln N*`` of the vertex (NaN when the parabola is not convex)."""
        q2, q1, _ = self.q
        return float(self.center - q1 / (2 * q2)) if self.convex else math.nan

    @property
    def vertex_loss(self) -> float:
        q2, q1, q0 = self.q
        return float(q0 - q1 * q1 / (4 * q2)) if self.convex else math.nan

    @property
    def coeffs(self) -> tuple[float, float, float]:
        """``(c2, c1, c0)`` of ``loss = c2 u² + c1 u + c0`` in ``u = ln N``."""
        q2, q1, q0 = self.q
        m = self.center
        return float(q2), float(q1 - 2 * q2 * m), float(q0 - q1 * m + q2 * m * m)

    @property
    def leverage(self) -> Array:
        """Diagonal of the hat matrix ``X pinv``."""
        return np.sum(self.design * self.pinv.T, axis=1)

    def vertex_variance(self, s2: float) -> float:
        """``Var(ln N*)`` by the delta method on ``s² (XᵀX)⁻¹`` (NaN when not convex)."""
        if not self.convex:
            return math.nan
        q2, q1, _ = self.q
        grad = np.array([q1 / (2 * q2 * q2), -1.0 / (2 * q2)])
        cov = s2 * (self.pinv @ self.pinv.T)[:2, :2]  # pinv pinvᵀ = (XᵀX)⁻¹
        return float(grad @ cov @ grad)

    def studentized(self) -> Array:
        """Centred leverage-adjusted residuals ``e_i / sqrt(1 − h_i)`` (zeros without dof)."""
        if self.dof < 1:
            return np.zeros(0)
        room = 1.0 - self.leverage
        r = np.where(room > 1e-9, self.resid / np.sqrt(np.clip(room, 1e-9, None)), 0.0)
        return r - r.mean()


def fit_parabola(u: Array, loss: Array) -> Parabola | None:
    """The least-squares parabola of ``loss`` in ``u``; ``None`` with fewer than three ``u``."""
    if np.unique(u).size < 3:
        return None
    center = float(np.mean(u))
    v = u - center
    X = np.stack([v * v, v, np.ones_like(v)], axis=1)
    pinv = np.linalg.pinv(X)
    q = pinv @ loss
    fitted = X @ q
    return Parabola(center=center, design=X, q=q, pinv=pinv, fitted=fitted, resid=loss - fitted)


@dataclass(frozen=True)
class Budget:
    """One compute budget: its runs (``members``), ``ln N`` of each, its parabola and vertex."""

    members: Array
    u: Array
    parabola: Parabola | None
    minimum: IsoflopMinimum


def _minimum(c: float, n: Array, loss: Array, parabola: Parabola) -> IsoflopMinimum:
    u, lo, hi = np.log(n), float(n.min()), float(n.max())
    u_star = parabola.vertex
    n_star = float(np.exp(np.clip(u_star, -700.0, 700.0))) if math.isfinite(u_star) else math.nan
    inside = bool(u.min() < u_star < u.max())
    argmin_edge = u[np.argmin(loss)] in (u.min(), u.max())
    return IsoflopMinimum(
        flops=c,
        params=n_star,
        tokens=tokens_from_compute(c, n_star),
        loss=parabola.vertex_loss,
        n_runs=int(u.size),
        params_range=(lo, hi),
        coeffs=parabola.coeffs,
        at_edge=(not inside) or bool(argmin_edge),
        used=inside,
    )


def budget_fits(N: Array, C: Array, loss: Array, labels: Array) -> list[Budget]:
    """Every budget of ``labels`` with its parabola and vertex; a budget with fewer than three
    sizes has no parabola and a NaN minimum with ``used=False``."""
    out = []
    for lab in np.unique(labels):
        members = np.flatnonzero(labels == lab)
        u, ell = np.log(N[members]), loss[members]
        c = float(np.exp(np.mean(np.log(C[members]))))
        parabola = fit_parabola(u, ell)
        if parabola is None:
            nan3 = (math.nan, math.nan, math.nan)
            rng = (float(N[members].min()), float(N[members].max()))
            minimum = IsoflopMinimum(
                c, math.nan, math.nan, math.nan, int(u.size), rng, nan3, at_edge=False, used=False
            )
        else:
            minimum = _minimum(c, N[members], ell, parabola)
        out.append(Budget(members=members, u=u, parabola=parabola, minimum=minimum))
    return out


def isoflop_minima(N: Array, C: Array, loss: Array, labels: Array) -> list[IsoflopMinimum]:
    """Per-budget parabola vertices of the budgets with three or more sizes (their Fig. 3)."""
    return [b.minimum for b in budget_fits(N, C, loss, labels) if b.parabola is not None]


def vertex_variances(parabolas: list[Parabola]) -> Array:
    """``Var(ln N*)`` per parabola (delta method); NaN everywhere without residual dof."""
    dof = np.array([p.dof for p in parabolas])
    rss = np.array([p.rss for p in parabolas])
    pooled = float(rss.sum() / dof.sum()) if dof.sum() > 0 else math.nan
    s2 = [p.rss / p.dof if p.dof > 0 else pooled for p in parabolas]
    return np.array([p.vertex_variance(s) for p, s in zip(parabolas, s2, strict=True)])


def point_weights(variances: Array) -> Array | None:
    """``1 / Var`` with the floors of the module docstring; ``None`` (equal) when unknown."""
    if variances.size == 0 or not np.all(np.isfinite(variances)):
        return None
    floor = max(float(np.median(variances)) * VARIANCE_FLOOR_RATIO, VARIANCE_FLOOR)
    return 1.0 / np.maximum(variances, floor)


def residual_bootstrap(
    used: list[Budget], n_resamples: int, seed: int
) -> tuple[Array, Array, Array]:
    """``ln N*`` of each used budget in each resample ``(R, B)`` (NaN: not convex), whether it
    fell outside the budget's sizes ``(R, B)`` (non-convex counts as outside), and the
    parabola's loss at that vertex ``(R, B)`` (NaN: not convex)."""
    rng = np.random.default_rng(seed)
    parabolas = [b.parabola for b in used if b.parabola is not None]
    pool = np.concatenate([p.studentized() for p in parabolas] + [np.zeros(0)])
    u_star = np.full((n_resamples, len(used)), np.nan)
    outside = np.ones((n_resamples, len(used)), dtype=bool)
    l_star = np.full((n_resamples, len(used)), np.nan)
    for j, (b, p) in enumerate(zip(used, parabolas, strict=True)):
        r = p.studentized() if p.dof > 0 else pool
        idx = rng.integers(0, r.size, size=(n_resamples, p.fitted.size))
        Q = (p.fitted[None, :] + r[idx]) @ p.pinv.T
        convex = Q[:, 0] > 0
        u_star[:, j] = np.where(
            convex, p.center - Q[:, 1] / (2 * np.where(convex, Q[:, 0], 1)), np.nan
        )
        outside[:, j] = ~(convex & (u_star[:, j] > b.u.min()) & (u_star[:, j] < b.u.max()))
        q2 = np.where(convex, Q[:, 0], 1.0)
        l_star[:, j] = np.where(convex, Q[:, 2] - Q[:, 1] ** 2 / (4 * q2), np.nan)
    return u_star, outside, l_star


def _grouping_warnings(runs: pd.DataFrame, C: Array, labels: Array, grouped_by: str) -> list[str]:
    """A partly filled ``planned_flops``; a budget spanning more than the warned decades."""
    out = []
    if grouped_by != PLANNED and PLANNED in runs:
        planned = pd.to_numeric(runs[PLANNED], errors="coerce").to_numpy(dtype=float)
        known = int(np.sum(np.isfinite(planned) & (planned > 0)))
        if 0 < known < planned.size:
            out.append(
                f"planned_flops is missing on {planned.size - known} of {planned.size} runs; "
                "budgets were grouped by counted compute within the tolerance instead"
            )
    spreads = [
        float(np.log10(C[labels == lab].max() / C[labels == lab].min()))
        for lab in np.unique(labels)
    ]
    spread = max(spreads)
    if spread > SPREAD_WARN_DECADES and grouped_by == PLANNED:
        out.append(
            f"runs planned at one budget span {spread:.2f} decades of counted compute "
            "(flops); the flops column may not count what the plan did"
        )
    elif spread > SPREAD_WARN_DECADES:
        out.append(
            f"runs grouped into one budget span {spread:.2f} decades of compute; the table may "
            "not be an IsoFLOP design (set --isoflop-tolerance)"
        )
    return out


def _budget_warnings(all_budgets: list[Budget]) -> list[str]:
    out = []
    for b in all_budgets:
        m = b.minimum
        if b.parabola is None:
            out.append(
                f"budget C={m.flops:.3g}: {m.n_runs} run(s) at fewer than three model sizes; "
                "no parabola, budget left out of the fit"
            )
        elif not math.isfinite(m.params):
            out.append(f"budget C={m.flops:.3g}: loss is not convex in log N; budget left out")
        elif m.at_edge:
            where = "outside (beyond the edge of)" if not m.used else "at the edge of"
            out.append(
                f"budget C={m.flops:.3g}: IsoFLOP minimum N={m.params:.3g} is {where} the sampled "
                f"sizes {m.params_range[0]:.3g}..{m.params_range[1]:.3g}"
                + ("; budget left out of the fit" if not m.used else "")
            )
    return out


def _bootstrap_warnings(used: list[Budget], outside: Array, failed: int, n: int) -> list[str]:
    out = []
    for b, frac in zip(used, outside.mean(axis=0), strict=True):
        if frac > OUTSIDE_WARN_FRACTION:
            out.append(
                f"budget C={b.minimum.flops:.3g}: in {frac:.0%} of bootstrap resamples the "
                "IsoFLOP minimum fell outside the sampled sizes (kept, extrapolated): add sizes "
                "on that side to pin it down"
            )
    if failed:
        out.append(
            f"{failed} of {n} bootstrap resamples failed (a budget's parabola was not convex); "
            "the intervals are over the other resamples"
        )
    return out


def _bootstrap(
    used: list[Budget], options: FitOptions
) -> tuple[Replicates | None, Array, list[str]]:
    """The resamples' points, each used budget's outside fraction, and their warnings."""
    if options.bootstrap <= 0:
        return None, np.full(len(used), math.nan), []
    if all(b.parabola is None or b.parabola.dof < 1 for b in used):
        return (
            Replicates(points=[None] * options.bootstrap, kind="bootstrap"),
            np.full(len(used), math.nan),
            [
                "every budget has exactly three runs, which its parabola fits exactly: there "
                "are no residuals to resample, so no bootstrap interval (add runs per budget)"
            ],
        )
    u_star, outside, l_star = residual_bootstrap(used, options.bootstrap, options.seed)
    cs = np.array([b.minimum.flops for b in used])
    ok = np.all(np.isfinite(u_star), axis=1)
    points = [
        (cs, np.exp(np.clip(u_star[r], -700.0, 700.0))) if ok[r] else None
        for r in range(options.bootstrap)
    ]
    losses = [l_star[r] if ok[r] else None for r in range(options.bootstrap)]
    warnings = _bootstrap_warnings(used, outside, int((~ok).sum()), options.bootstrap)
    replicates = Replicates(points=points, kind="bootstrap", losses=losses)
    return replicates, outside.mean(axis=0), warnings


def _reported_minima(
    all_budgets: list[Budget], variances: Array, outside_fraction: Array
) -> tuple[IsoflopMinimum, ...]:
    """Minima of the budgets with a parabola; the used ones with their SE and outside fraction."""
    stats = iter(zip(np.sqrt(variances), outside_fraction, strict=True))
    out = []
    for b in all_budgets:
        if b.minimum.used:
            se, frac = next(stats)
            out.append(replace(b.minimum, log_params_se=float(se), outside_fraction=float(frac)))
        elif b.parabola is not None:
            out.append(b.minimum)
    return tuple(out)


def fit_isoflop(runs: pd.DataFrame, options: FitOptions | None = None) -> FitResult:
    """Approach 2: IsoFLOP parabolas, then ``N_opt = k_N C^a`` weighted, ``b = 1 − a``."""
    options = options or FitOptions()
    N, D, C, loss = columns(runs)
    labels, grouped_by = budget_labels(runs, C, options.isoflop_tolerance)
    all_budgets = budget_fits(N, C, loss, labels)
    warnings = _grouping_warnings(runs, C, labels, grouped_by) + _budget_warnings(all_budgets)
    used = [b for b in all_budgets if b.minimum.used]
    if len(used) < 2:
        how = (
            "budgets are runs sharing a planned_flops"
            if grouped_by == PLANNED
            else f"budgets are runs within {options.isoflop_tolerance} decades of compute"
        )
        raise DataError(
            f"approach 2 needs at least two compute budgets with three or more model sizes and "
            f"an interior loss minimum; found {len(used)} ({how}; use --approach 3 for runs "
            "that are not an IsoFLOP design)"
        )
    variances = vertex_variances([b.parabola for b in used if b.parabola is not None])
    replicates, outside_fraction, boot_warnings = _bootstrap(used, options)
    return frontier_result(
        approach=2,
        points=[b.minimum for b in used],
        runs_n=len(loss),
        ranges=ranges(N, D, C, loss),
        options=options,
        warnings=warnings + boot_warnings,
        minima=_reported_minima(all_budgets, variances, outside_fraction),
        replicates=replicates,
        weights=point_weights(variances),
    )

"""Approach 2 (IsoFLOP) of Hoffmann et al. 2022: parabolas per compute budget, then power laws.

Runs are grouped by compute budget; per budget a least-squares parabola of loss against ``log N``
gives the compute-optimal size at its vertex (their Fig. 3).  Budgets whose vertex lies outside
the sampled sizes are left out; ``N_opt = k_N C^a`` and ``D_opt = k_D C^b`` are then fitted
through the vertices (:mod:`scaling.analysis.frontier`).  The bootstrap resamples runs within
each budget.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from scaling.analysis.columns import columns, ranges
from scaling.analysis.frontier import frontier_result
from scaling.analysis.results import FitOptions, FitResult, IsoflopMinimum
from scaling.counting import tokens_from_compute
from scaling.errors import DataError

Array = np.ndarray


def group_budgets(flops: Array, tolerance_decades: float) -> Array:
    """Label runs with a budget id: sorted runs whose log10 C are within ``tolerance`` share one."""
    order = np.argsort(flops, kind="stable")
    logc = np.log10(flops[order])
    labels_sorted = np.concatenate([[0], np.cumsum(np.diff(logc) > tolerance_decades)])
    labels = np.empty_like(labels_sorted)
    labels[order] = labels_sorted
    return labels


def _parabola_minimum(u: Array, loss: Array) -> tuple[float, float, tuple[float, float, float]]:
    """Vertex (u*, loss*) of the least-squares parabola ``loss = c2 u^2 + c1 u + c0``."""
    c2, c1, c0 = np.polyfit(u, loss, 2)
    if c2 <= 0:
        return math.nan, math.nan, (float(c2), float(c1), float(c0))
    u_star = -c1 / (2 * c2)
    return float(u_star), float(c0 - c1 * c1 / (4 * c2)), (float(c2), float(c1), float(c0))


def isoflop_minima(
    N: Array, C: Array, loss: Array, labels: Array, weights: Array | None = None
) -> list[IsoflopMinimum]:
    """Per-budget parabola vertices (Hoffmann et al. 2022, approach 2; their Fig. 3)."""
    out = []
    for lab in np.unique(labels):
        m = labels == lab
        if weights is not None:
            m = m & (weights > 0)
        reps = weights[m].astype(int) if weights is not None else np.ones(m.sum(), dtype=int)
        n_m, l_m = np.repeat(N[m], reps), np.repeat(loss[m], reps)
        if np.unique(n_m).size < 3:
            continue
        c_budget = float(np.exp(np.mean(np.log(C[labels == lab]))))
        u = np.log(n_m)
        u_star, l_star, coeffs = _parabola_minimum(u, l_m)
        lo, hi = float(n_m.min()), float(n_m.max())
        if not math.isfinite(u_star):
            out.append(
                IsoflopMinimum(
                    flops=c_budget,
                    params=math.nan,
                    tokens=math.nan,
                    loss=math.nan,
                    n_runs=int(m.sum()),
                    params_range=(lo, hi),
                    coeffs=coeffs,
                    at_edge=True,
                    used=False,
                )
            )
            continue
        n_star = float(np.exp(np.clip(u_star, -700.0, 700.0)))
        inside = lo < n_star < hi
        argmin_edge = n_m[np.argmin(l_m)] in (lo, hi)
        out.append(
            IsoflopMinimum(
                flops=c_budget,
                params=n_star,
                tokens=tokens_from_compute(c_budget, n_star),
                loss=l_star,
                n_runs=int(m.sum()),
                params_range=(lo, hi),
                coeffs=coeffs,
                at_edge=(not inside) or bool(argmin_edge),
                used=inside,
            )
        )
    return out


def fit_isoflop(runs: pd.DataFrame, options: FitOptions | None = None) -> FitResult:
    """Approach 2: IsoFLOP parabolas, then ``N_opt = k_N C^a`` and ``D_opt = k_D C^b``."""
    options = options or FitOptions()
    N, D, C, loss = columns(runs)
    labels = group_budgets(C, options.isoflop_tolerance)
    minima = isoflop_minima(N, C, loss, labels)
    warnings: list[str] = []
    for lab in np.unique(labels):
        spread = np.log10(C[labels == lab].max() / C[labels == lab].min())
        if spread > 0.3:
            warnings.append(
                f"runs grouped into one budget span {spread:.2f} decades of compute; the table may "
                "not be an IsoFLOP design (set --isoflop-tolerance)"
            )
            break
    usable = [m for m in minima if m.used]
    for m in minima:
        if not math.isfinite(m.params):
            warnings.append(f"budget C={m.flops:.3g}: loss is not convex in log N; budget skipped")
        elif m.at_edge:
            where = "outside (beyond the edge of)" if not m.used else "at the edge of"
            warnings.append(
                f"budget C={m.flops:.3g}: IsoFLOP minimum N={m.params:.3g} is {where} the sampled "
                f"sizes {m.params_range[0]:.3g}..{m.params_range[1]:.3g}"
                + ("; budget left out of the fit" if not m.used else "")
            )
    if len(usable) < 2:
        raise DataError(
            f"approach 2 needs at least two compute budgets with three or more model sizes and "
            f"an interior loss minimum; found {len(usable)} "
            f"(budgets are runs within {options.isoflop_tolerance} decades of compute; "
            "use --approach 3 for runs that are not an IsoFLOP design)"
        )

    def boot(W: Array) -> tuple[Array, Array]:
        pts = [m for m in isoflop_minima(N, C, loss, labels, weights=W) if m.used]
        if len(pts) < 2:
            return np.array([]), np.array([])
        return np.array([m.flops for m in pts]), np.array([m.params for m in pts])

    return frontier_result(
        approach=2,
        points=usable,
        runs_n=len(loss),
        ranges=ranges(N, D, C, loss),
        options=options,
        warnings=warnings,
        minima=tuple(minima),
        bootstrap_fn=boot,
        bootstrap_groups=labels,
        n_rows=len(loss),
    )

"""Approach 1 (envelope) of Hoffmann et al. 2022: the least loss at each FLOP count.

From loss-vs-tokens curves (one row per logged point, a ``run_id`` per run), each curve is first
smoothed: its points are sorted by tokens and each loss replaced by the median of itself and up to
``SMOOTH_HALF_WIDTH`` neighbours on each side (a centred running median over five logged points;
the window shrinks symmetrically at the ends, so the first and last points are kept as logged).
Validation is logged at log-spaced steps, so the window spans a roughly fixed width in log
tokens.  A running median removes isolated dips (one noisy evaluation) that would otherwise win
the envelope, and leaves a curve that is monotone over the window unchanged.  Curves are then
interpolated in log-log space on a grid of FLOP counts, the run with the least loss at each one
gives a compute-optimal point (only counts reached by at least two runs are kept), and
``N_opt = k_N C^a`` is fitted through them by unweighted least squares in log space
(:mod:`..fitting.frontier`; ``b = 1 - a``).  The grid points are neighbours on the same
curves, not independent observations.

Uncertainty is a **subsample**, labelled ``Bootstrap.kind = "subsample"``: each replicate draws
runs with replacement and keeps the envelope of the runs drawn.  The envelope is a minimum over
runs, so a run drawn twice counts as much as a run drawn once: the replicate depends only on which
runs were drawn (about 63% of them), not on how often.  Its interval measures how much the fit
depends on which runs are present; it is not a calibrated bootstrap confidence interval.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scaling.analysis.columns import columns, ranges
from scaling.analysis.fitting.bootstrap import resample_weights
from scaling.analysis.fitting.frontier import Replicates, frontier_result
from scaling.analysis.fitting.results import FitOptions, FitResult, IsoflopMinimum
from scaling.counting import tokens_from_compute
from scaling.errors import DataError

Array = np.ndarray

SMOOTH_HALF_WIDTH = 2  # neighbours on each side in the running median of a loss curve

# The report's method text for approach 1 (scaling.analysis.report may quote it).
METHOD_TEXT = (
    "Each loss curve was smoothed by a centred running median over five logged points; at each "
    "FLOP count the run with the least smoothed loss defines the envelope (Hoffmann et al. 2022, "
    "approach 1). log N_opt = log k_N + a log C was fitted by unweighted least squares; "
    "b = 1 - a and D_opt = C / (6 N_opt) follow from C = 6ND."
)
RESAMPLING_TEXT = (
    "Intervals are percentile intervals over a subsample of runs: each replicate keeps the "
    "envelope of the runs drawn with replacement (about 63% of them; a run drawn twice counts "
    "once), so they show how much the fit depends on which runs are present; they are not "
    "calibrated bootstrap confidence intervals."
)


def smooth_curve(loss: Array, half_width: int = SMOOTH_HALF_WIDTH) -> Array:
    """Centred running median of ``loss`` (points in token order), the window shrinking
    symmetrically at the ends."""
    n = loss.size
    out = np.empty(n)
    for i in range(n):
        k = min(half_width, i, n - 1 - i)
        out[i] = np.median(loss[i - k : i + k + 1])
    return out


def envelope(runs: pd.DataFrame, n_grid: int = 250) -> tuple[Array, Array, Array, Array, Array]:
    """Approach 1 envelope: at each FLOP count, the run with the least (interpolated, smoothed)
    loss.

    Returns (C grid, N of the best run, loss, run index per grid point, loss matrix (runs, grid)).
    Only FLOP counts reached by at least two runs are kept.
    """
    groups = list(runs.groupby("run_id", sort=True))
    c_lo = min(g["flops"].min() for _, g in groups)
    c_hi = max(g["flops"].max() for _, g in groups)
    grid = np.geomspace(c_lo, c_hi, n_grid)
    M = np.full((len(groups), n_grid), np.inf)
    sizes = np.empty(len(groups))
    for i, (_, g) in enumerate(groups):
        g = g.sort_values("flops", kind="stable")
        c = g["flops"].to_numpy(dtype=float)
        ell = smooth_curve(g["loss"].to_numpy(dtype=float))
        sizes[i] = float(g["params"].iloc[-1])
        if c.size == 1:
            continue
        inside = (grid >= c.min()) & (grid <= c.max())
        M[i, inside] = np.exp(np.interp(np.log(grid[inside]), np.log(c), np.log(ell)))
    covered = np.isfinite(M).sum(axis=0) >= 2
    best = np.argmin(M, axis=0)
    return grid[covered], sizes[best[covered]], M.min(axis=0)[covered], best[covered], M[:, covered]


def fit_envelope(curves: pd.DataFrame, options: FitOptions | None = None) -> FitResult:
    """Approach 1: minimum loss per FLOP over all curves, then the power-law fits in C."""
    options = options or FitOptions()
    if curves["run_id"].nunique() < 2:
        raise DataError("approach 1 needs loss curves from at least two runs (run_id)")
    grid, n_best, l_best, _, M = envelope(curves)
    sizes = curves.groupby("run_id", sort=True)["params"].last().to_numpy(dtype=float)
    if grid.size < 2 or np.unique(n_best).size < 2:
        raise DataError(
            "approach 1: the loss envelope is won by a single model size at every FLOP count; "
            "the curves cannot determine how N_opt grows with compute"
        )
    warnings = []
    for label, size in (("smallest", sizes.min()), ("largest", sizes.max())):
        share = float(np.mean(n_best == size))
        if share > 0.4:
            warnings.append(
                f"the {label} model wins {share:.0%} of the envelope: the sizes may not bracket "
                "the compute-optimal size"
            )
    points = [
        IsoflopMinimum(
            flops=float(c),
            params=float(n),
            tokens=float(tokens_from_compute(c, n)),
            loss=float(ell),
            n_runs=1,
            params_range=(n, n),
            coeffs=(0.0, 0.0, 0.0),
            at_edge=False,
            used=True,
        )
        for c, n, ell in zip(grid, n_best, l_best, strict=True)
    ]
    last = curves.groupby("run_id", sort=True).tail(1)
    N, D, C, loss = columns(last)

    replicates = None
    if options.bootstrap > 0:
        W = resample_weights(len(sizes), options.bootstrap, options.seed)
        drawn = [_subsample_points(grid, sizes, M, w > 0) for w in W]
        replicates = Replicates(
            points=[d[:2] if d is not None else None for d in drawn],
            kind="subsample",
            losses=[d[2] if d is not None else None for d in drawn],
        )
    return frontier_result(
        approach=1,
        points=points,
        runs_n=int(curves["run_id"].nunique()),
        ranges=ranges(N, D, C, loss),
        options=options,
        warnings=warnings,
        minima=(),
        replicates=replicates,
    )


def _subsample_points(
    grid: Array, sizes: Array, M: Array, chosen: Array
) -> tuple[Array, Array, Array] | None:
    """The envelope's ``(C, N_opt, L_opt)`` over the ``chosen`` runs (``None`` under two grid
    points)."""
    Mb = np.where(chosen[:, None], M, np.inf)
    ok = np.isfinite(Mb).sum(axis=0) >= 2
    if ok.sum() < 2:
        return None
    return grid[ok], sizes[np.argmin(Mb[:, ok], axis=0)], Mb[:, ok].min(axis=0)

"""Approach 1 (envelope) of Hoffmann et al. 2022: the least loss at each FLOP count.

From loss-vs-tokens curves (one row per logged point, a ``run_id`` per run), the run with the
least (interpolated) loss at each FLOP count gives a compute-optimal point; power laws in C are
then fitted through them (:mod:`scaling.analysis.frontier`).  The bootstrap resamples runs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scaling.analysis.columns import columns, ranges
from scaling.analysis.frontier import frontier_result
from scaling.analysis.results import FitOptions, FitResult, IsoflopMinimum
from scaling.counting import tokens_from_compute
from scaling.errors import DataError

Array = np.ndarray


def envelope(runs: pd.DataFrame, n_grid: int = 250) -> tuple[Array, Array, Array, Array, Array]:
    """Approach 1 envelope: at each FLOP count, the run with the least (interpolated) loss.

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
        c = g["flops"].to_numpy(dtype=float)
        ell = g["loss"].to_numpy(dtype=float)
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

    def boot(W: Array) -> tuple[Array, Array]:
        chosen = W > 0
        Mb = np.where(chosen[:, None], M, np.inf)
        ok = np.isfinite(Mb).sum(axis=0) >= 2
        if ok.sum() < 2:
            return np.array([]), np.array([])
        nb = sizes[np.argmin(Mb[:, ok], axis=0)]
        return grid[ok], nb

    return frontier_result(
        approach=1,
        points=points,
        runs_n=int(curves["run_id"].nunique()),
        ranges=ranges(N, D, C, loss),
        options=options,
        warnings=warnings,
        minima=(),
        bootstrap_fn=boot,
        bootstrap_groups=None,
        n_rows=len(sizes),
    )

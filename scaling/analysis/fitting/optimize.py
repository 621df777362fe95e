"""The objective and the optimiser of a parametric fit.

Objective (Hoffmann et al. 2022, eq. 2 and App. D.2; Besiroglu et al. 2024, eq. 3)::

    sum_i Huber_delta(log L_i - log L_law(N_i, D_i; theta))                          (1)

*summed* over points (a mean makes L-BFGS stop early, the failure Besiroglu et al. found),
minimised from a grid of starting points.  All starts run at once in a batched, bound-projected
L-BFGS written in numpy with analytic gradients (:func:`batched_lbfgs`); the best few distinct
optima are then polished with scipy's L-BFGS-B (:func:`minimise_law`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize

from scaling.analysis.fitting.laws import Law
from scaling.analysis.fitting.results import Convergence, FitOptions
from scaling.errors import DataError

Array = np.ndarray

OBJECTIVE_BLOCK = 192  # rows of the start batch evaluated together (cache-sized)


def huber(r: Array, delta: float) -> Array:
    """Huber loss: ``r^2/2`` for ``|r| <= delta``, else ``delta (|r| - delta/2)`` (Huber 1964)."""
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def make_objective(
    law: Law, X: Array, log_loss: Array, delta: float, weights: Array | None = None
) -> Callable[[Array, Array | None], tuple[Array, Array]]:
    """Batched objective (1) and its gradient: ``fg(theta (k, P), rows (k,)) -> (f, grad)``.

    ``weights`` (R, n) gives each row of the batch its own point weights (bootstrap counts);
    ``log_loss`` may likewise be (R, n), each row its own data on the same design (residual
    resamples); ``rows`` selects which weight and data row each parameter vector uses.  Rows
    are processed in blocks that fit in cache, which is about twice as fast as whole-batch numpy
    on large grids.
    """

    def block(theta: Array, rows: Array | None) -> tuple[Array, Array]:
        pred, vjp = law.log_model_vjp(theta, X)  # (k, n)
        r = np.subtract(log_loss if log_loss.ndim == 1 else log_loss[rows], pred, out=pred)
        psi = np.clip(r, -delta, delta)  # dHuber/dr
        h = r - 0.5 * psi
        h *= psi  # Huber(r) = psi (r - psi/2)
        if weights is not None:
            w = weights[rows]
            h *= w
            psi *= w
        f = h.sum(axis=1)
        g = -vjp(psi)
        return f, g

    def fg(theta: Array, rows: Array | None = None) -> tuple[Array, Array]:
        k = theta.shape[0]
        f = np.empty(k)
        g = np.empty_like(theta, dtype=float)
        for s in range(0, k, OBJECTIVE_BLOCK):
            sl = slice(s, s + OBJECTIVE_BLOCK)
            f[sl], g[sl] = block(theta[sl], None if rows is None else rows[sl])
        bad = ~np.isfinite(f) | ~np.isfinite(g).all(axis=1)
        if bad.any():
            f[bad] = np.inf
            g[bad] = 0.0
        return f, g

    return fg


@dataclass(frozen=True)
class BatchResult:
    """Outcome of :func:`batched_lbfgs`: one row per start."""

    x: Array
    f: Array
    n_iter: Array
    status: Array  # 0 gradient small, 1 no further decrease, 2 max iterations, 3 line search failed


# The stopping rule of a precise L-BFGS (a final polish, a refit of a resample): gradient 1e-9,
# relative decrease 1e-13, at most 1,000 iterations.
TIGHT_STOP: dict[str, Any] = {"maxiter": 1000, "gtol": 1e-9, "ftol": 1e-13}


def batched_lbfgs(
    fg: Callable[[Array, Array], tuple[Array, Array]],
    x0: Array,
    lower: Array,
    upper: Array,
    *,
    rows: Array | None = None,
    maxiter: int = 500,
    memory: int = 10,
    gtol: float = 1e-10,
    ftol: float = 1e-14,
) -> BatchResult:
    """Minimise many independent problems at once with a bound-projected L-BFGS.

    Each row of ``x0`` is a start; ``fg`` evaluates the objective and gradient of a subset of rows.
    Per row this is L-BFGS (Nocedal & Wright 2006, Alg. 7.4-7.5) restricted to the free variables
    (those not pinned at a bound by their gradient), with a backtracking Armijo line search on the
    projected step.  Rows leave the batch as they converge, so late iterations are cheap.
    """
    x = np.clip(np.array(x0, dtype=float), lower, upper)
    S, P = x.shape
    rows = np.arange(S) if rows is None else np.asarray(rows)
    f, g = fg(x, rows)
    s_hist = np.zeros((S, memory, P))
    y_hist = np.zeros((S, memory, P))
    rho = np.zeros((S, memory))
    gamma = np.ones(S)
    has_hist = np.zeros(S, dtype=bool)
    n_iter = np.zeros(S, dtype=int)
    status = np.full(S, 2)
    active = np.isfinite(f)
    status[~active] = 3

    for _ in range(maxiter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        xa, fa, ga = x[idx], f[idx], g[idx]
        free = ~(((xa <= lower) & (ga > 0)) | ((xa >= upper) & (ga < 0)))
        q = ga * free
        # Two-loop recursion, newest pair first (slot 0).
        sh, yh, rh = s_hist[idx], y_hist[idx], rho[idx]
        alphas = np.empty((idx.size, memory))
        for j in range(memory):
            alphas[:, j] = rh[:, j] * np.einsum("kp,kp->k", sh[:, j], q)
            q = q - alphas[:, j : j + 1] * yh[:, j]
        gnorm = np.sqrt(np.einsum("kp,kp->k", ga * free, ga * free))
        scale = np.where(has_hist[idx], gamma[idx], 1.0 / np.maximum(gnorm, 1e-300))
        r = scale[:, None] * q
        for j in reversed(range(memory)):
            beta = rh[:, j] * np.einsum("kp,kp->k", yh[:, j], r)
            r = r + sh[:, j] * (alphas[:, j] - beta)[:, None]
        d = -r * free
        slope = np.einsum("kp,kp->k", ga, d)
        reset = ~(slope < 0)
        if reset.any():
            d[reset] = -(ga[reset] * free[reset]) / np.maximum(gnorm[reset], 1e-300)[:, None]
            rho[idx[reset]] = 0.0
            has_hist[idx[reset]] = False
        # Backtracking Armijo line search on the projected path, vectorised over rows.
        t = np.ones(idx.size)
        x_new = np.empty_like(xa)
        f_new = np.full(idx.size, np.inf)
        g_new = np.zeros_like(ga)
        pending = np.arange(idx.size)
        for _ls in range(40):
            trial = np.clip(xa[pending] + t[pending, None] * d[pending], lower, upper)
            ft, gt = fg(trial, rows[idx[pending]])
            decrease = np.einsum("kp,kp->k", ga[pending], trial - xa[pending])
            ok = np.isfinite(ft) & (ft <= fa[pending] + 1e-4 * decrease)
            acc = pending[ok]
            x_new[acc], f_new[acc], g_new[acc] = trial[ok], ft[ok], gt[ok]
            pending = pending[~ok]
            if pending.size == 0:
                break
            t[pending] *= 0.5
        failed = np.zeros(idx.size, dtype=bool)
        failed[pending] = True
        ok = ~failed
        # Curvature pairs; keep only those with s'y > 0 so the inverse Hessian stays positive.
        s = x_new[ok] - xa[ok]
        yv = g_new[ok] - ga[ok]
        sy = np.einsum("kp,kp->k", s, yv)
        yy = np.einsum("kp,kp->k", yv, yv)
        upd = sy > 1e-12 * np.maximum(yy, 1e-300)
        ids = idx[ok][upd]
        if ids.size:
            s_hist[ids] = np.roll(s_hist[ids], 1, axis=1)
            y_hist[ids] = np.roll(y_hist[ids], 1, axis=1)
            rho[ids] = np.roll(rho[ids], 1, axis=1)
            s_hist[ids, 0] = s[upd]
            y_hist[ids, 0] = yv[upd]
            rho[ids, 0] = 1.0 / sy[upd]
            gamma[ids] = sy[upd] / np.maximum(yy[upd], 1e-300)
            has_hist[ids] = True
        moved = idx[ok]
        f_old = f[moved]
        x[moved], f[moved], g[moved] = x_new[ok], f_new[ok], g_new[ok]
        n_iter[idx] += 1
        status[idx[failed]] = 3
        active[idx[failed]] = False
        pg = np.clip(x[moved] - g[moved], lower, upper) - x[moved]
        small_g = np.abs(pg).max(axis=1) <= gtol
        stalled = (f_old - f[moved]) <= ftol * np.maximum(
            np.maximum(np.abs(f_old), np.abs(f[moved])), 1.0
        )
        status[moved[small_g]] = 0
        status[moved[stalled & ~small_g]] = 1
        active[moved[small_g | stalled]] = False
    return BatchResult(x=x, f=f, n_iter=n_iter, status=status)


def _chain(first: Any, last: Any) -> Any:
    """Two successive scipy runs as one: ``last`` with the iterations of both, and ``first``'s
    success and message when only ``first`` succeeded."""
    last.nit = int(first.nit) + int(last.nit)
    if first.success and not last.success:  # stopping at machine precision is not a failure
        last.success, last.message = True, first.message
    return last


def _distinct_best(x: Array, f: Array, k: int, rtol: float = 1e-4) -> list[int]:
    """Indices of up to ``k`` lowest-objective rows whose parameters differ from each other."""
    order = np.argsort(np.where(np.isfinite(f), f, np.inf), kind="stable")
    chosen: list[int] = []
    for i in order:
        if not np.isfinite(f[i]):
            break
        if all(np.max(np.abs(x[i] - x[j]) / (1 + np.abs(x[j]))) > rtol for j in chosen):
            chosen.append(int(i))
        if len(chosen) >= k:
            break
    return chosen


def _polish(
    fg: Callable[[Array, Array], tuple[Array, Array]],
    x0: Array,
    lower: Array,
    upper: Array,
    final: bool = False,
) -> Any:
    """One scipy L-BFGS-B run from ``x0`` at tight tolerances (``final``: to machine precision)."""
    tol = (
        {"ftol": 0.0, "gtol": 0.0, "maxiter": 10_000}
        if final
        else {"ftol": 1e-14, "gtol": 1e-11, "maxiter": 3000}
    )

    def single(theta: Array) -> tuple[float, Array]:
        f, g = fg(theta[None, :], np.zeros(1, dtype=int))
        return float(f[0]), g[0]

    return minimize(
        single,
        x0,
        jac=True,
        method="L-BFGS-B",
        bounds=list(zip(lower, upper, strict=True)),
        options={**tol, "maxcor": 20},
    )


def on_bounds(law: Law, theta: Array) -> tuple[str, ...]:
    """Names of the parameters within 1e-6 of the search box's width from a bound."""
    lo, hi = np.array(law.lower), np.array(law.upper)
    tol = 1e-6 * (hi - lo)
    hit = (theta <= lo + tol) | (theta >= hi - tol)
    return tuple(name for name, h in zip(law.param_names, hit, strict=True) if h)


def minimise_law(
    law: Law,
    X: Array,
    log_loss: Array,
    options: FitOptions,
    starts: Array | None = None,
) -> tuple[Array, float, Convergence, list[Array]]:
    """Multi-start minimisation of (1); returns theta, objective, convergence, distinct optima."""
    lower, upper = np.array(law.lower), np.array(law.upper)
    if starts is None:
        starts = law.start_grid()[:: max(1, options.grid_stride)]
        if options.extra_starts:
            extra = np.array(options.extra_starts, dtype=float)
            starts = np.vstack([starts, extra]) if options.use_grid else extra
    fg = make_objective(law, X, log_loss, options.huber_delta)
    if options.polish <= 0:
        # Warm refits: the batch alone, run to tight tolerances.
        batch = batched_lbfgs(fg, starts, lower, upper, **TIGHT_STOP)
        i = int(np.argmin(batch.f))
        theta = batch.x[i]
        status = int(batch.status[i])
        converged = status in (0, 1)
        message = [
            "gradient below tolerance",
            "no further decrease",
            "max iterations",
            "line search failed",
        ][status]
        n_iter = int(batch.n_iter[i])
        optima = [batch.x[j] for j in _distinct_best(batch.x, batch.f, 4)]
    else:
        # Explore with scipy's default stopping rule (ftol 2.2e-9, gtol 1e-5), then polish.
        batch = batched_lbfgs(fg, starts, lower, upper, gtol=1e-5, ftol=2.2e-9, maxiter=200)
        best_rows = _distinct_best(batch.x, batch.f, options.polish)
        if not best_rows:
            raise DataError(f"law {law.name!r}: the objective is not finite at any start")
        polished = []
        for i in best_rows:
            res = _polish(fg, batch.x[i], lower, upper)
            # Then to machine precision.  The summed Huber loss has kinks (|r| = delta) where
            # L-BFGS-B stops; restarting where it stopped (fresh memory) often goes further.
            for _ in range(5):
                last = _polish(fg, res.x, lower, upper, final=True)
                if not last.fun < res.fun:
                    break
                res = _chain(res, last)
            polished.append((float(res.fun), res, i))
        polished.sort(key=lambda t: t[0])
        fun, res, i = polished[0]
        theta = np.asarray(res.x) if fun <= batch.f[i] else batch.x[i]  # never make it worse
        converged = bool(res.success)
        message = str(res.message)
        n_iter = int(batch.n_iter.max()) + int(res.nit)
        optima = [np.asarray(r.x) for _, r, _ in polished]
    if not np.isfinite(batch.f).any():
        raise DataError(f"law {law.name!r}: the objective is not finite at any start")
    f_chk, g_chk = fg(theta[None, :], np.zeros(1, dtype=int))
    pg = np.clip(theta - g_chk[0], lower, upper) - theta
    # Also converged when the projected gradient is negligible next to the gradient scale of
    # the Huber terms (L-BFGS-B's line search often ends "abnormally" at machine precision).
    small = float(np.abs(pg).max()) <= 1e-7 * max(1.0, options.huber_delta * len(log_loss))
    conv = Convergence(
        converged=converged or small,
        message=message,
        n_starts=len(starts),
        n_iterations=n_iter,
        on_bounds=on_bounds(law, theta),
    )
    return theta, float(f_chk[0]), conv, optima
